"""The OpenAPI document a client generator reads: named schemas for every JSON answer, the
headers and parameters the API really uses, tags and descriptions, public routes without security.

Built from ``create_app`` without starting it: the document needs no database.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from alliance.api.app import create_app
from alliance.core.settings import Settings

#: POSTs that do not go through ``run_command`` (identity links, receipt checks, stream tickets).
NOT_IDEMPOTENT = {"inviteIdentity", "redeemInvitation", "confirmInvitation", "unlinkIdentity", "verifyReceipt",
                  "issueProgressStreamTicket", "issueCaseloadStreamTicket"}
PUBLIC = {("get", "/health"), ("get", "/ready"), ("get", "/.well-known/alliance-keys.json"),
          ("post", "/receipts/verify")}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/none", home=tmp_path_factory.mktemp("oas"),
                        kek=base64.b64encode(bytes(32)).decode(), jwt_secret="s" * 40)
    return create_app(settings, run_projections=False).openapi_schema.to_schema()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in document["paths"].items() for method, op in item.items()
            if method in {"get", "post", "put", "patch", "delete"}]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def test_every_success_answer_has_a_named_schema(document):
    missing = []
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                continue
            for media, content in (response.get("content") or {}).items():
                schema = content.get("schema") or {}
                if media == "text/event-stream":
                    continue  # described in words (test below): SSE frames are not JSON
                if "$ref" not in schema:
                    missing.append(f"{method.upper()} {path} {status} {media}: {schema}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize(("operation_id", "schema_name"), [
    ("getPlan", "PlanView"), ("getProgress", "ProgressView"), ("getHistory", "HistoryView"),
    ("getGoal", "GoalView"), ("listClients", "Caseload"), ("listInstruments", "InstrumentList"),
    ("recordMeasurement", "MeasurementResult"), ("proposeGoal", "CommandResult"),
])
def test_main_views_are_named_types_with_described_fields(document, operation_id, schema_name):
    op = next(op for _, _, op in operations(document) if op["operationId"] == operation_id)
    success = next(r for s, r in op["responses"].items() if s.startswith("2"))
    schema = success["content"]["application/json"]["schema"]
    assert schema == {"$ref": f"#/components/schemas/{schema_name}"}
    component = document["components"]["schemas"][schema_name]
    undescribed = [name for name, prop in component["properties"].items() if not prop.get("description")]
    assert not undescribed, f"{schema_name}: fields without a description: {undescribed}"
    assert success["content"]["application/json"].get("examples") or component.get("examples"), \
        f"{operation_id} has no example"


def test_receipts_and_problems_are_typed(document):
    result = document["components"]["schemas"]["CommandResult"]
    receipts = result["properties"]["receipts"]
    assert resolve(document, receipts["items"])["properties"]["signature"]
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert all(p.get("description") for p in problem["properties"].values())


def test_headers_and_parameters_the_api_uses_are_declared(document):
    by_id = {op["operationId"]: (method, op) for method, _, op in operations(document)}
    for method, op in by_id.values():
        names = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        if method == "post" and op["operationId"] not in NOT_IDEMPOTENT:
            assert "Idempotency-Key" in names, op["operationId"]
    for goal_command in ("agreeGoal", "reviseGoal", "changeGoalStatus", "addMilestone"):
        _, op = by_id[goal_command]
        assert "If-Match" in {p["name"] for p in op["parameters"]}, goal_command
        headers = op["responses"]["201"]["headers"]
        assert {"ETag", "Idempotent-Replayed"} <= set(headers), goal_command
    _, propose = by_id["proposeGoal"]
    assert {"ETag", "Location", "Idempotent-Replayed"} <= set(propose["responses"]["201"]["headers"])
    _, get_goal = by_id["getGoal"]
    assert "ETag" in get_goal["responses"]["200"]["headers"]
    _, stream = by_id["streamProgress"]
    assert "Last-Event-ID" in {p["name"] for p in stream["parameters"]}
    assert "Retry-After" in stream["responses"]["429"]["headers"]
    assert "Retry-After" in by_id["getPlan"][1]["responses"]["503"]["headers"]


def test_streams_and_fhir_declare_their_media_types(document):
    by_id = {op["operationId"]: op for _, _, op in operations(document)}
    for stream in ("streamProgress", "streamCaseload"):
        content = by_id[stream]["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"]
        assert "closed" in by_id[stream]["description"] and "ready" in by_id[stream]["description"]
    assert list(by_id["exportFhir"]["responses"]["200"]["content"]) == ["application/fhir+json"]


def test_every_operation_is_tagged_and_described_and_public_ones_need_no_token(document):
    declared = {t["name"]: t for t in document.get("tags", [])}
    assert all(t.get("description") for t in declared.values())
    for method, path, op in operations(document):
        assert op.get("tags") and set(op["tags"]) <= set(declared), f"{method} {path}: {op.get('tags')}"
        assert op.get("description"), f"{method} {path} has no description"
        if (method, path) in PUBLIC:
            assert op.get("security") == [], f"{method} {path} is public"
        else:
            assert op.get("security", document["security"]) == [{"bearer": []}], f"{method} {path}"


def test_document_dumps_from_the_command_line(tmp_path: Path):
    from click.testing import CliRunner

    from alliance.api.cli import main

    out = tmp_path / "openapi.json"
    result = CliRunner().invoke(main, ["openapi", "--output", str(out)],
                                env={"ALLIANCE_JWT_SECRET": "s" * 40, "ALLIANCE_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    import json

    assert json.loads(out.read_text())["components"]["schemas"]["PlanView"]


def test_every_request_body_field_is_described(document):
    for method, path, op in operations(document):
        body = (op.get("requestBody") or {}).get("content", {}).get("application/json")
        if body is None:
            continue
        schema = resolve(document, body["schema"])
        undescribed = [name for name, prop in schema.get("properties", {}).items() if not prop.get("description")]
        assert not undescribed, f"{method.upper()} {path}: body fields without a description: {undescribed}"


def test_instrument_definitions_are_described_field_by_field(document):
    schemas = document["components"]["schemas"]
    for name in ("InstrumentDefinition", "Item", "ChoiceOption", "Scoring", "Band", "CutOff", "ReliableChange"):
        undescribed = [f for f, prop in schemas[name]["properties"].items() if not prop.get("description")]
        assert not undescribed, f"{name}: {undescribed}"
