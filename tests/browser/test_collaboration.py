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
    # in plain words (history_words.js, as the auditor's page has them), never the event types
    newest = rows.nth(0).inner_text()
    assert f"Recorded a review of “{GOAL}”: Keep going as we are." in newest and "Clinician A" in newest, newest
    assert "clinician" in newest and "Six feels right for now" in newest, newest
    history = desk.locator("main tbody").inner_text()
    change = f"changing the aim of “{GOAL}” to “{SUGGESTED}”"
    assert f"Proposed {change}." in history and f"Accepted {change}" in history, history
    assert "The client" in desk.locator("main tbody tr[data-type='goal.change_accepted']").first.inner_text()
    assert "goal review recorded" not in history and "goal.change" not in history, history
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


def test_the_clinician_reflects_and_revises_and_the_client_declines_a_change(server: Server, open_page):
    jo = server.id("Jo (client)")
    me = server.headers("Jo (client)")
    r = httpx.post(f"{server.url}/clients/{jo}/goals", json={"text": "Stretch after each run"}, headers=me, timeout=10)
    assert r.status_code == 201, r.text
    new_goal = r.json()["created"]["goal_id"]
    plan = httpx.get(f"{server.url}/clients/{jo}/plan", headers=me, timeout=10).json()
    run = next(g for g in plan["goals"] if g["status"] == "active")
    r = httpx.post(f"{server.url}/goals/{run['goal_id']}/changes", headers=server.headers("Clinician B"), timeout=10,
                   json={"kind": "pace", "new_text": "Twice a week", "rationale": "You enjoy it"})
    assert r.status_code == 201, r.text

    staff = open_page()
    desk = sign_in(staff, server, "Clinician B")
    desk.evaluate(f"location.hash = '#/clients/{jo}'")
    goal = desk.locator(f"article.goal[data-goal='{new_goal}']")
    goal.locator("summary", has_text="Work on this goal").click()
    goal.locator("form.reflect").get_by_label("Reflect the goal back").fill("A few minutes of stretching after running")
    goal.locator("form.reflect").get_by_role("button", name="Reflect").click()
    goal = desk.locator(f"article.goal[data-goal='{new_goal}']", has_text="A few minutes of stretching after running")
    goal.wait_for(timeout=10_000)
    goal.locator("summary", has_text="Work on this goal").click()
    revise = goal.locator("form.revise")
    revise.get_by_label("Revise the wording (a new version)").fill("Stretch for 5 minutes after runs")
    revise.get_by_role("button", name="Revise").click()
    desk.locator(f"article.goal[data-goal='{new_goal}']", has_text="version 2").wait_for(timeout=10_000)
    # an agreed goal offers no rewording: only a change proposal
    active = desk.locator(f"article.goal[data-goal='{run['goal_id']}']")
    assert active.locator("form.reflect").count() == 0 and active.locator("form.propose-change").count() == 1

    client = open_page()
    page = sign_in(client, server, "Jo (client)")
    mine = page.locator(f"article.goal[data-goal='{new_goal}']")
    assert "My clinician's reflection: “A few minutes of stretching after running”" in mine.inner_text()
    assert "Stretch for 5 minutes after runs" in mine.inner_text()
    card = page.locator(f"article.goal[data-goal='{run['goal_id']}']")
    offer = card.locator("section.change")
    now, suggested = offer.locator(".side-by-side > div").all()
    assert "No pace set" in now.inner_text() and "Twice a week" in suggested.inner_text()
    offer.get_by_label("If you say no, you can say why (optional)").fill("Once is enough while I start")
    offer.get_by_role("button", name="No, keep it as it is").click()
    card.locator("section.change").wait_for(state="detached", timeout=10_000)
    history = httpx.get(f"{server.url}/clients/{jo}/history", headers=server.headers("Clinician B"), timeout=10).json()
    declined = [e for e in history["entries"] if e["type"] == "goal.change_declined"]
    assert declined and declined[-1]["actor_role"] == "client"
    assert "Once is enough while I start" in str(declined[-1]["details"])
    assert not staff.errors and not client.errors, staff.errors + client.errors
