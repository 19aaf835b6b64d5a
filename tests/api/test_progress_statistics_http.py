"""Issue 13's statistics through HTTP: goal ratings name their goal, NHS TT indicators by
name, plugin jargon flagged in client-facing text (observed failures #4, #5, #7)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any


def phq9(total: int) -> dict[str, int]:
    """PHQ-9 answers adding up to ``total`` with item 9 at 0 (no risk flag)."""
    answers = {f"item{i}": 0 for i in range(1, 10)}
    for i in range(1, 9):
        answers[f"item{i}"] = min(3, total - sum(answers.values()))
    return answers


async def progress_when(api: Any, client_id: str, headers: dict[str, str], ready: Any) -> dict[str, Any]:
    for _ in range(100):  # projections follow the store asynchronously
        r = await api.http.get(f"/clients/{client_id}/progress", headers=headers)
        assert r.status_code == 200, r.text
        if ready(r.json()):
            return r.json()  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(r.text)


async def test_statistics_and_plain_language_through_http(api, clinic):  # type: ignore[no-untyped-def]
    client_id = await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    r = await api.http.post(f"/clients/{client_id}/goals", json={"text": "Less hypervigilance at work"}, headers=me)
    assert r.status_code == 201, r.text
    goal_id = r.json()["created"]["goal_id"]

    # A GAS rating naming no goal is refused, naming the field
    observed = datetime.now(UTC) - timedelta(days=1)
    r = await api.http.post(f"/clients/{client_id}/measurements", json={
        "instrument_id": "gas", "answers": {"level": 2}, "observed_at": observed.isoformat()}, headers=me)
    assert r.status_code == 422, r.text
    assert (r.json()["code"], r.json()["field"]) == ("goal_required", "goal_ids")

    # PHQ-9 12 → 9: no reliable change, but recovery, by name
    for total in (12, 9):
        r = await api.http.post(f"/clients/{client_id}/measurements", json={
            "instrument_id": "phq9", "answers": phq9(total), "observed_at": observed.isoformat()}, headers=me)
        assert r.status_code == 201, r.text
        observed += timedelta(hours=12)
    view = await progress_when(api, client_id, clin, lambda v: v["measures"] and v["measures"][0]["latest"] == 9)
    [m] = view["measures"]
    assert m["reliable_change"]["status"] == "no_reliable_change"
    assert m["indicators"]["recovery"]["met"] is True and m["indicators"]["reliable_recovery"]["met"] is False
    assert m["change_index"]["rci"] is None and m["change_index"]["reason"]
    assert m["informants"]["differ"] is False

    # The plugin glossary (GAD-7's "hypervigilance") flags the goal's words in the plan
    # (the plan is its own projection: caught up on its own, not when progress is)
    for _ in range(100):
        r = await api.http.get(f"/clients/{client_id}/plan", headers=me)
        assert r.status_code == 200, r.text
        if any(g["goal_id"] == goal_id for g in r.json()["goals"]):
            break
        await asyncio.sleep(0.1)
    [goal] = [g for g in r.json()["goals"] if g["goal_id"] == goal_id]
    assert [h["term"] for h in goal["plain_language"]] == ["hypervigilance"]
