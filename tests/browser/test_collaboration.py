"""A clinician proposes a change to an agreed goal; the client sees it side by side with the
goal as it is and consents; the clinician records a review with its outcome and the client's
view; the history shows who did what. Each step is seen by the other person's open page
through its live stream."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.browser.conftest import Server, sign_in

ROBIN = "Robin (client)"
CLINICIAN = "Clinician A"
GOAL = "Walk the dog for 20 minutes on 5 mornings a week"
NOW = "5 mornings"  # the goal's aim (its "target" facet)
SUGGESTED = "6 mornings"


def test_a_change_is_consented_side_by_side_and_a_review_reaches_the_history(server: Server, open_page):
    staff = open_page()
    desk = sign_in(staff, server, CLINICIAN)
    desk.evaluate(f"location.hash = '#/clients/{server.id(ROBIN)}'")
    goal = desk.locator("article.goal", has_text=GOAL)
    goal.locator("summary", has_text="Work on this goal").click()
    change = goal.locator("form.propose-change")
    change.get_by_label("Propose a new aim (the client decides)").fill(SUGGESTED)
    change.get_by_label("Why (shown to the client)").fill("You've managed five most weeks")
    change.get_by_role("button", name="Propose change").click()
    desk.locator("article.goal p.hint", has_text="awaiting client").wait_for(timeout=10_000)

    client = open_page()
    page = sign_in(client, server, ROBIN)
    offer = page.locator("section.change")
    offer.wait_for(timeout=10_000)
    now, suggested = offer.locator(".side-by-side > div").all()
    assert NOW in now.inner_text() and SUGGESTED in suggested.inner_text()
    offer.get_by_role("button", name="Yes, make this change").click()
    page.locator("section.change").wait_for(state="detached", timeout=10_000)
    page.locator("article.goal dd", has_text=SUGGESTED).wait_for(timeout=10_000)
    plan = httpx.get(f"{server.url}/clients/{server.id(ROBIN)}/plan", headers=server.headers(ROBIN), timeout=10).json()
    walk = next(g for g in plan["goals"] if g["client_words"] == GOAL)
    assert walk["facets"]["target"] == SUGGESTED and walk["open_changes"] == []

    # The clinician's page followed the change; now a review, with the client's own view.
    goal = desk.locator("article.goal", has_text=GOAL)
    goal.locator("p.hint", has_text="awaiting client").wait_for(state="detached", timeout=10_000)
    if not goal.locator("details").get_attribute("open"):
        goal.locator("summary", has_text="Work on this goal").click()
    review = goal.locator("form.review")
    review.get_by_label("Outcome of the review").select_option("continue")
    review.get_by_label("The client's view").fill("Six feels right for now")
    review.get_by_role("button", name="Record review").click()
    progress = None
    for _ in range(40):
        progress = httpx.get(f"{server.url}/clients/{server.id(ROBIN)}/progress", headers=server.headers(CLINICIAN),
                             timeout=10).json()
        if any(r["client_view"] == "Six feels right for now" for g in progress["goals"] for r in g["reviews"]):
            break
        desk.wait_for_timeout(250)
    reviews = [r for g in progress["goals"] for r in g["reviews"]]
    assert any(r["outcome"] == "continue" and r["client_view"] == "Six feels right for now" for r in reviews)

    desk.get_by_role("link", name="History: who did what").click()
    rows = desk.locator("main tbody tr")
    rows.first.wait_for(timeout=10_000)
    assert "goal review recorded" in rows.nth(0).inner_text() and "Clinician A" in rows.nth(0).inner_text()
    history = desk.locator("main tbody").inner_text()
    assert "goal change accepted" in history and "goal change proposed" in history
    assert not staff.errors and not client.errors, staff.errors + client.errors


def test_what_is_due_reaches_the_caseload_and_the_client_and_the_clinician_agrees(server: Server, open_page):
    sam = server.id("Sam (client)")
    clinician = server.headers(CLINICIAN)
    r = httpx.post(f"{server.url}/clients/{sam}/goals", json={"text": "Text a friend on Fridays"}, headers=clinician,
                   timeout=10)
    assert r.status_code == 201, r.text
    goal_id = r.json()["created"]["goal_id"]
    today = datetime.now(UTC).date().isoformat()
    r = httpx.post(f"{server.url}/goals/{goal_id}/measures", headers=clinician, timeout=10, json={
        "instrument_id": "gad7", "schedule": {"kind": "every", "interval": 1, "unit": "days", "start": today}})
    assert r.status_code == 201, r.text

    staff = open_page()
    desk = sign_in(staff, server, CLINICIAN)
    row = desk.locator(f"tr[data-client='{sam}']")
    row.wait_for(timeout=10_000)
    waiting = row.locator("td").nth(2).inner_text()
    assert "a goal to agree" in waiting and "gad7 due" in waiting, waiting
    row.get_by_role("link").click()
    goal = desk.locator(f"article.goal[data-goal='{goal_id}']")
    goal.locator("summary", has_text="Work on this goal").click()
    goal.get_by_role("button", name="Agree to version 1").click()
    desk.locator(f"article.goal[data-goal='{goal_id}']", has_text="clinician agree").wait_for(timeout=10_000)

    client = open_page()
    page = sign_in(client, server, "Sam (client)")
    todo = page.locator("#due")
    todo.get_by_role("link", name="GAD-7", exact=False).click()
    page.locator("form.questionnaire[data-instrument=gad7]").wait_for(timeout=10_000)
    assert not staff.errors and not client.errors, staff.errors + client.errors
