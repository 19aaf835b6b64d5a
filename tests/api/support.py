"""Shared helpers for the API tests: the route table, example bodies, a realistic world, the store's state."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx

PROBLEM_JSON = "application/problem+json"
PARAM = re.compile(r"{(\w+)(?::\w+)?}")
#: A structured measurement schedule (every 14 days), as a client of the API sends it.
EVERY_14_DAYS = {"kind": "every", "interval": 14, "unit": "days", "start": "2026-01-05", "timezone": "UTC"}


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str  # "/clients/{client_id}/plan"
    params: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def route_table(app: Any) -> list[RouteInfo]:
    """Every GET/POST route the app serves (the OpenAPI viewer aside), straight from Litestar."""
    found: list[RouteInfo] = []
    for route in app.routes:
        path = getattr(route, "path_format", None) or route.path
        if path.startswith("/schema"):
            continue
        if all(h.include_in_schema is False for h in getattr(route, "route_handlers", ())):
            continue  # not part of the API (the one-time questionnaire page): tested by its own suite
        for method in sorted(getattr(route, "methods", ())):
            if method in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                found.append(RouteInfo(method, path, tuple(PARAM.findall(path))))
    return found


def fill(path: str, values: dict[str, Any]) -> str:
    return PARAM.sub(lambda m: str(values.get(m.group(1), uuid.uuid4())), path)


def phq9(total: int = 6, item9: int = 0) -> dict[str, int]:
    answers = {f"item{i}": 0 for i in range(1, 10)}
    for i in range(1, 9):
        answers[f"item{i}"] = max(0, min(3, total - sum(answers.values())))
    answers["item9"] = item9
    return answers


@dataclass
class World:
    """One clinic with a client whose goal is active, a second client, and the ids a route may need."""

    clinic: Any
    client_id: uuid.UUID
    other_client_id: uuid.UUID
    goal_id: uuid.UUID
    goal_version: int
    proxy_id: uuid.UUID
    extra: dict[str, Any] = field(default_factory=dict)

    def path_values(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "goal_id": self.goal_id, "staff_id": self.clinic.clinician_2,
                "member_id": self.clinic.clinician_2, "consent_scope": "measurement", "instrument_id": "phq9",
                **self.extra}


async def build_world(api: Any, clinic: Any) -> World:
    client_id = await api.enrolled_client(clinic)
    other = await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    # clinician_2 is on the care team (sharing consented), the outsider is not
    r = await api.http.post(f"/clients/{client_id}/care-team", json={"member_id": str(clinic.clinician_2)},
                            headers=clin)
    assert r.status_code == 201, r.text
    r = await api.http.post(f"/clients/{client_id}/care-team", json={"member_id": str(clinic.supervisor),
                                                                      "member_role": "supervisor"}, headers=clin)
    assert r.status_code == 201, r.text
    proxy = uuid.uuid4()
    r = await api.http.post(f"/clients/{client_id}/proxies", json={"proxy_id": str(proxy), "basis": "minor"},
                            headers=clin)
    assert r.status_code == 201, r.text
    goal_id, version = await active_goal(api, clinic, client_id)
    _ = me
    return World(clinic, client_id, other, goal_id, version, proxy)


async def active_goal(api: Any, clinic: Any, client_id: uuid.UUID, text: str = "Walk the dog every morning"
                      ) -> tuple[uuid.UUID, int]:
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    r = await api.http.post(f"/clients/{client_id}/goals", json={"text": text}, headers=me)
    assert r.status_code == 201, r.text
    goal_id = uuid.UUID(r.json()["created"]["goal_id"])
    r = await api.http.get(f"/goals/{goal_id}", headers=me)
    version = r.json()["version"]
    for who in (me, clin):
        r = await api.http.post(f"/goals/{goal_id}/agreements", json={"version": version}, headers=who)
        assert r.status_code == 201, r.text
    r = await api.http.get(f"/goals/{goal_id}", headers=me)
    assert r.json()["fhir_lifecycle_status"] == "active", r.text
    return goal_id, int(r.headers["etag"].strip('"'))


def _soon(days: int = 7) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


def _now(hours: int = 0) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


#: A valid body for every POST route (by path); a route missing here fails test_every_post_has_an_example.
EXAMPLES: dict[str, Callable[[World], dict[str, Any] | None]] = {
    "/staff": lambda w: {"staff_id": str(uuid.uuid4()), "role": "clinician"},
    "/identity/invitations": lambda w: {"principal_id": str(w.client_id), "role": "client"},
    "/identity/invitations/redemption": lambda w: {"code": "not-a-code"},
    "/identity/invitations/{invitation_id}/confirmation": lambda w: {"accept": True},
    "/identity/links/{principal_id}/unlinking": lambda w: None,
    "/staff/{staff_id}/deactivation": lambda w: None,
    "/clinic/crisis-information": lambda w: {"text": "Call 112", "contacts": ["112"]},
    "/staff/{staff_id}/contact": lambda w: {"email": "clinician-2@clinic.example"},
    "/clinic/escalation-policy": lambda w: {"escalation_interval_hours": 24,
                                            "duty_clinician_id": str(w.clinic.supervisor)},
    "/clients": lambda w: {"primary_clinician_id": str(w.clinic.clinician)},
    "/clients/{client_id}/care-team": lambda w: {"member_id": str(uuid.uuid4())},
    "/clients/{client_id}/care-team/{member_id}/removal": lambda w: {"reason": "moved team"},
    "/clients/{client_id}/primary-clinician": lambda w: {"clinician_id": str(w.clinic.clinician_2)},
    "/clients/{client_id}/discharge": lambda w: {"reason": "finished"},
    "/clients/{client_id}/consents/{consent_scope}/withdrawal": lambda w: {"mode": "self"},
    "/clients/{client_id}/measurements": lambda w: {"instrument_id": "phq9", "answers": phq9(),
                                                    "observed_at": _now(1)},
    "/clients/{client_id}/consents": lambda w: {"scope": "measurement", "text_version": "v2", "mode": "self"},
    "/clients/{client_id}/feedback": lambda w: {"text": "This feels right", "rating": 4},
    "/clients/{client_id}/feedback/{feedback_id}/answers": lambda w: {"text": "We slowed the pace",
                                                                       "change_event_ids": []},
    "/clients/{client_id}/measurements/{measurement_id}/interpretation": lambda w: {"text": "a rough week at work"},
    "/clients/{client_id}/alerts/{alert_id}/acknowledgement": lambda w: {"action_taken": "reviewed with the client"},
    "/clinic/alert-policy": lambda w: {"after_administrations": 6, "after_weeks": 12},
    "/goals/{goal_id}/reviews/{review_id}/confirmation": lambda w: {"agrees": True, "client_view": "that is fair"},
    "/clients/{client_id}/relapse-plan": lambda w: {"warning_signs": ["sleeping late"], "actions": ["call Sam"]},
    "/clients/{client_id}/questionnaire-links": lambda w: {"instrument_id": "phq9"},
    "/clients/{client_id}/reminder-contact": lambda w: {"email": "client@home.example"},
    "/clients/{client_id}/reminder-channels/{channel}/opt-out": lambda w: None,
    "/clients/{client_id}/reminder-channels/{channel}/opt-in": lambda w: None,
    "/clients/{client_id}/reminder-self-monitoring": lambda w: {"after_discharge": True},
    "/clinic/reminder-text": lambda w: {"subject": "A note from your clinic", "body": "Time for a check-in."},
    "/clients/{client_id}/measures": lambda w: {"instrument_id": "mood_diary", "schedule": EVERY_14_DAYS},
    "/clients/{client_id}/measures/detachment": lambda w: {"instrument_id": "mood_diary"},
    "/clients/{client_id}/risk-flags": lambda w: {"note": "mentions hopelessness"},
    "/clients/{client_id}/notes": lambda w: {"text": "Session went well"},
    "/clients/{client_id}/corrections": lambda w: {"kind": "note", "entry_id": str(uuid.uuid4()),
                                                   "reason": "wrong client"},
    "/clients/{client_id}/proxies": lambda w: {"proxy_id": str(uuid.uuid4()), "basis": "minor"},
    "/clients/{client_id}/legal-holds": lambda w: {"reason": "court order"},
    "/clients/{client_id}/risk-flags/{flag_id}/acknowledgement": lambda w: {"action_taken": "called the client"},
    "/clients/{client_id}/legal-holds/{hold_id}/release": lambda w: None,
    "/clients/{client_id}/goals": lambda w: {"text": "Sleep before midnight"},
    "/goals/{goal_id}/status": lambda w: {"action": "pause", "reason": "holiday"},
    "/goals/{goal_id}/restatement": lambda w: {"client_words": "I walk my dog before work"},
    "/goals/{goal_id}/reflections": lambda w: {"reflection": "A walk most mornings"},
    "/goals/{goal_id}/revisions": lambda w: {"text": "Walk the dog five mornings a week"},
    "/goals/{goal_id}/agreements": lambda w: {"version": w.goal_version},
    "/goals/{goal_id}/decline": lambda w: {"reason": "not now"},
    "/goals/{goal_id}/withdrawal": lambda w: {"reason": "changed my mind"},
    "/goals/{goal_id}/changes": lambda w: {"kind": "target", "new_text": "Walk the dog at dawn"},
    "/goals/{goal_id}/changes/{change_id}/acceptance": lambda w: {},
    "/goals/{goal_id}/changes/{change_id}/decline": lambda w: {"reason": "no"},
    "/goals/{goal_id}/changes/{change_id}/withdrawal": lambda w: {},
    "/goals/{goal_id}/milestones": lambda w: {"description": "Walk to the park", "provisional_date": _soon()},
    "/goals/{goal_id}/milestones/{milestone_id}/reached": lambda w: {"reached_on": date.today().isoformat()},
    "/goals/{goal_id}/checkpoints": lambda w: {"provisional_date": _soon(14), "purpose": "review"},
    "/goals/{goal_id}/checkpoints/{checkpoint_id}/cancellation": lambda w: {},
    "/goals/{goal_id}/barriers": lambda w: {"text": "Rain"},
    "/goals/{goal_id}/contingencies": lambda w: {"trigger": "if it rains", "response": "walk indoors"},
    "/goals/{goal_id}/resources": lambda w: {"text": "My neighbour walks too"},
    "/goals/{goal_id}/interventions": lambda w: {"kind": "behavioural_experiment"},
    "/goals/{goal_id}/items/removal": lambda w: {"item_kind": "barrier", "item_id": str(uuid.uuid4())},
    "/goals/{goal_id}/attainment-scale": lambda w: {"levels": ["never", "once", "twice", "thrice", "daily"]},
    "/goals/{goal_id}/measures": lambda w: {"instrument_id": "phq9", "schedule": EVERY_14_DAYS},
    "/goals/{goal_id}/measures/detachment": lambda w: {"instrument_id": "phq9"},
    "/goals/{goal_id}/reviews": lambda w: {"outcome": "continue", "summary": "steady"},
    "/goals/{goal_id}/reviews/{review_id}/entered-in-error": lambda w: {"reason": "wrong goal"},
    "/clients/{client_id}/erasure": lambda w: {"reason": "the client asked to be forgotten"},
    "/receipts/verify": lambda w: {"receipt": {}},
    "/clients/{client_id}/progress/stream-tickets": lambda w: None,
    "/caseload/stream-tickets": lambda w: None,
}


async def store_state(dsn: str) -> tuple[int, int | None]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT count(*), max(position) FROM events")
        return int(row[0]), row[1]
    finally:
        await conn.close()


def assert_problem(r: httpx.Response, status: int | set[int], code: str | None = None) -> dict[str, Any]:
    statuses = {status} if isinstance(status, int) else status
    assert r.status_code in statuses, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith(PROBLEM_JSON), r.headers["content-type"]
    body = r.json()
    for key in ("type", "title", "status", "detail", "code"):
        assert key in body, body
    assert body["status"] == r.status_code
    if code is not None:
        assert body["code"] == code, body
    return body  # type: ignore[no-any-return]


async def eventually(check: Callable[[], Any], *, within: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.05)


def openapi_body(doc: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    """A minimal valid-looking body from the OpenAPI document (required fields only), for routes with no example."""
    op = doc["paths"].get(path, {}).get(method.lower(), {})
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    value = _sample(doc, schema)
    return value if isinstance(value, dict) else {}


def _sample(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    if "$ref" in schema:
        return _sample(doc, doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    if "oneOf" in schema or "anyOf" in schema:
        options = [s for s in schema.get("oneOf", schema.get("anyOf", [])) if s.get("type") != "null"]
        return _sample(doc, options[0]) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: _sample(doc, sub) for name, sub in schema.get("properties", {}).items()
                if name in schema.get("required", [])}
    fmt = schema.get("format")
    return {"string": {"uuid": str(uuid.uuid4()), "date": date.today().isoformat(),
                       "date-time": datetime.now(UTC).isoformat()}.get(fmt or "", "example"),
            "integer": 1, "number": 1.0, "boolean": False, "array": []}.get(kind or "")


def body_for_route(doc: dict[str, Any], route: RouteInfo, world: World) -> dict[str, Any] | None:
    example = EXAMPLES.get(route.path)
    return example(world) if example is not None else openapi_body(doc, route.method, route.path)
