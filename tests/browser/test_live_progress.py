"""A client agrees to a goal and records a PHQ-9; the progress chart open in another tab
updates through EventSource (a stream ticket, no reload); the clinician sees the new score,
and a risk answer shows the crisis information at once and reaches the clinician, who
acknowledges it with the action taken."""

from __future__ import annotations

import time

import httpx

from tests.browser.conftest import Server, sign_in

ROBIN = "Robin (client)"
CLINICIAN = "Clinician A"


def _answer_phq9(page, values: dict[str, int]) -> None:
    form = page.locator("form.questionnaire[data-instrument=phq9]")
    for item, value in values.items():
        form.locator(f"input[name={item}][value='{value}']").check()


def test_client_agrees_records_a_phq9_and_the_open_chart_updates_live(server: Server, open_page):
    goal_text = "Phone my sister on Sunday evenings"
    r = httpx.post(f"{server.url}/clients/{server.id(ROBIN)}/goals", json={"text": goal_text},
                   headers=server.headers(CLINICIAN), timeout=10)
    assert r.status_code == 201, r.text

    # Tab A: Robin agrees to the clinician's proposal, then watches the progress page.
    a = open_page()
    page = sign_in(a, server, ROBIN)
    card = page.locator("article.goal", has_text=goal_text)
    card.get_by_role("button", name="I agree to this goal").click()
    card = page.locator("article.goal", has_text=goal_text)  # redrawn from the stream's plan event
    card.locator("p.agreed").wait_for(timeout=10_000)
    assert "Waiting for your clinician" in card.locator("p.agreed").inner_text()
    goal_id = card.get_attribute("data-goal")
    view = httpx.get(f"{server.url}/goals/{goal_id}", headers=server.headers(ROBIN), timeout=10).json()
    assert view["agreement"]["client_agreed_version"] == view["version"]

    page.get_by_role("link", name="My progress").click()
    page.locator("#live-status[data-state=live]").wait_for(timeout=15_000)
    summary = page.locator("section.measure[data-instrument=phq9] p.summary")
    before = summary.get_attribute("data-latest")
    assert before == "6"  # the demo's last PHQ-9
    streams: list[str] = []
    page.on("request", lambda req: streams.append(req.url) if "/progress/stream?" in req.url else None)
    page.evaluate("window.__sameDocument = true")

    # Tab B: Robin records a PHQ-9 through the form generated from the instrument definition.
    b = open_page()
    other = sign_in(b, server, ROBIN)
    other.get_by_role("link", name="Check in").click()
    other.get_by_role("link", name="PHQ-9 (Patient Health Questionnaire)").click()
    form = other.locator("form.questionnaire[data-instrument=phq9]")
    assert form.locator("fieldset").count() == 10  # nine scored items and the difficulty question
    assert form.get_by_text("More than half the days").count() == 9  # the instrument's own anchors
    _answer_phq9(other, {f"item{i}": 1 for i in range(1, 9)} | {"item9": 0})
    started = time.monotonic()
    other.get_by_role("button", name="Save my answers").click()
    other.get_by_text("Saved. Thank you.").wait_for(timeout=10_000)

    # Tab A: the chart and its words follow through EventSource, without a reload.
    page.wait_for_function(
        "() => document.querySelector('section.measure[data-instrument=phq9] p.summary')?.dataset.latest === '8'",
        timeout=10_000)
    seconds = time.monotonic() - started
    print(f"\n[live] PHQ-9 saved in tab B -> chart in tab A updated after {seconds:.2f} s")
    assert page.evaluate("window.__sameDocument") is True  # the same document: no reload happened
    assert page.locator("section.measure[data-instrument=phq9] canvas").count() == 1
    assert not streams or all("ticket=" in url and "access_token" not in url for url in streams)
    assert not a.errors and not b.errors, a.errors + b.errors


def test_a_risk_answer_shows_crisis_information_and_the_clinician_acknowledges(server: Server, open_page):
    client = open_page()
    page = sign_in(client, server, ROBIN)
    page.get_by_role("link", name="Check in").click()
    page.get_by_role("link", name="PHQ-9 (Patient Health Questionnaire)").click()
    # The moment a risk answer is chosen, before anything is sent: the clinic's crisis information.
    page.locator("input[name=item9][value='1']").check()
    dialog = page.locator("dialog#crisis")
    dialog.wait_for(state="visible", timeout=5_000)
    assert "call the clinic's crisis line" in dialog.inner_text()
    assert "Crisis line: 0000 000 000 (synthetic)" in dialog.inner_text()
    dialog.get_by_role("button", name="Close").click()
    _answer_phq9(page, {f"item{i}": 2 for i in range(1, 9)})
    page.get_by_role("button", name="Save my answers").click()
    page.get_by_text("Saved. Thank you.").wait_for(timeout=10_000)
    dialog.wait_for(state="visible", timeout=5_000)  # and again with the server's answer
    dialog.get_by_role("button", name="Close").click()
    # "Get help now" is one tap away on every client page.
    page.get_by_role("link", name="My goals").click()
    page.get_by_role("button", name="Get help now").click()
    dialog.wait_for(state="visible", timeout=5_000)

    staff = open_page()
    desk = sign_in(staff, server, CLINICIAN)
    row = desk.locator(f"tr[data-client='{server.id(ROBIN)}']")
    row.locator("td.risk", has_text="1 open").wait_for(timeout=10_000)
    row.get_by_role("link").click()
    desk.locator("section.measure[data-instrument=phq9] p.summary[data-latest='17']").wait_for(timeout=10_000)
    flag = desk.locator("form.risk-flag")
    assert flag.count() == 1
    flag.get_by_label("Action taken").fill("Called Robin the same hour; safety plan reviewed")
    flag.get_by_role("button", name="Acknowledge").click()
    desk.locator("#risks", has_text="None open.").wait_for(timeout=10_000)
    plan = httpx.get(f"{server.url}/clients/{server.id(ROBIN)}/plan", headers=server.headers(CLINICIAN),
                     timeout=10).json()
    assert plan["open_risk_flags"] == []
    assert not client.errors and not staff.errors, client.errors + staff.errors


def test_a_client_records_a_mood_diary_entry_with_a_note(server: Server, open_page):
    watched = open_page()
    page = sign_in(watched, server, ROBIN)
    page.get_by_role("link", name="Check in").click()
    page.get_by_role("link", name="Mood diary").click()
    form = page.locator("form.questionnaire[data-instrument=mood_diary]")
    assert "0 = Very low, 10 = Very good" in form.inner_text()  # the instrument's own anchors
    form.get_by_label("How has your mood been today?").fill("9")
    form.get_by_label("Anything you want to remember about today? (you can skip this)").fill("Sunny walk by the river")
    form.get_by_role("button", name="Save my answers").click()
    page.get_by_text("Saved. Thank you.").wait_for(timeout=10_000)
    page.get_by_role("link", name="See my progress").click()
    page.locator("section.measure[data-instrument=mood_diary] p.summary[data-latest='9']").wait_for(timeout=10_000)
    assert not watched.errors, watched.errors
