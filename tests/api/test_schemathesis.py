"""schemathesis against the app's own OpenAPI document: no 5xx, responses as documented (bounded)."""

from __future__ import annotations

import asyncio
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.api.support import build_world

MAX_EXAMPLES = 8
#: A stream never ends (covered by test_sse); the rest is fair game.
SKIP = {"/clients/{client_id}/progress/stream", "/caseload/stream"}


def run_all(base_url: str, headers: dict[str, str], path_values: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIP:
            continue
        strategy = operation.as_strategy()

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def check(case: Any) -> None:
            # half of the cases aim at real records, so the checks see more than 404s
            if case.path_parameters and hash(str(case.body)) % 2 == 0:
                for name in case.path_parameters:
                    if name in path_values:
                        case.path_parameters[name] = path_values[name]
            response = case.call(base_url=base_url, headers=headers, timeout=10)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance],
                                   headers=headers)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, not just the first
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    return failures


async def test_schemathesis_finds_no_5xx_and_no_schema_violations(api, servers):
    clinic = await api.clinic()
    world = await build_world(api, clinic)
    headers = servers.token(clinic.tenant, "clinician", clinic.clinician)
    values = {k: str(v) for k, v in world.path_values().items()}
    failures = await asyncio.wait_for(asyncio.to_thread(run_all, servers.urls[0], headers, values), timeout=120)
    assert not failures, "\n\n".join(failures)
