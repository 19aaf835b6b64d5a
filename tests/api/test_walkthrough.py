"""The README's walkthrough, end to end through HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta


async def test_collaborative_goal_from_proposal_to_progress(api, clinic):
    client_id = await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)

    r = await api.http.post(f"/clients/{client_id}/goals", json={"text": "Walk the dog every morning"}, headers=me)
    assert r.status_code == 201, r.text
    goal_id = r.json()["created"]["goal_id"]
    assert r.headers["location"] == f"/goals/{goal_id}"

    r = await api.http.post(f"/goals/{goal_id}/reflections",
                            json={"reflection": "You'd like a morning walk with your dog, most days"}, headers=clin)
    assert r.status_code == 201, r.text
    r = await api.http.get(f"/goals/{goal_id}", headers=me)
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    etag = r.headers["etag"]
    for who in (me, clin):
        r = await api.http.post(f"/goals/{goal_id}/agreements", json={"version": version}, headers=who)
        assert r.status_code == 201, r.text
    r = await api.http.get(f"/goals/{goal_id}", headers=clin)
    assert r.json()["fhir_lifecycle_status"] == "active"
    assert r.headers["etag"] != etag

    # a stale If-Match is a 412 and records nothing
    r = await api.http.post(f"/goals/{goal_id}/milestones", json={"description": "Walk to the park"},
                            headers={**clin, "If-Match": etag})
    assert r.status_code == 412, r.text
    assert r.json()["code"] == "precondition_failed"

    observed = datetime.now(UTC) - timedelta(days=1)
    for total in (15, 8):
        answers = {f"item{i}": 0 for i in range(1, 10)}
        for i in range(1, 10):
            if sum(answers.values()) < total:
                answers[f"item{i}"] = min(3, total - sum(answers.values()))
        answers["item9"] = 0
        r = await api.http.post(f"/clients/{client_id}/measurements", json={
            "instrument_id": "phq9", "answers": answers, "observed_at": observed.isoformat(),
            "goal_ids": [goal_id]}, headers=me)
        assert r.status_code == 201, r.text
        observed += timedelta(hours=12)

    for _ in range(50):  # projections follow the store asynchronously
        r = await api.http.get(f"/clients/{client_id}/progress", headers=clin)
        assert r.status_code == 200, r.text
        if "15" in r.text and "8" in r.text:
            break
        await asyncio.sleep(0.1)
    r = await api.http.get(f"/clients/{client_id}/plan", headers=me)
    assert r.status_code == 200, r.text
    assert "Walk the dog every morning" in r.text
    assert r.json()["crisis_information"]["text"]  # the client is always shown where to get help
    admin = api.token(clinic.tenant, "admin", clinic.admin)
    r = await api.http.post("/clinic/crisis-information", json={"text": "Call the clinic line, day or night",
                                                                "contacts": ["0000 000 000"]}, headers=admin)
    assert r.status_code == 201, r.text
    r = await api.http.get(f"/clients/{client_id}/plan", headers=me)
    assert r.json()["crisis_information"] == {"text": "Call the clinic line, day or night",
                                              "contacts": ["0000 000 000"]}
    r = await api.http.get(f"/clients/{client_id}/history", headers=clin)
    assert r.status_code == 200 and "goal.agreed" in r.text
    # ?goal_id= narrows the history, now and as of a moment alike
    other = await api.http.post(f"/clients/{client_id}/goals", json={"text": "Call my sister on Sundays"},
                                headers=me)
    other_id = other.json()["created"]["goal_id"]
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    for query in ({"goal_id": goal_id}, {"goal_id": goal_id, "as_of": later}):
        r = await api.http.get(f"/clients/{client_id}/history", params=query, headers=clin)
        assert r.status_code == 200, r.text
        goals = {e["goal_id"] for e in r.json()["entries"] if e["goal_id"]}
        assert goals == {goal_id}, (query, goals)
    assert other_id != goal_id
