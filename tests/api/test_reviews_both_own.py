"""Reviews both people own, over HTTP: the client confirms a review (agreeing, or not and saying
why), and the care team answers feedback, linking the events of what changed because of it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.api.support import active_goal, assert_problem


async def progress_until(api: Any, client_id: uuid.UUID, headers: dict[str, str], ready: Any) -> dict[str, Any]:
    async with asyncio.timeout(10):  # projected a moment after the command
        while True:
            view = (await api.http.get(f"/clients/{client_id}/progress", headers=headers)).json()
            if ready(view):
                return view
            await asyncio.sleep(0.05)


async def test_the_client_confirms_a_review_and_feedback_is_answered_with_what_changed(api, clinic):
    client_id = await api.enrolled_client(clinic)
    other = await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", client_id)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    goal_id, _ = await active_goal(api, clinic, client_id)
    r = await api.http.post(f"/goals/{goal_id}/checkpoints", headers=clin,
                            json={"provisional_date": "2026-04-01", "purpose": "four weeks in"})
    assert r.status_code == 201, r.text
    checkpoint_id = r.json()["created"]["checkpoint_id"]
    r = await api.http.post(f"/goals/{goal_id}/reviews", headers=clin, json={
        "checkpoint_id": checkpoint_id, "outcome": "adjust_pace", "summary": "Mornings are hard; three days a week"})
    assert r.status_code == 201, r.text
    review_id = r.json()["created"]["review_id"]

    confirm = f"/goals/{goal_id}/reviews/{review_id}/confirmation"
    assert_problem(await api.http.post(confirm, json={"agrees": True}, headers=clin), 403)
    assert_problem(await api.http.post(confirm, json={"agrees": False}, headers=me), 422, "client_view_required")
    assert_problem(await api.http.post(f"/goals/{goal_id}/reviews/{uuid.uuid4()}/confirmation",
                                       json={"agrees": True}, headers=me), 404, "review_not_found")
    r = await api.http.post(confirm, json={"agrees": False, "client_view": "Weekends work better for me"},
                            headers=me)
    assert r.status_code == 201, r.text
    assert_problem(await api.http.post(confirm, json={"agrees": True}, headers=me), 409, "review_already_confirmed")

    # the client's feedback, the change it led to, and the answer that links them
    r = await api.http.post(f"/clients/{client_id}/feedback", headers=me,
                            json={"text": "Mornings before work are too rushed", "goal_ids": [str(goal_id)]})
    assert r.status_code == 201, r.text
    feedback_id = r.json()["created"]["feedback_id"]
    r = await api.http.post(f"/goals/{goal_id}/changes", headers=clin,
                            json={"kind": "target", "new_text": "Walk the dog at weekends"})
    assert r.status_code == 201, r.text
    change_event = r.json()["events"][0]["event_id"]
    answers = f"/clients/{client_id}/feedback/{feedback_id}/answers"
    r = await api.http.post(f"/clients/{other}/measurements", headers=api.token(clinic.tenant, "client", other),
                            json={"instrument_id": "mood_diary", "answers": {"mood": 5},
                                  "observed_at": "2026-03-01T09:00:00+00:00"})
    assert r.status_code == 201, r.text
    foreign = r.json()["events"][0]["event_id"]
    for bad in (foreign, str(uuid.uuid4())):  # another client's event, or none: nothing recorded
        assert_problem(await api.http.post(answers, headers=clin, json={"text": "Done", "change_event_ids": [bad]}),
                       422, "unknown_event")
    assert_problem(await api.http.post(answers, headers=me, json={"text": "Done"}), 403)
    assert_problem(await api.http.post(f"/clients/{client_id}/feedback/{uuid.uuid4()}/answers", headers=clin,
                                       json={"text": "Done"}), 404, "feedback_not_found")
    r = await api.http.post(answers, headers=clin, json={
        "text": "Thank you: I proposed weekends instead", "change_event_ids": [change_event]})
    assert r.status_code == 201, r.text

    view = await progress_until(api, client_id, me, lambda v: v["feedback"] and v["feedback"][0]["answers"]
                                and any(rv.get("client_agrees") is not None
                                        for g in v["goals"] for rv in g["reviews"]))
    [review] = [rv for g in view["goals"] for rv in g["reviews"]]
    assert (review["client_agrees"], review["client_confirmation"]) == (False, "Weekends work better for me")
    assert review["confirmed_by_role"] == "client"
    [answer] = view["feedback"][0]["answers"]
    assert answer["text"] == "Thank you: I proposed weekends instead"
    assert answer["change_event_ids"] == [change_event] and answer["by_role"] == "clinician"
