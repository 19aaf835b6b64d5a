"""Measurement schedules over HTTP: attach with a schedule, the plan's next due date and today's
administration at the app's clock, the caseload's ``?measures=due|overdue``, a change to an
agreed goal's schedule by proposal, and bad schedules refused naming the field (nothing stored)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg
import pytest

from alliance.core.clock import SYSTEM_CLOCK, SettableClock
from tests.api.support import active_goal, assert_problem, eventually, phq9


def weekly(start: Any, **extra: Any) -> dict[str, Any]:
    return {"kind": "every", "interval": 1, "unit": "weeks", "start": start.isoformat(), "timezone": "UTC", **extra}


@pytest.fixture
def clock(api: Any) -> Any:
    clock = SettableClock()
    api.services.clock = clock
    yield clock
    api.services.clock = SYSTEM_CLOCK


async def recorded_for(api: Any, client_id: uuid.UUID) -> int:
    """Events on this client's stream and its goals' streams (the app's background processes,
    reminders among them, keep streams of their own and may append meanwhile)."""
    conn = await asyncpg.connect(api.settings.database_url)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM events WHERE subject_id = $1 AND (stream_id = $2 OR stream_id LIKE 'goal-%')",
            client_id, f"client-{client_id}"))
    finally:
        await conn.close()


async def _measure(api: Any, client_id: uuid.UUID, headers: dict[str, str], ready: Any) -> dict[str, Any]:
    async def check() -> Any:
        r = await api.http.get(f"/clients/{client_id}/plan", headers=headers)
        assert r.status_code == 200, r.text
        rows = [m for g in r.json()["goals"] for m in g["measures"]]
        return rows[0] if rows and ready(rows[0]) else None

    row = await eventually(check, within=10)
    assert row, "the plan never showed the measure as expected"
    return row  # type: ignore[no-any-return]


async def _caseload(api: Any, clinic: Any, which: str) -> set[str]:
    r = await api.http.get(f"/clients?measures={which}&limit=200",
                           headers=api.token(clinic.tenant, "clinician", clinic.clinician))
    assert r.status_code == 200, r.text
    return {row["client_id"] for row in r.json()["items"]}


async def _in_caseload(api: Any, clinic: Any, which: str, client_id: Any, *, present: bool = True) -> bool:
    """Whether ``client_id`` is (``present``) or is not on the caseload filtered by ``which``, once
    the plan projection has caught up: the caseload reads it, while ``GET /plan`` folds the
    client's newest events itself (read-your-writes), so the plan can be ahead by a moment."""
    async def settled() -> bool:
        return (str(client_id) in await _caseload(api, clinic, which)) is present

    return bool(await eventually(settled, within=10))


async def test_a_weekly_phq9_falls_due_goes_overdue_and_is_done_by_a_measurement(api, clinic, clock) -> None:
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    today = datetime.now(UTC).date()
    start = today - timedelta(days=3)
    r = await api.http.post(f"/goals/{goal_id}/measures", json={"instrument_id": "phq9", "schedule": weekly(start)},
                            headers=clin)
    assert r.status_code == 201, r.text

    clock.set(datetime.combine(start, time(9), tzinfo=UTC))  # its day: due
    row = await _measure(api, client_id, clin, lambda m: m.get("administration"))
    assert row["schedule"] == "weekly" and row["schedule_detail"]["start"] == start.isoformat()
    assert (row["administration"]["state"], row["next_due"]) == ("due", start.isoformat())
    assert await _in_caseload(api, clinic, "due", client_id)
    assert await _in_caseload(api, clinic, "overdue", client_id, present=False)

    async def in_progress() -> Any:  # the progress view computes the same at the same clock
        r = await api.http.get(f"/clients/{client_id}/progress", headers=me)
        rows = [m for g in r.json()["goals"] for m in g["measures"] if m.get("administration")]
        return rows[0] if rows else None

    shown = await eventually(in_progress, within=10)
    assert shown and (shown["administration"]["state"], shown["next_due"]) == ("due", start.isoformat())
    assert shown["administration"]["administration_id"] == row["administration"]["administration_id"]

    clock.set(datetime.combine(today, time(9), tzinfo=UTC))  # three days on: past the two days' grace
    row = await _measure(api, client_id, clin, lambda m: m["administration"]["state"] == "overdue")
    assert row["next_due"] == start.isoformat()
    assert await _in_caseload(api, clinic, "overdue", client_id)
    assert await _in_caseload(api, clinic, "due", client_id, present=False)
    r = await api.http.get("/clients", headers=clin)
    [mine] = [c for c in r.json()["items"] if c["client_id"] == str(client_id)]
    assert mine["next_due"] == start.isoformat() and mine["measures_overdue"] is True

    observed = datetime.now(UTC) - timedelta(minutes=5)
    r = await api.http.post(f"/clients/{client_id}/measurements", headers=me, json={
        "instrument_id": "phq9", "answers": phq9(8), "observed_at": observed.isoformat()})
    assert r.status_code == 201, r.text
    row = await _measure(api, client_id, clin, lambda m: m["administration"]["state"] == "done")
    assert row["next_due"] == (start + timedelta(days=7)).isoformat()
    assert row["administration"]["measurement_id"] == r.json()["created"]["measurement_id"]
    assert await _in_caseload(api, clinic, "overdue", client_id, present=False)
    assert await _in_caseload(api, clinic, "due", client_id, present=False)


async def test_an_agreed_goals_schedule_changes_only_when_the_other_party_accepts(api, clinic) -> None:
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    today = datetime.now(UTC).date()
    r = await api.http.post(f"/goals/{goal_id}/measures", json={"instrument_id": "phq9", "schedule": weekly(today)},
                            headers=clin)
    assert r.status_code == 201, r.text
    fortnightly = {**weekly(today), "interval": 2}
    before = await recorded_for(api, client_id)
    r = await api.http.post(f"/goals/{goal_id}/measures", json={"instrument_id": "phq9", "schedule": fortnightly},
                            headers=clin)
    assert_problem(r, 409, "change_proposal_required")
    assert await recorded_for(api, client_id) == before
    r = await api.http.post(f"/goals/{goal_id}/changes", headers=clin, json={
        "kind": "measure_schedule", "instrument_id": "phq9", "new_schedule": fortnightly})
    assert r.status_code == 201, r.text
    change_id = r.json()["created"]["change_id"]
    r = await api.http.get(f"/goals/{goal_id}", headers=me)
    assert r.json()["measures"] == [{"instrument_id": "phq9", "schedule": "weekly"}]  # not until accepted
    r = await api.http.post(f"/goals/{goal_id}/changes/{change_id}/acceptance", json={}, headers=me)
    assert r.status_code == 201, r.text
    r = await api.http.get(f"/goals/{goal_id}", headers=me)
    assert r.json()["measures"] == [{"instrument_id": "phq9", "schedule": "every 2 weeks"}]


@pytest.mark.parametrize(("change", "field", "code"), [
    ({"end": "2020-01-01"}, "schedule.end", "schedule_end_before_start"),
    ({"timezone": "Europe/Atlantis"}, "schedule.timezone", "schedule_timezone_unknown"),
    ({"interval": 0}, "schedule.interval", "schedule_interval_invalid"),
    ({"kind": "weekdays", "interval": None, "unit": None, "weekdays": []}, "schedule.weekdays",
     "schedule_weekdays_empty"),
    # a Saturday-only schedule from a Monday to the Tuesday after: no occurrence at all
    ({"kind": "weekdays", "interval": None, "unit": None, "weekdays": [6], "start": "2026-03-02",
      "end": "2026-03-03"}, "schedule.weekdays", "schedule_no_occurrence"),
])
async def test_a_bad_schedule_is_a_problem_naming_the_field_and_nothing_is_recorded(api, clinic, change, field,
                                                                                  code) -> None:
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    before = await recorded_for(api, client_id)
    schedule = {**weekly(datetime.now(UTC).date()), **change}
    r = await api.http.post(f"/goals/{goal_id}/measures", json={"instrument_id": "phq9", "schedule": schedule},
                            headers=clin)
    body = assert_problem(r, 422, code)
    assert body["field"] == field
    assert await recorded_for(api, client_id) == before
    # the same schedule proposed as a change is refused the same way, naming the change's field
    r = await api.http.post(f"/goals/{goal_id}/changes", headers=clin, json={
        "kind": "measure_schedule", "instrument_id": "phq9", "new_schedule": schedule})
    assert r.status_code in (404, 422), r.text  # not attached (404) is checked before the schedule


async def test_a_schedule_of_the_wrong_shape_is_refused_by_the_body_schema(api, clinic) -> None:
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    before = await recorded_for(api, client_id)
    wrong = ("weekly", {"kind": "monthly", "start": "2026-03-02"},
             {"kind": "every", "interval": 1, "unit": "fortnights", "start": "2026-03-02"})
    for schedule in wrong:
        r = await api.http.post(f"/goals/{goal_id}/measures", json={"instrument_id": "phq9", "schedule": schedule},
                                headers=clin)
        body = assert_problem(r, 422)
        assert body["field"] and body["field"].startswith("schedule"), body
    assert await recorded_for(api, client_id) == before


async def test_a_measure_attached_to_the_episode_falls_due_without_a_goal(api, clinic, clock) -> None:
    client_id = await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    today = datetime.now(UTC).date()
    daily = {"kind": "every", "interval": 1, "unit": "days", "start": today.isoformat(), "timezone": "UTC"}
    r = await api.http.post(f"/clients/{client_id}/measures", json={"instrument_id": "mood_diary", "schedule": daily},
                            headers=me)  # the client sets up their own diary
    assert r.status_code == 201, r.text
    clock.set(datetime.combine(today, time(20), tzinfo=UTC))

    async def row() -> Any:
        r = await api.http.get(f"/clients/{client_id}/plan", headers=clin)
        return next(iter(r.json().get("measures") or []), None)

    measure = await eventually(row, within=10)
    assert measure is not None and measure["schedule"] == "daily"
    assert measure["administration"]["state"] == "due" and measure["administration"]["goal_id"] is None
    assert await _in_caseload(api, clinic, "due", client_id)
    before = await recorded_for(api, client_id)
    r = await api.http.post(f"/clients/{client_id}/measures", headers=me, json={
        "instrument_id": "mood_diary", "schedule": {**daily, "timezone": "Nowhere/Special"}})
    assert assert_problem(r, 422, "schedule_timezone_unknown")["field"] == "schedule.timezone"
    assert await recorded_for(api, client_id) == before
    r = await api.http.post(f"/clients/{client_id}/measures/detachment", json={"instrument_id": "mood_diary"},
                            headers=clin)
    assert r.status_code == 201, r.text
    assert await eventually(lambda: _no_row(api, client_id, clin), within=10)


async def _no_row(api: Any, client_id: uuid.UUID, headers: dict[str, str]) -> bool:
    r = await api.http.get(f"/clients/{client_id}/plan", headers=headers)
    return r.json().get("measures") == []
