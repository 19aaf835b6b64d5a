"""Compliance end to end: receipts, signed exports verified offline, erasure by crypto-shredding
(the canary test), FHIR, the access log and anchors — over HTTP and through the ``alliance`` CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog

from alliance.core.compliance.fhir import check_bundle
from alliance.core.events.verify import verify_store
from alliance.core.projections.rebuild import rebuild
from tests.api.conftest import KEK
from tests.api.support import EVERY_14_DAYS, active_goal, assert_problem, eventually, phq9

ROOT = Path(__file__).resolve().parents[2]
ALLIANCE = ROOT / ".venv" / "bin" / "alliance"
NO_DATABASE = "postgresql://nobody@127.0.0.1:1/none"


async def alliance(api: Any, database: Any, *args: str, dsn: str | None = None, log_level: str = "warning"
                   ) -> tuple[int, str]:
    """Run the CLI against the test database and the app's home (keys, anchors, ledger); (exit code, output)."""
    command = [str(ALLIANCE)] if ALLIANCE.exists() else [sys.executable, "-m", "alliance.api.cli"]
    env = {**os.environ, "DATABASE_URL": dsn or database.owner_dsn, "ALLIANCE_KEK": KEK,
           "ALLIANCE_HOME": str(api.settings.home), "ALLIANCE_LOG_LEVEL": log_level, "NO_COLOR": "1",
           "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(*command, *args, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, output.decode(errors="replace")


def _now(hours: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


# --- 1. receipts ------------------------------------------------------------------------------


async def test_agreement_and_consent_answer_with_receipts_that_verify(api, clinic, database, tmp_path):
    client_id = await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    r = await api.http.post(f"/clients/{client_id}/goals", json={"text": "Walk every morning"}, headers=me)
    assert r.status_code == 201, r.text
    goal_id = r.json()["created"]["goal_id"]
    receipts: list[dict[str, Any]] = []
    for who in (me, clin):
        r = await api.http.post(f"/goals/{goal_id}/agreements", json={"version": 1}, headers=who)
        assert r.status_code == 201, r.text
        answer = r.json()["receipts"]
        assert [x["type"] for x in answer if x["type"] == "goal.agreed"] == ["goal.agreed"], answer
        receipts += answer
    r = await api.http.post(f"/clients/{client_id}/consents",
                            json={"scope": "measurement", "text_version": "v2", "mode": "self"}, headers=me)
    assert r.status_code == 201, r.text
    consent = [x for x in r.json()["receipts"] if x["type"] == "consent.granted"]
    assert len(consent) == 1, r.text
    receipts += consent

    keys = (await api.http.get("/.well-known/alliance-keys.json")).json()
    kids = {k["kid"] for k in keys["keys"]}
    for receipt in receipts:
        assert receipt["signature"]["kid"] in kids, (receipt["signature"], kids)
        assert receipt["subject_id"] == str(client_id)
        r = await api.http.post("/receipts/verify", json={"receipt": receipt})
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is True, r.json()

    agreement = receipts[0]
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(agreement))
    code, output = await alliance(api, database, "verify", "--receipt", str(path))
    assert code == 0, output

    # one changed field: the route and the CLI both say so, by name
    forged = {**agreement, "version": agreement["version"] + 1}
    r = await api.http.post("/receipts/verify", json={"receipt": forged})
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is False
    codes = {p["code"] for p in r.json()["problems"]}
    assert "signature_invalid" in codes, codes
    path.write_text(json.dumps(forged))
    code, output = await alliance(api, database, "verify", "--receipt", str(path))
    assert code == 1, output
    assert "signature_invalid" in output, output

    # not a receipt at all: a named 422
    r = await api.http.post("/receipts/verify", json={"receipt": {"hello": "world"}})
    assert_problem(r, 422, "malformed_receipt")


# --- 2. signed export, verified offline ----------------------------------------------------------


async def test_history_export_verifies_offline_and_tampering_is_named(api, clinic, database, tmp_path):
    client_id = await api.enrolled_client(clinic)
    await active_goal(api, clinic, client_id)
    auditor = api.token(clinic.tenant, "auditor", clinic.auditor)
    r = await api.http.get(f"/clients/{client_id}/history/export", headers=auditor)
    assert r.status_code == 200, r.text
    document = r.json()
    assert document["verification"]["ok"] is True, document["verification"]
    assert {e["type"] for e in document["events"]} >= {"client.enrolled", "goal.agreed", "goal.activated"}
    path = tmp_path / "export.json"
    path.write_bytes(r.content)

    code, output = await alliance(api, database, "verify", "--export", str(path), dsn=NO_DATABASE)
    assert code == 0, output
    assert "ok" in output

    # one event's payload changed (re-encoded, still valid base64 JSON): named, exit 1
    tampered = json.loads(r.content)
    event = next(e for e in tampered["events"] if e["type"] == "goal.agreed")
    payload = json.loads(base64.b64decode(event["payload_b64"]))
    payload["version"] = payload["version"] + 1
    event["payload_b64"] = base64.b64encode(json.dumps(payload).encode()).decode()
    path.write_text(json.dumps(tampered))
    code, output = await alliance(api, database, "verify", "--export", str(path), dsn=NO_DATABASE)
    assert code == 1, output
    assert "event_content_changed" in output, output
    assert "signature_invalid" in output, output

    # an auditor of another clinic sees nothing; a client cannot take the staff export
    other = await api.clinic()
    r = await api.http.get(f"/clients/{client_id}/history/export",
                           headers=api.token(other.tenant, "auditor", other.auditor))
    assert_problem(r, 404)
    r = await api.http.get(f"/clients/{client_id}/history/export",
                           headers=api.token(clinic.tenant, "client", client_id))
    assert_problem(r, 403)


# --- 3. erasure: the canary ---------------------------------------------------------------------


@pytest.fixture
def all_logs(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Any:
    """Every log line the app writes during the test, at every level, as rendered.

    The app logs through structlog at ``warning`` in the tests, with loggers cached on first use,
    and its stream was bound when the app started (capfd cannot see it): lift the level filter of
    the (cached) filtering classes for the test, and tee the renderer's output. Stdlib logging
    (Litestar, asyncpg, uvicorn) is captured by caplog at DEBUG.
    """
    from structlog import _native

    low = _native.LEVEL_TO_FILTERING_LOGGER[logging.DEBUG]
    for level in (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
        cls = _native.LEVEL_TO_FILTERING_LOGGER[level]
        for name in ("debug", "info", "warning", "warn", "msg", "error"):
            for method in (name, "a" + name):
                monkeypatch.setattr(cls, method, getattr(low, method))
    lines: list[str] = []
    processors = structlog.get_config()["processors"]
    renderer = processors[-1]

    def tee(logger: Any, method: str, event_dict: Any) -> Any:
        rendered = renderer(logger, method, event_dict)
        lines.append(str(rendered))
        return rendered

    processors[-1] = tee
    caplog.set_level(logging.DEBUG)
    try:
        yield lambda: "\n".join([*lines, caplog.text])
    finally:
        processors[-1] = renderer


async def scan(dsn: str, needle: str) -> list[str]:
    """Every table of every schema, as the owner: each row cast to text, and every bytea column
    searched for the needle's bytes (event payloads and secrets, idempotency responses…)."""
    conn = await asyncpg.connect(dsn)
    found: list[str] = []
    try:
        tables = await conn.fetch(
            "SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2")
        assert len(tables) > 5, tables
        for schema, table, oid in tables:
            name = f'"{schema}"."{table}"'
            if await conn.fetchval(f"SELECT count(*) FROM {name} t WHERE strpos(t::text, $1) > 0", needle):
                found.append(name)
            for (column,) in await conn.fetch(
                    "SELECT attname FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped "
                    "AND atttypid = 'bytea'::regtype", oid):
                if await conn.fetchval(f'SELECT count(*) FROM {name} WHERE position($1::bytea IN "{column}") > 0',
                                       needle.encode()):
                    found.append(f"{name}.{column}")
    finally:
        await conn.close()
    return found


async def _ok(r: Any, status: int = 201) -> dict[str, Any]:
    assert r.status_code == status, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    return r.json()  # type: ignore[no-any-return]


async def _version(api: Any, goal_id: Any, headers: dict[str, str]) -> int:
    r = await api.http.get(f"/goals/{goal_id}", headers=headers)
    return int(r.json()["version"])


async def plant_canaries(api: Any, clinic: Any, client_id: uuid.UUID, canary: str) -> dict[str, Any]:
    """A canary in every personal field a client can have through the API; some with an Idempotency-Key."""
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    http = api.http

    fields: list[str] = []

    def c(field: str) -> str:
        fields.append(field)
        return f"{canary}-{field}"

    def keyed(headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "Idempotency-Key": f"canary-{uuid.uuid4()}"}

    # the goal: proposed in the client's words, restated, reflected, revised by the clinician, agreed
    body = await _ok(await http.post(f"/clients/{client_id}/goals", headers=keyed(me), json={
        "text": c("goal-text"), "facets": {"target": c("facet-target"), "measure": c("facet-measure")},
        "pace": c("pace"), "due_date": (date.today() + timedelta(days=60)).isoformat()}))
    goal_id = body["created"]["goal_id"]
    await _ok(await http.post(f"/goals/{goal_id}/restatement", json={"client_words": c("client-words")},
                              headers=me))
    await _ok(await http.post(f"/goals/{goal_id}/reflections", json={"reflection": c("reflection")},
                              headers=clin))
    await _ok(await http.post(f"/goals/{goal_id}/revisions", json={"text": c("revision-statement"),
                                                                  "pace": c("revision-pace")}, headers=clin))
    milestone = (await _ok(await http.post(f"/goals/{goal_id}/milestones", headers=keyed(me), json={
        "description": c("milestone"), "provisional_date": (date.today() + timedelta(days=7)).isoformat()}
    )))["created"]["milestone_id"]
    await _ok(await http.post(f"/goals/{goal_id}/attainment-scale", headers=me,
                              json={"levels": [c(f"gas-level{n}") for n in range(5)]}))
    version = await _version(api, goal_id, me)
    for who in (me, clin):
        await _ok(await http.post(f"/goals/{goal_id}/agreements", json={"version": version}, headers=who))
    # what surrounds it
    checkpoint = (await _ok(await http.post(f"/goals/{goal_id}/checkpoints", headers=clin, json={
        "provisional_date": (date.today() + timedelta(days=14)).isoformat(), "purpose": c("checkpoint-purpose")}
    )))["created"]["checkpoint_id"]
    barrier = (await _ok(await http.post(f"/goals/{goal_id}/barriers", json={"text": c("barrier")},
                                         headers=keyed(me))))["created"]["barrier_id"]
    await _ok(await http.post(f"/goals/{goal_id}/contingencies", headers=me, json={
        "trigger": c("trigger"), "response": c("response"), "barrier_id": barrier}))
    await _ok(await http.post(f"/goals/{goal_id}/resources", json={"text": c("resource")}, headers=me))
    await _ok(await http.post(f"/goals/{goal_id}/interventions", headers=clin,
                              json={"kind": "behavioural_experiment", "detail": c("intervention-detail")}))
    await _ok(await http.post(f"/goals/{goal_id}/measures", json={"instrument_id": "phq9", "schedule": EVERY_14_DAYS},
                              headers=clin))
    # a change proposed and declined (new text, rationale, reason)
    change = (await _ok(await http.post(f"/goals/{goal_id}/changes", headers=clin, json={
        "kind": "target", "new_text": c("change-text"), "rationale": c("change-rationale")}
    )))["created"]["change_id"]
    await _ok(await http.post(f"/goals/{goal_id}/changes/{change}/decline", json={"reason": c("change-decline")},
                              headers=me))
    accepted = (await _ok(await http.post(f"/goals/{goal_id}/changes", headers=clin, json={
        "kind": "pace", "new_text": c("change-pace"), "rationale": c("change-pace-rationale")}
    )))["created"]["change_id"]
    answer = await _ok(await http.post(f"/goals/{goal_id}/changes/{accepted}/acceptance", json={}, headers=me))
    assert answer["receipts"] and canary not in json.dumps(answer), answer
    for change_body in ({"kind": "attainment_scale", "new_levels": [c(f"change-gas{n}") for n in range(5)]},
                        {"kind": "milestone_add", "new_text": c("change-milestone"), "milestone_id": str(uuid.uuid4()),
                         "new_date": (date.today() + timedelta(days=21)).isoformat()}):
        proposed = (await _ok(await http.post(f"/goals/{goal_id}/changes", json=change_body, headers=me)))
        await _ok(await http.post(f"/goals/{goal_id}/changes/{proposed['created']['change_id']}/acceptance",
                                  json={}, headers=clin))
    # measurements (PHQ-9 scores stay; the mood diary's note is the client's words)
    measured = [(_now(72), phq9(15)), (_now(2), phq9(6))]
    for observed, answers in measured:
        await _ok(await http.post(f"/clients/{client_id}/measurements", headers=keyed(me), json={
            "instrument_id": "phq9", "answers": answers, "observed_at": observed, "goal_ids": [goal_id]}))
    await _ok(await http.post(f"/clients/{client_id}/measurements", headers=me, json={
        "instrument_id": "mood_diary", "answers": {"mood": 6, "note": c("mood-note")}, "observed_at": _now(1)}))
    review = (await _ok(await http.post(f"/goals/{goal_id}/reviews", headers=clin, json={
        "outcome": "continue", "checkpoint_id": checkpoint, "looked_at": [c("looked-at")],
        "client_view": c("client-view"), "summary": c("review-summary")})))["created"]["review_id"]
    second_review = (await _ok(await http.post(f"/goals/{goal_id}/reviews", headers=clin, json={
        "outcome": "continue", "summary": c("review-in-error")})))["created"]["review_id"]
    await _ok(await http.post(f"/goals/{goal_id}/reviews/{second_review}/entered-in-error", headers=clin,
                              json={"reason": c("review-error-reason")}))
    await _ok(await http.post(f"/goals/{goal_id}/milestones/{milestone}/reached", headers=me,
                              json={"reached_on": date.today().isoformat()}))
    await _ok(await http.post(f"/goals/{goal_id}/status", json={"action": "pause", "reason": c("pause")},
                              headers=clin))
    await _ok(await http.post(f"/goals/{goal_id}/status", json={"action": "resume"}, headers=clin))
    # the client's own records
    await _ok(await http.post(f"/clients/{client_id}/feedback", headers=keyed(me), json={
        "text": c("feedback"), "rating": 7, "resonates": [c("resonates")], "misaligned": [c("misaligned")],
        "goal_ids": [goal_id]}))
    await _ok(await http.post(f"/clients/{client_id}/relapse-plan", headers=me, json={
        "warning_signs": [c("warning-sign")], "actions": [c("action")], "supports": [c("support")]}))
    await _ok(await http.post(f"/clients/{client_id}/notes", json={"text": c("note"), "goal_ids": [goal_id]},
                              headers=keyed(clin)))
    wrong_note = (await _ok(await http.post(f"/clients/{client_id}/notes", json={"text": c("wrong-note")},
                                            headers=clin)))["created"]["note_id"]
    await _ok(await http.post(f"/clients/{client_id}/corrections", headers=clin, json={
        "kind": "note", "entry_id": wrong_note, "reason": c("correction-reason")}))
    flag = (await _ok(await http.post(f"/clients/{client_id}/risk-flags", json={"note": c("risk-note")},
                                      headers=clin)))["created"]["flag_id"]
    await _ok(await http.post(f"/clients/{client_id}/risk-flags/{flag}/acknowledgement", headers=clin,
                              json={"action_taken": c("risk-action")}))
    await _ok(await http.post(f"/clients/{client_id}/care-team", json={"member_id": str(clinic.clinician_2)},
                              headers=clin))
    await _ok(await http.post(f"/clients/{client_id}/care-team/{clinic.clinician_2}/removal", headers=clin,
                              json={"reason": c("care-team-removal")}))
    wrong_mood = (await _ok(await http.post(f"/clients/{client_id}/measurements", headers=me, json={
        "instrument_id": "mood_diary", "answers": {"mood": 2, "note": c("wrong-mood-note")},
        "observed_at": _now(3)})))["created"]["measurement_id"]
    await _ok(await http.post(f"/clients/{client_id}/corrections", headers=clin, json={
        "kind": "measurement", "entry_id": wrong_mood, "reason": c("measurement-error-reason")}))
    # other goals, to every end: declined, withdrawn, maintenance then closed, entered in error
    declined = (await _ok(await http.post(f"/clients/{client_id}/goals", headers=clin, json={
        "text": c("clinician-statement"), "facets": {"specific": c("facet-specific")}})))["created"]["goal_id"]
    await _ok(await http.post(f"/goals/{declined}/decline", json={"reason": c("goal-decline")}, headers=me))
    withdrawn = (await _ok(await http.post(f"/clients/{client_id}/goals", headers=me, json={
        "text": c("withdrawn-goal")})))["created"]["goal_id"]
    await _ok(await http.post(f"/goals/{withdrawn}/withdrawal", json={"reason": c("goal-withdrawal")}, headers=me))
    closed, _ = await active_goal(api, clinic, client_id, text=c("closed-goal"))
    await _ok(await http.post(f"/goals/{closed}/status", json={"action": "maintenance", "reason": c("maintenance")},
                              headers=clin))
    await _ok(await http.post(f"/goals/{closed}/status", json={"action": "achieved", "reason": c("closed")},
                              headers=clin))
    in_error, _ = await active_goal(api, clinic, client_id, text=c("goal-in-error"))
    await _ok(await http.post(f"/goals/{in_error}/status", headers=clin,
                              json={"action": "entered_in_error", "reason": c("goal-error-reason")}))
    # refusals answered with a stored problem (Idempotency-Key): they must not keep the words either
    r = await http.post(f"/goals/{goal_id}/reflections", json={"reflection": f"{canary}-refused"}, headers=keyed(me))
    assert r.status_code in {403, 409}, r.text
    r = await http.post(f"/goals/{goal_id}/barriers", json={"text": f"{canary}-invalid", "colour": f"{canary}-x"},
                        headers=keyed(me))
    assert r.status_code == 422, r.text
    await _ok(await http.post(f"/clients/{client_id}/discharge", json={"reason": c("discharge")}, headers=clin))
    return {"goal_id": goal_id, "review_id": review, "fields": fields, "phq9_totals": sorted(float(sum(a.values()))
                                                                            for _, a in measured)}


def _phq9_totals(progress: dict[str, Any]) -> list[float]:
    """Every PHQ-9 total in a progress view, wherever the view keeps its series."""
    totals: list[float] = []

    def walk(value: Any, in_phq9: bool) -> None:
        if isinstance(value, dict):
            here = in_phq9 or value.get("instrument_id") == "phq9"
            for key, item in value.items():
                if here and key in {"total", "score", "value"} and isinstance(item, int | float) \
                        and not isinstance(item, bool):
                    totals.append(float(item))
                walk(item, here or key == "phq9")
        elif isinstance(value, list):
            for item in value:
                walk(item, in_phq9)

    walk(progress, False)
    return totals


async def test_erasure_leaves_no_canary_anywhere(api, clinic, database, capfd, all_logs, tmp_path):
    canary = f"cnry{uuid.uuid4().hex[:16]}"
    client_id = await api.enrolled_client(clinic)
    planted = await plant_canaries(api, clinic, client_id, canary)
    admin = api.token(clinic.tenant, "admin", clinic.admin)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    auditor = api.token(clinic.tenant, "auditor", clinic.auditor)
    me = api.token(clinic.tenant, "client", client_id)

    async def plan_text() -> str:
        r = await api.http.get(f"/clients/{client_id}/plan", headers=clin)
        return r.text if r.status_code == 200 else ""

    async def projected() -> bool:
        text = await plan_text()
        return all(f"{canary}-{f}" in text for f in ("client-words", "barrier", "milestone", "resource"))

    assert await eventually(projected, within=15), await plan_text()
    # the words are nowhere in the database before the erasure either: events, read models (sealed
    # with the client's key, core/projections/sealing.py), stored responses, the access log; not even
    # in an earlier version of every projection kept beside the live one (a rebuild that kept the old)
    await rebuild(api.services.pool, api.services.store, dsn=api.services.runtime.target.app_dsn, drop_old=False)
    kept = await api.services.pool.fetch("SELECT name FROM projections.projection_versions WHERE state = 'retired'")
    assert sorted(r[0] for r in kept) == ["history", "plan", "progress"], kept
    before = await scan(database.owner_dsn, canary)
    assert before == [], before
    progress_before = (await api.http.get(f"/clients/{client_id}/progress", headers=clin)).json()
    assert planted["phq9_totals"][0] in _phq9_totals(progress_before), progress_before
    code, replayed = await alliance(api, database, "replay", "--client", str(client_id), "--json")
    assert code == 0 and f"{canary}-client-words" in replayed, replayed[-2000:]

    # a legal hold first: erasure is refused, named, and nothing is lost
    hold = (await _ok(await api.http.post(f"/clients/{client_id}/legal-holds",
                                          json={"reason": f"{canary}-hold"}, headers=admin)))["created"]["hold_id"]
    r = await api.http.post(f"/clients/{client_id}/erasure", json={"reason": "asked to be forgotten"},
                            headers=admin)
    assert_problem(r, 409, "legal_hold_in_force")
    assert f"{canary}-client-words" in await plan_text()
    r = await api.http.get(f"/clients/{client_id}/export", headers=me)
    assert r.status_code == 200, r.text
    stored = json.dumps([e.get("data") for e in r.json()["events"]])
    assert [f for f in planted["fields"] if f"{canary}-{f}\"" not in stored] == [], "a canary was not stored"
    assert len(planted["fields"]) > 40
    ledger = api.settings.erasure_ledger_path / "ledger.jsonl"
    assert str(client_id) not in (ledger.read_text() if ledger.exists() else "")
    # only an admin erases
    r = await api.http.post(f"/clients/{client_id}/erasure", json={"reason": "x"}, headers=clin)
    assert_problem(r, 403)
    await _ok(await api.http.post(f"/clients/{client_id}/legal-holds/{hold}/release", headers=admin))

    erase_key = {**admin, "Idempotency-Key": f"erase-{uuid.uuid4()}"}
    r = await api.http.post(f"/clients/{client_id}/erasure", json={"reason": f"{canary}-erasure-reason"},
                            headers=erase_key)
    body = await _ok(r)
    assert body["key_destroyed"] is True, body
    assert canary not in r.text

    async def erased() -> bool:
        text = await plan_text()
        return bool(text) and canary not in text and "[erased]" in text

    assert await eventually(erased, within=15), await plan_text()

    async def nowhere() -> list[str]:
        return await scan(database.owner_dsn, canary)

    async def clean() -> bool:
        return not await nowhere()

    assert await eventually(clean, within=15), await nowhere()

    # the views keep structure and scores, with "[erased]" where the words were
    plan = (await api.http.get(f"/clients/{client_id}/plan", headers=clin)).json()
    assert planted["goal_id"] in json.dumps(plan)
    progress = await api.http.get(f"/clients/{client_id}/progress", headers=clin)
    assert progress.status_code == 200 and canary not in progress.text
    assert sorted(set(_phq9_totals(progress.json())) & set(planted["phq9_totals"])) == planted["phq9_totals"], \
        progress.text
    moment = _now().replace("+00:00", "Z")
    for path, headers in ((f"/clients/{client_id}/history", clin), (f"/clients/{client_id}/history/export", auditor),
                          (f"/clients/{client_id}/export", me), (f"/goals/{planted['goal_id']}", clin),
                          (f"/clients/{client_id}/fhir", clin), (f"/clients/{client_id}/history?as_of={moment}", clin),
                          (f"/clients/{client_id}/plan?as_of={moment}", clin)):
        r = await api.http.get(path, headers=headers)
        assert r.status_code == 200, (path, r.text)
        assert canary not in r.text, path
    mine = (await api.http.get(f"/clients/{client_id}/export", headers=me)).json()
    assert "[erased]" in json.dumps(mine["views"]["plan"]), mine["views"]["plan"]
    assert any(e.get("data", {}).get("client_words") == "[erased]" for e in mine["events"]), mine["events"]
    history = (await api.http.get(f"/clients/{client_id}/history", headers=clin)).json()
    assert {"goal.agreed", "erasure.completed"} <= {e["type"] for e in history["entries"]}, history
    assert "[erased]" in json.dumps(history), history

    # the replay (logging at debug level) shows the history without the words
    code, replayed = await alliance(api, database, "replay", "--client", str(client_id), "--json", log_level="debug")
    assert code == 0 and "erasure.completed" in replayed, replayed[-2000:]
    assert canary not in replayed
    # the export still verifies offline; the chains still verify
    export = tmp_path / "erased-export.json"
    export.write_bytes((await api.http.get(f"/clients/{client_id}/history/export", headers=auditor)).content)
    code, output = await alliance(api, database, "verify", "--export", str(export), dsn=NO_DATABASE)
    assert code == 0, output
    async with api.services.pool.acquire() as conn:
        report = await verify_store(conn)
    assert report.ok, report.first_break

    # a rebuild after the erasure folds the erased words, and the scan stays clean
    await rebuild(api.services.pool, api.services.store, dsn=api.services.runtime.target.app_dsn)
    assert await nowhere() == []
    assert await eventually(erased, within=10), await plan_text()
    async with api.services.pool.acquire() as conn:
        assert (await verify_store(conn)).ok

    # the ledger outside the database names the client, never the words
    text = ledger.read_text()
    assert str(client_id) in text and canary not in text
    # a retry replays the first answer; a new request for an erased client is refused by name
    r = await api.http.post(f"/clients/{client_id}/erasure", json={"reason": f"{canary}-erasure-reason"},
                            headers=erase_key)
    assert r.status_code == 201 and r.headers.get("idempotent-replayed") == "true", r.text
    r = await api.http.post(f"/clients/{client_id}/erasure", json={"reason": "again"}, headers=admin)
    assert_problem(r, 409, "client_erased")

    captured = capfd.readouterr()
    assert canary not in captured.out and canary not in captured.err
    logs = all_logs()
    assert "client_erased" in logs and str(client_id) in logs, logs[-3000:]  # the capture saw the app's logs
    assert canary not in logs


async def test_erasure_from_the_cli_reaches_the_running_app(api, clinic, database, capfd, all_logs):
    """``alliance erase`` in another process: the app drops its cached key and re-folds its views."""
    canary = f"cnry{uuid.uuid4().hex[:16]}"
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id, text=f"{canary}-goal")
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    await _ok(await api.http.post(f"/goals/{goal_id}/barriers", json={"text": f"{canary}-barrier"}, headers=clin))

    async def plan_text() -> str:
        r = await api.http.get(f"/clients/{client_id}/plan", headers=clin)
        return r.text if r.status_code == 200 else ""

    async def shown() -> bool:
        return f"{canary}-barrier" in await plan_text()

    assert await eventually(shown, within=15), await plan_text()
    code, output = await alliance(api, database, "erase", "--client", str(client_id), "--tenant", str(clinic.tenant),
                                  "--admin", str(clinic.admin), "--reason", f"{canary}-reason", log_level="debug")
    assert code == 0, output
    assert canary not in output

    async def erased() -> bool:
        text = await plan_text()
        return bool(text) and canary not in text and "[erased]" in text

    assert await eventually(erased, within=15), await plan_text()
    r = await api.http.get(f"/goals/{goal_id}", headers=clin)
    assert r.status_code == 200 and canary not in r.text, r.text

    async def clean() -> bool:
        return not await scan(database.owner_dsn, canary)

    assert await eventually(clean, within=15), await scan(database.owner_dsn, canary)
    text = (api.settings.erasure_ledger_path / "ledger.jsonl").read_text()
    assert str(client_id) in text and canary not in text
    captured = capfd.readouterr()
    assert canary not in captured.out + captured.err
    assert canary not in all_logs()


# --- 4. FHIR --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["R5", "R4B"])
async def test_fhir_bundle_validates_and_codes_are_from_their_value_sets(api, clinic, version):
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    await _ok(await api.http.post(f"/goals/{goal_id}/measures",
                                  json={"instrument_id": "phq9", "schedule": EVERY_14_DAYS},
                                  headers=clin))
    for hours, total in ((48, 14), (1, 8)):
        await _ok(await api.http.post(f"/clients/{client_id}/measurements", headers=me, json={
            "instrument_id": "phq9", "answers": phq9(total), "observed_at": _now(hours), "goal_ids": [str(goal_id)]}))
    await _ok(await api.http.post(f"/clients/{client_id}/measurements", headers=me, json={
        "instrument_id": "gad7", "answers": {f"item{i}": 1 for i in range(1, 8)}, "observed_at": _now(1)}))

    query = "" if version == "R5" else "?version=R4B"
    r = await api.http.get(f"/clients/{client_id}/fhir{query}", headers=clin)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle"
    assert check_bundle(bundle, instruments=api.services.instruments) == []
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"Patient", "Goal", "CarePlan", "Consent", "Questionnaire", "QuestionnaireResponse", "Observation",
            "Provenance"} <= kinds, kinds
    loinc = [c["code"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
             for c in e["resource"]["code"].get("coding", []) if c.get("system") == "http://loinc.org"]
    assert loinc.count("44261-6") == 2, loinc
    totals = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
              and any(c.get("code") == "44261-6" for c in e["resource"]["code"].get("coding", []))]
    values = sorted(o.get("valueInteger", o.get("valueQuantity", {}).get("value")) for o in totals)
    assert values == [8, 14], values
    goal = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Goal")
    assert goal["lifecycleStatus"] == "active"

    r = await api.http.get(f"/clients/{client_id}/fhir?version=R3", headers=clin)
    assert_problem(r, 422, "invalid_fhir_version")


# --- 5. access log --------------------------------------------------------------------------------


async def test_staff_reads_are_in_the_access_log_for_auditors(api, clinic):
    client_id = await api.enrolled_client(clinic)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    start = datetime.now(UTC) - timedelta(seconds=1)
    for view in ("plan", "progress"):
        r = await api.http.get(f"/clients/{client_id}/{view}", headers=clin)
        assert r.status_code in {200, 404}, r.text
    r = await api.http.get(f"/clients/{client_id}/fhir", headers=clin)
    assert r.status_code == 200, r.text
    auditor = api.token(clinic.tenant, "auditor", clinic.auditor)
    r = await api.http.get(f"/clients/{client_id}/history/export", headers=auditor)
    assert r.status_code == 200, r.text
    params = {"client": str(client_id), "from": start.isoformat(), "to": (datetime.now(UTC) + timedelta(minutes=1))
              .isoformat()}
    r = await api.http.get("/audit/access", params=params, headers=auditor)
    assert r.status_code == 200, r.text
    entries = r.json()["entries"]
    reads = {(e["actor_id"], e["route"]) for e in entries if e["client_id"] == str(client_id)}
    assert (str(clinic.clinician), "/clients/{client_id}/plan") in reads, entries
    assert (str(clinic.clinician), "/clients/{client_id}/progress") in reads, entries
    assert all(e["actor_role"] == "clinician" for e in entries if e["actor_id"] == str(clinic.clinician))
    assert (str(clinic.clinician), "/clients/{client_id}/fhir") in reads, entries
    assert (str(clinic.auditor), "/clients/{client_id}/history/export") in reads, entries
    # a window before the reads is empty
    r = await api.http.get("/audit/access", headers=auditor, params={
        "client": str(client_id), "to": (start - timedelta(hours=1)).isoformat()})
    assert r.json()["entries"] == []
    # an auditor of another clinic sees none of it; non-auditors are refused
    other = await api.clinic()
    r = await api.http.get("/audit/access", params={"client": str(client_id)},
                           headers=api.token(other.tenant, "auditor", other.auditor))
    assert r.status_code == 200 and r.json()["entries"] == []
    for role, sub in (("clinician", clinic.clinician), ("admin", clinic.admin), ("client", client_id)):
        r = await api.http.get("/audit/access", params={"client": str(client_id)},
                               headers=api.token(clinic.tenant, role, sub))
        assert_problem(r, 403)


# --- 6. anchors -----------------------------------------------------------------------------------


async def test_anchor_then_audit_verify_reports_the_store_check(api, clinic, database):
    await active_goal(api, clinic, await api.enrolled_client(clinic))
    code, output = await alliance(api, database, "anchor")
    assert code == 0, output
    r = await api.http.get("/audit/verify", headers=api.token(clinic.tenant, "auditor", clinic.auditor))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report.get("store_check"), report
    assert report["store_check"].get("ok") is True, report
    assert report["streams"] > 0 and report["heads_digest"] and report["signature"], report
    code, output = await alliance(api, database, "verify", "--anchors")
    assert code == 0, output
    r = await api.http.get("/audit/verify", headers=api.token(clinic.tenant, "clinician", clinic.clinician))
    assert_problem(r, 403)
