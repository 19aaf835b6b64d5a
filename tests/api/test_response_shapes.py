"""Real answers against the OpenAPI document, strictly: a key the schema does not declare, a
required key missing, or a value of another type fails (schemathesis only checks what the
schema allows, so an undeclared field would pass it unseen).

The record is rich on purpose: two PHQ-9s and two GAD-7s (reliable change, NHS TT indicators,
the paired indicators), a risk answer (risk flags, crisis information in every view), a GAS
rating, milestones, checkpoints, barriers, contingencies, resources, interventions, a review,
feedback, a relapse plan and an open change.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.api.support import EVERY_14_DAYS, build_world, phq9

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def conform(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """Where ``value`` departs from ``schema`` (empty when it conforms); unknown keys count."""
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            tries = [conform(doc, option, value, where) for option in schema[key]]
            return [] if any(not t for t in tries) else min(tries, key=len)
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
    if value is None:
        return [] if not kinds or "null" in kinds else [f"{where}: null, schema says {kind}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {value!r} is not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    if not kinds:
        return []
    checks = {"object": isinstance(value, dict), "array": isinstance(value, list), "string": isinstance(value, str),
              "boolean": isinstance(value, bool),
              "integer": isinstance(value, int) and not isinstance(value, bool),
              "number": isinstance(value, int | float) and not isinstance(value, bool)}
    if not any(checks.get(k, False) for k in kinds):
        return [f"{where}: {type(value).__name__} {value!r:.80}, schema says {kind}"]
    problems: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None:
            problems += [f"{where}.{k}: not declared" for k in sorted(set(value) - set(props))]
            problems += [f"{where}.{k}: required, missing" for k in schema.get("required", []) if k not in value]
            for k in set(value) & set(props):
                problems += conform(doc, props[k], value[k], f"{where}.{k}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for k, v in value.items():
                problems += conform(doc, extra, v, f"{where}[{k!r}]")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += conform(doc, schema["items"], item, f"{where}[{i}]")
    elif isinstance(value, str):
        fmt = schema.get("format")
        if fmt == "uuid" and not UUID_RE.match(value):
            problems.append(f"{where}: {value!r} is not a uuid")
        if fmt == "date-time":
            try:
                assert datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
            except (ValueError, AssertionError):
                problems.append(f"{where}: {value!r} is not a date-time with an offset")
        if fmt == "date":
            try:
                date.fromisoformat(value)
            except ValueError:
                problems.append(f"{where}: {value!r} is not a date")
    return problems


def answer_schema(doc: dict[str, Any], operation_id: str, status: int) -> dict[str, Any]:
    for item in doc["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                content = op["responses"][str(status)]["content"]
                return next(iter(content.values()))["schema"]  # type: ignore[no-any-return]
    raise AssertionError(f"no operation {operation_id}")


class Checker:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.problems: list[str] = []
        self.checked: list[str] = []

    def __call__(self, operation_id: str, response: Any) -> Any:
        assert response.status_code < 300, f"{operation_id}: {response.status_code} {response.text[:500]}"
        body = response.json()
        self.problems += conform(self.doc, answer_schema(self.doc, operation_id, response.status_code), body,
                                 operation_id)
        self.checked.append(operation_id)
        return body


def gad7(total: int) -> dict[str, int]:
    answers = {f"item{i}": 0 for i in range(1, 8)}
    for i in range(1, 8):
        answers[f"item{i}"] = max(0, min(3, total - sum(answers.values())))
    return answers


async def test_real_answers_match_the_document_exactly(api, clinic):
    doc = (await api.http.get("/schema/openapi.json")).json()
    check = Checker(doc)
    world = await build_world(api, clinic)
    cid, gid = world.client_id, world.goal_id
    me = api.token(clinic.tenant, "client", cid)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    http = api.http
    soon = (date.today() + timedelta(days=7)).isoformat()
    past = (date.today() - timedelta(days=3)).isoformat()

    proposed = check("proposeGoal", await http.post(f"/clients/{cid}/goals", json={"text": "Sleep before midnight"},
                                                    headers=me))
    g2 = proposed["created"]["goal_id"]

    async def goal_post(path: str, body: dict[str, Any], who: dict[str, str] = clin, goal: Any = g2
                        ) -> dict[str, Any]:
        operation = {"milestones": "addMilestone", "checkpoints": "scheduleCheckpoint", "barriers": "noteBarrier",
                     "contingencies": "planContingency", "resources": "noteResource",
                     "interventions": "linkIntervention", "attainment-scale": "setAttainmentScale",
                     "measures": "attachMeasure", "reviews": "recordReview", "changes": "proposeGoalChange"}[path]
        return check(operation, await http.post(f"/goals/{goal}/{path}", json=body, headers=who))  # type: ignore[no-any-return]

    await goal_post("milestones", {"description": "Walk to the park", "provisional_date": past})
    await goal_post("checkpoints", {"provisional_date": soon, "purpose": "review"})
    barrier = await goal_post("barriers", {"text": "Rain"})
    await goal_post("contingencies", {"trigger": "if it rains", "response": "walk indoors",
                                      "barrier_id": barrier["created"]["barrier_id"]})
    await goal_post("resources", {"text": "My neighbour walks too"})
    await goal_post("interventions", {"kind": "behavioural_experiment", "detail": "try two mornings"})
    await goal_post("attainment-scale", {"levels": ["never", "once", "twice", "thrice", "daily"]})
    await goal_post("measures", {"instrument_id": "phq9", "schedule": EVERY_14_DAYS})
    await goal_post("changes", {"kind": "target", "new_text": "Walk the dog at dawn"}, goal=gid)
    now = datetime.now(UTC)
    for days, total, item9 in ((20, 18, 0), (1, 6, 1)):
        body = {"instrument_id": "phq9", "answers": phq9(total, item9),
                "observed_at": (now - timedelta(days=days)).isoformat()}
        check("recordMeasurement", await http.post(f"/clients/{cid}/measurements", json=body, headers=me))
    for days, total in ((20, 15), (1, 4)):
        # staff say so (a rating in the client's record is deliberate)
        body = {"instrument_id": "gad7", "answers": gad7(total), "reported_by": "clinician",
                "observed_at": (now - timedelta(days=days)).isoformat()}
        check("recordMeasurement", await http.post(f"/clients/{cid}/measurements", json=body, headers=clin))
    body = {"instrument_id": "gas", "answers": {"level": 1}, "observed_at": now.isoformat(), "goal_ids": [str(gid)]}
    r = await http.post(f"/clients/{cid}/measurements", json=body, headers=me)
    if r.status_code == 201:  # GAS answers by its own item id: skip the level shape if it has another
        check("recordMeasurement", r)
    await goal_post("measures", {"instrument_id": "phq9", "schedule": EVERY_14_DAYS}, goal=gid)
    await goal_post("reviews", {"outcome": "continue", "summary": "steady", "client_view": "it helps"}, goal=gid)
    check("giveFeedback", await http.post(f"/clients/{cid}/feedback", json={"text": "This feels right", "rating": 4},
                                          headers=me))
    check("updateRelapsePlan", await http.post(f"/clients/{cid}/relapse-plan",
                                               json={"warning_signs": ["sleeping late"], "actions": ["call Sam"]},
                                               headers=clin))

    async def settled() -> dict[str, Any]:
        for _ in range(100):  # the projections follow the store asynchronously
            r = await http.get(f"/clients/{cid}/progress", headers=me)
            body = r.json()
            if r.status_code == 200 and body.get("paired_indicators") and body["feedback"]:
                return body  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)
        raise AssertionError(r.text)

    progress = await settled()
    assert progress["goals"][0]["measures"], progress
    check("getProgress", await http.get(f"/clients/{cid}/progress", headers=me))
    check("getProgress", await http.get(f"/clients/{cid}/progress", headers=clin, params={"goal_id": str(gid)}))
    plan = check("getPlan", await http.get(f"/clients/{cid}/plan", headers=me))
    assert plan["goals"][0]["open_changes"] and plan["open_risk_flags"] and plan["relapse_plan"], plan
    check("getPlan", await http.get(f"/clients/{cid}/plan", headers=me, params={"as_of": now.isoformat()}))
    check("getHistory", await http.get(f"/clients/{cid}/history", headers=clin))
    check("getGoal", await http.get(f"/goals/{gid}", headers=me))
    check("listClients", await http.get("/clients", headers=clin, params={"limit": 1}))
    check("listInstruments", await http.get("/instruments", headers=me))
    check("getInstrument", await http.get("/instruments/phq9", headers=me))
    check("listStaff", await http.get("/staff", headers=api.token(clinic.tenant, "admin", clinic.admin)))
    check("health", await http.get("/health"))
    r = await http.get("/ready")
    check("ready", r)
    check("signingKeys", await http.get("/.well-known/alliance-keys.json"))
    auditor = api.token(clinic.tenant, "auditor", clinic.auditor)
    check("accessLog", await http.get("/audit/access", headers=auditor, params={"client": str(cid)}))
    check("lastVerification", await http.get("/audit/verify", headers=auditor))
    check("exportHistory", await http.get(f"/clients/{cid}/history/export", headers=auditor))
    check("exportMyData", await http.get(f"/clients/{cid}/export", headers=me))
    check("exportFhir", await http.get(f"/clients/{cid}/fhir", headers=clin))
    version = check("getGoal", await http.get(f"/goals/{g2}", headers=me))["version"]
    agreed = check("agreeGoal", await http.post(f"/goals/{g2}/agreements", json={"version": version}, headers=me))
    receipt = {"receipt": agreed["receipts"][0]} if agreed.get("receipts") else None
    flag = plan["open_risk_flags"][0]["flag_id"]
    check("acknowledgeRiskFlag", await http.post(f"/clients/{cid}/risk-flags/{flag}/acknowledgement",
                                                 json={"action_taken": "called the client"}, headers=clin))
    if receipt is not None:
        check("verifyReceipt", await http.post("/receipts/verify", json=receipt))
    enrolled = check("enrolClient", await http.post(
        "/clients", json={"primary_clinician_id": str(clinic.clinician)},
        headers=api.token(clinic.tenant, "admin", clinic.admin)))
    erased = enrolled["created"]["client_id"]
    check("eraseClient", await http.post(f"/clients/{erased}/erasure", json={"reason": "asked to be forgotten"},
                                         headers=api.token(clinic.tenant, "admin", clinic.admin),
                                         ))
    assert uuid.UUID(erased)
    assert not check.problems, "\n".join(check.problems)
    assert len(check.checked) > 30, check.checked
