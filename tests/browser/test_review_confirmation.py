"""A review is the client's as much as the clinician's. The clinician records one; the client,
signed in on a phone and using the keyboard only, reads it in plain words and says they see it
differently, in their own words; the clinician's open page shows those words beside the record.
The "I agree" path: an answer lost on the way is sent again with the same Idempotency-Key (so
it is not refused as a second confirmation), and a review already confirmed elsewhere shows the
API's problem detail, focused. axe-core finds nothing serious on the new view at either size."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.browser.conftest import DESKTOP, PHONE, Server, axe_violations, screenshot, sign_in

ROBIN = "Robin (client)"
SAM = "Sam (client)"
CLINICIAN = "Clinician A"
SUMMARY = "Breakfast happened on three weekdays; we agreed to aim for three, not five, for now"
MY_VIEW = "It was three because of the early shifts, not because five is too many"


def _active_goal(server: Server, client: str, text: str) -> str:
    """A goal the client and the clinician have both agreed (a review needs one)."""
    client_id = server.id(client)
    r = httpx.post(f"{server.url}/clients/{client_id}/goals", json={"text": text}, headers=server.headers(CLINICIAN),
                   timeout=10)
    assert r.status_code == 201, r.text
    goal_id = str(r.json()["created"]["goal_id"])
    for who in (client, CLINICIAN):
        r = httpx.post(f"{server.url}/goals/{goal_id}/agreements", json={"version": 1}, headers=server.headers(who),
                       timeout=10)
        assert r.status_code == 201, r.text
    return goal_id


def _review(server: Server, client: str, goal_id: str, review_id: str | None = None, *, timeout: float = 20
            ) -> dict[str, Any]:
    """The goal's (newest, or this) review in the progress view, once projected there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = httpx.get(f"{server.url}/clients/{server.id(client)}/progress", headers=server.headers(client),
                         timeout=10).json()
        reviews = [r for g in view["goals"] if g["goal_id"] == goal_id for r in g["reviews"]
                   if review_id is None or r["review_id"] == review_id]
        if reviews:
            return max(reviews, key=lambda r: r["occurred_at"])
        time.sleep(0.25)
    raise AssertionError(f"no review of goal {goal_id} in the progress view")


def _confirmed(server: Server, client: str, goal_id: str, review_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        review = _review(server, client, goal_id, review_id)
        if review["client_agrees"] is not None:
            return review
        time.sleep(0.25)
    raise AssertionError(f"review {review_id} not confirmed in the progress view")


def _tab_to(page: Any, selector: str, limit: int = 60) -> None:
    """Press Tab until the focused element matches ``selector`` (keyboard only)."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def _focused_text(page: Any) -> str:
    return str(page.evaluate("document.activeElement.textContent"))


def test_the_client_sees_a_review_differently_and_the_clinician_reads_their_words(server: Server, open_page):
    robin = server.id(ROBIN)
    goal_id = _active_goal(server, ROBIN, "Eat breakfast before 9 on weekdays")

    staff = open_page()
    desk = sign_in(staff, server, CLINICIAN)
    desk.evaluate(f"location.hash = '#/clients/{robin}'")
    card = desk.locator(f"article.goal[data-goal='{goal_id}']")
    card.locator("summary", has_text="Work on this goal").click()
    form = card.locator("form.review")
    form.get_by_label("Outcome of the review").select_option("adjust_target")
    form.get_by_label("The client's view").fill("Weekday mornings are rushed")
    form.get_by_label("Summary, in plain words").fill(SUMMARY)
    form.get_by_role("button", name="Record review").click()
    review_id = _review(server, ROBIN, goal_id)["review_id"]
    recorded = desk.locator(f"article.goal[data-goal='{goal_id}'] [data-review='{review_id}']")
    recorded.and_(desk.locator("[data-state=awaiting]")).wait_for(timeout=10_000)
    assert "Waiting for the client to confirm" in recorded.inner_text()

    # The client, on a phone, keyboard only: the nav's Reviews link, then the review's form.
    client = open_page(PHONE)
    page = sign_in(client, server, ROBIN)
    _tab_to(page, "#nav a[href='#/me/reviews']")
    page.keyboard.press("Enter")
    page.locator("main h1", has_text="Reviews of my goals").wait_for(timeout=10_000)
    mine = page.locator(f"section.review[data-review='{review_id}']")
    text = mine.inner_text()
    assert "Change the aim" in text and SUMMARY in text and "Weekday mornings are rushed" in text, text
    assert "Waiting for your answer" in text
    assert mine.get_by_label("Your own view, in your words").get_attribute("maxlength") == "2000"
    assert "Up to 2,000 characters" in text and "0 of 2,000 characters" in text

    # "I see it differently" without words: the page asks for them, focused, before sending anything.
    _tab_to(page, f"section.review[data-review='{review_id}'] button.differ-review")
    page.keyboard.press("Enter")
    assert "Please write how you see it" in _focused_text(page)
    assert mine.get_by_label("Your own view, in your words").get_attribute("aria-invalid") == "true"
    assert not axe_violations(page), "axe: the review form with its error, phone"
    page.keyboard.press("Tab")  # from the error straight to the words
    assert page.evaluate("document.activeElement.name") == "client_view"
    page.keyboard.type(MY_VIEW)
    assert f"{len(MY_VIEW)} of 2,000 characters" in mine.inner_text()
    _tab_to(page, f"section.review[data-review='{review_id}'] button.differ-review")
    page.keyboard.press("Enter")

    # Sent, then confirmed from the progress view (live): the focus stays on the answer.
    mine.and_(page.locator("[data-state='confirmed:false']")).wait_for(timeout=10_000)
    assert "You see it differently" in mine.inner_text() and MY_VIEW in mine.inner_text()
    assert page.evaluate("(id) => document.querySelector(`[data-review='${id}']`).contains(document.activeElement)"
                         " && document.activeElement.hasAttribute('data-focus')", review_id)
    assert not axe_violations(page), "axe: a review answered, phone"
    screenshot(page, "client-review-answered-phone")
    review = _confirmed(server, ROBIN, goal_id, review_id)
    assert review["client_agrees"] is False and review["client_confirmation"] == MY_VIEW
    assert review["confirmed_by_role"] == "client"

    # My goals reflects it.
    _tab_to(page, "#nav a[href='#/me']")
    page.keyboard.press("Enter")
    last = page.locator(f"article.goal[data-goal='{goal_id}'] .goal-review")
    last.filter(has_text="You see it differently").wait_for(timeout=10_000)
    assert MY_VIEW in last.inner_text()

    # The clinician's open page: their record beside the client's own words.
    answered = desk.locator(f"article.goal[data-goal='{goal_id}'] [data-review='{review_id}']")
    answered.and_(desk.locator("[data-state=differs]")).wait_for(timeout=10_000)
    record, theirs = answered.locator(":scope > div").all()
    assert SUMMARY in record.inner_text() and "Change the aim" in record.inner_text()
    assert "The client sees it differently" in theirs.inner_text() and MY_VIEW in theirs.inner_text()
    answered.scroll_into_view_if_needed()
    screenshot(desk, "clinician-review-answered-desktop")
    assert not staff.errors and not client.errors, staff.errors + client.errors


def test_the_client_agrees_a_lost_answer_is_sent_again_and_a_refusal_is_shown(server: Server, open_page):
    sam = server.id(SAM)
    goal_id = _active_goal(server, SAM, "Go to the Thursday quiz with my cousin")
    ids = {}
    for name, outcome in (("lost", "continue"), ("elsewhere", "celebrate")):
        r = httpx.post(f"{server.url}/goals/{goal_id}/reviews", headers=server.headers(CLINICIAN), timeout=10,
                       json={"outcome": outcome, "summary": f"Review {name}: two quizzes so far"})
        assert r.status_code == 201, r.text
        ids[name] = str(r.json()["created"]["review_id"])
        _review(server, SAM, goal_id, ids[name])

    watched = open_page(DESKTOP)
    page = watched.page
    # No live stream on this page: what it shows is what it fetched, as for a client whose
    # stream is down, so a review confirmed elsewhere still offers its buttons here.
    page.context.route("**/progress/stream-tickets", lambda route: route.abort())
    keys: list[str] = []
    page.on("request", lambda req: keys.append(req.headers.get("idempotency-key", ""))
            if req.url.endswith(f"/reviews/{ids['lost']}/confirmation") else None)

    def lose_the_answer(route: Any) -> None:
        route.fetch()  # the server records it ...
        route.abort("internetdisconnected")  # ... and the answer never arrives

    confirmation = f"**/reviews/{ids['lost']}/confirmation"
    page.context.route(confirmation, lose_the_answer, times=1)
    sign_in(watched, server, SAM)
    page.evaluate("location.hash = '#/me/reviews'")
    lost = page.locator(f"section.review[data-review='{ids['lost']}']")
    lost.wait_for(timeout=10_000)
    assert "Keep going as we are" in lost.inner_text()

    lost.get_by_role("button", name="I agree").click()
    lost.locator("p.error").wait_for(timeout=10_000)
    assert "We could not reach the clinic's server" in _focused_text(page)
    assert _confirmed(server, SAM, goal_id, ids["lost"])["client_agrees"] is True  # it was recorded
    lost.get_by_role("button", name="I agree").click()  # the retry: answered from the first attempt
    lost.and_(page.locator("[data-state=sent]")).wait_for(timeout=10_000)
    assert "Thank you" in _focused_text(page) and "You agreed" in _focused_text(page)
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys

    # Confirmed on another device meanwhile: the API refuses, and its detail is shown, focused.
    r = httpx.post(f"{server.url}/goals/{goal_id}/reviews/{ids['elsewhere']}/confirmation", json={"agrees": True},
                   headers=server.headers(SAM), timeout=10)
    assert r.status_code == 201, r.text
    again = httpx.post(f"{server.url}/goals/{goal_id}/reviews/{ids['elsewhere']}/confirmation", json={"agrees": True},
                       headers=server.headers(SAM), timeout=10)
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
    elsewhere = page.locator(f"section.review[data-review='{ids['elsewhere']}']")
    elsewhere.get_by_role("button", name="I agree").click()
    elsewhere.locator("p.error").wait_for(timeout=10_000)
    assert _focused_text(page) == again.json()["detail"]
    assert not axe_violations(page), "axe: the review page with a refusal, desktop"

    # Back to live: both reviews read as agreed, from the progress view.
    page.context.unroute("**/progress/stream-tickets")
    page.evaluate("location.hash = '#/me'")
    page.locator("main h1", has_text="My goals").wait_for(timeout=10_000)
    page.evaluate("location.hash = '#/me/reviews'")
    for name in ("lost", "elsewhere"):
        card = page.locator(f"section.review[data-review='{ids[name]}'][data-state='confirmed:true']")
        card.wait_for(timeout=10_000)
        assert "You agreed with this review" in card.inner_text()
    assert not axe_violations(page), "axe: reviews answered, desktop"
    history = httpx.get(f"{server.url}/clients/{sam}/history", headers=server.headers(CLINICIAN), timeout=10).json()
    confirmed = [e for e in history["entries"] if e["type"] == "goal.review_confirmed"]
    assert len(confirmed) == 2 and {e["actor_role"] for e in confirmed} == {"client"}, confirmed
    assert not watched.errors, watched.errors
