"""The auditor's pages: a client found from the access log, the decision history in words with
the actor's role, the record as it stood before an agreement (``?as_of=``), the signed export
downloaded and verified offline, and nothing written (every request the page makes is a GET).
Axe-core finds no serious or critical violation at desktop and phone size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from alliance.core.compliance.export import verify_export_file
from tests.browser.conftest import DESKTOP, PHONE, Server, Watched, check_pages, screenshot, sign_in

AUDITOR = "Auditor"
ROBIN = "Robin (client)"
GOAL = "Walk the dog for 20 minutes on 5 mornings a week"


def _robin_read_by_a_clinician(server: Server) -> str:
    """The access log is the auditor's list of clients: a clinician reading Robin's plan puts her on it."""
    robin = server.id(ROBIN)
    read = httpx.get(f"{server.url}/clients/{robin}/plan", headers=server.headers("Clinician A"), timeout=10)
    read.raise_for_status()
    return robin


def _requests(page: Any, server: Server) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(f"{r.method} {r.url}") if r.url.startswith(server.url)
            and "/app/" not in r.url else None)
    return seen


def test_an_auditor_reads_the_history_in_words_as_it_was_and_downloads_the_signed_export(
        server: Server, browser, tmp_path: Path):
    robin = _robin_read_by_a_clinician(server)
    # A viewer far from UTC: the times they type and read are their own.
    context = browser.new_context(viewport=DESKTOP, timezone_id="Pacific/Auckland", locale="en-NZ")
    try:
        _audit_robin(server, Watched(context.new_page()), robin, tmp_path)
    finally:
        context.close()


def _audit_robin(server: Server, watched: Watched, robin: str, tmp_path: Path) -> None:
    page = watched.page
    sent = _requests(page, server)
    sign_in(watched, server, AUDITOR)
    assert page.locator("main h1").inner_text() == "Audit"
    page.locator("[data-verification]").wait_for()
    # The clinician's pages are not the auditor's (the API refuses them plans): the app sends them home.
    page.evaluate("location.hash = '#/caseload'")
    page.wait_for_url("**/app/#/audit")
    page.locator("[data-verification]").wait_for()

    # A mistyped id is refused in words, with the focus on the refusal.
    page.fill("#find-client input[name=client_id]", "not-an-id")
    page.keyboard.press("Enter")
    problem = page.locator("#find-client .error")
    problem.wait_for()
    assert "not a client id" in problem.inner_text()
    assert page.evaluate("document.activeElement.classList.contains('error')")

    # Robin is in the access log's list; opened with the keyboard.
    link = page.locator(f'#read-clients tr[data-client="{robin}"] a')
    assert "Robin" in link.inner_text()
    link.focus()
    page.keyboard.press("Enter")
    page.locator("#history tbody tr").first.wait_for()
    assert page.locator("main h1").inner_text() == "Decision history – Robin"

    # In words, with who and their role; the raw entry is not the view.
    agreed = page.locator('#history tr[data-type="goal.agreed"]')
    assert agreed.count() == 2
    by_client, by_clinician = agreed.nth(0).inner_text(), agreed.nth(1).inner_text()
    assert f"Agreed to version 2 of “{GOAL}”" in by_client and "The client" in by_client
    assert "Clinician A" in by_clinician and "clinician" in by_clinician
    proposed = page.locator('#history tr[data-type="goal.proposed"]').inner_text()
    assert "Proposed a goal (version 1)" in proposed and "get out of the house in the mornings" in proposed
    consent = page.locator('#history tr[data-type="consent.granted"]').first.inner_text()
    assert "Consented to setting goals together" in consent
    accepted = page.locator('#history tr[data-type="goal.change_accepted"]').inner_text()
    assert f"Accepted moving the date of “{GOAL}” to" in accepted and "(now version 3)" in accepted
    text = page.locator("main").inner_text()
    assert '"event_id"' not in text and "goal.agreed" not in text
    goal = page.locator("#goals-then [data-goal]").first
    assert goal.get_attribute("data-status") == "active"
    assert "Agreed to version 3 by the client and the clinician" in goal.inner_text()

    # As it stood right after the entry before the first agreement: proposed, agreed by no one.
    rows = page.locator("#history tbody tr")
    types = [rows.nth(i).get_attribute("data-type") for i in range(rows.count())]
    before = types.index("goal.agreed") - 1
    rows.nth(before).locator("button.as-of-entry").focus()
    page.keyboard.press("Enter")
    # (locator assertions, not wait_for_function: polling a string would be eval, which the page's CSP refuses)
    expect(page.locator("#as-of-status")).to_contain_text("as it stood on")
    assert page.evaluate("document.activeElement.id") == "as-of-status"
    assert page.locator('#history tr[data-type="goal.agreed"]').count() == 0
    assert page.locator("#history tbody tr").count() == before + 1
    then = page.locator("#goals-then [data-goal]").first
    assert then.get_attribute("data-status") == "proposed"
    assert GOAL in then.inner_text() and "No one had agreed to version 2 yet" in then.inner_text()
    assert page.locator("#goals-h").inner_text() == "The goals as they were then"
    screenshot(page, "auditor-as-of-desktop")

    # A moment typed in the viewer's own time, before anything was recorded: nothing yet.
    page.fill("#as-of input[type=datetime-local]", "2001-02-03T04:05:06")
    page.locator("#as-of button[type=submit]").click()
    expect(page.locator("#as-of-status")).to_contain_text("Nothing had been recorded")
    assert page.locator("#history tbody tr").count() == 0
    asked = [s for s in sent if "as_of=" in s]
    # 04:05:06 in Auckland (summer time, UTC+13) is 15:05:06 UTC the day before
    assert asked[-1].endswith("as_of=" + quote("2001-02-02T15:05:06.000Z", safe="")), asked[-1]
    page.locator("#as-of-now").click()
    expect(page.locator('#history tr[data-type="goal.agreed"]')).to_have_count(2)
    answers = page.locator('#history tr[data-type="measurement.recorded"]').first
    assert "Recorded answers to PHQ-9" in answers.inner_text()
    # Decisions only: the questionnaire answers leave the list, the agreements stay.
    page.select_option("#entry-kind", "decisions")
    expect(page.locator('#history tr[data-type="measurement.recorded"]')).to_have_count(0)
    assert page.locator('#history tr[data-type="goal.agreed"]').count() == 2
    assert page.evaluate("document.activeElement.id") == "entry-kind"

    # The signed export: saved as the server sent it, JSON that verifies offline with the server's public keys.
    with page.expect_download() as download:
        page.locator("#download-export").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.startswith(f"alliance-history-{robin[:8]}") and saved.suffix == ".json"
    document = json.loads(saved.read_text())
    assert document["kind"] == "alliance.history_export" and document["client_id"] == robin
    keys = httpx.get(server.url + "/.well-known/alliance-keys.json", timeout=10).json()
    assert verify_export_file(saved, keys).ok
    note = page.locator("#export .notice")
    assert "unchanged" in note.inner_text() and page.evaluate("document.activeElement.closest('#export') !== null")
    served = httpx.get(f"{server.url}/clients/{robin}/history/export", headers=_auditor(server), timeout=10)
    assert served.headers["content-type"].startswith("application/json")

    # Who read the record: the clinician's read of the plan, in words.
    access = page.locator("#access-log").inner_text()
    assert "Clinician A (clinician)" in access and "plan" in access

    # Read-only: the auditor's pages asked the API for nothing but GETs.
    assert sent and all(s.startswith("GET ") for s in sent), sent
    assert not watched.errors, watched.errors


def _auditor(server: Server) -> dict[str, str]:
    return server.headers(AUDITOR)


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_the_auditor_pages_are_accessible(server: Server, open_page, size, viewport):
    robin = _robin_read_by_a_clinician(server)
    watched = open_page(viewport)
    page = sign_in(watched, server, AUDITOR)
    found = check_pages(page, (("auditor-home", "#/audit", "#read-clients"),
                               ("auditor-history", f"#/audit/clients/{robin}", "#access-log")),
                        size, viewport)
    print(f"\n[axe] auditor pages, {size}: serious or critical violations: {found or 'none'}")
    assert not found, found
    assert not watched.errors, watched.errors
