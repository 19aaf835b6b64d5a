"""The clinic administrator's pages: a staff member added (and invited to sign in), deactivated
after a confirmation, the crisis information changed (clients see the new words), a refused
value shown in the API's words with the focus on it, and the settings page opened again with
every form showing what was saved (GET /clinic/settings), a work email only as "set". Every
write carries an Idempotency-Key. Axe-core finds no serious or critical violation at desktop and phone size."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.conftest import DESKTOP, PHONE, Server, check_pages, screenshot, sign_in

ADMIN = "Admin"
ROBIN = "Robin (client)"
# Another test reads the demo's crisis line in the client's dialog: the new text keeps its words.
CRISIS = "If you feel unsafe, call the clinic's crisis line (day and night) or your local emergency number."


def _active_staff(server: Server) -> dict[str, str]:
    answer = httpx.get(server.url + "/staff", headers=server.admin_headers(), timeout=10)
    answer.raise_for_status()
    return {s["staff_id"]: s["role"] for s in answer.json()["staff"]}


def _posts(page: Any, server: Server) -> list[dict[str, str]]:
    seen: list[dict[str, str]] = []
    page.on("request", lambda r: seen.append({"url": r.url, **r.headers}) if r.method == "POST"
            and r.url.startswith(server.url) else None)
    return seen


def _focused(page: Any) -> str:
    return page.evaluate("document.activeElement.className")


def test_an_admin_adds_and_deactivates_staff_and_changes_the_crisis_information(server: Server, open_page):
    watched = open_page(DESKTOP)
    page = watched.page
    posts = _posts(page, server)
    sign_in(watched, server, ADMIN)
    assert page.locator("main h1").inner_text() == "Staff"
    page.locator("#staff-list tbody tr").first.wait_for()
    assert "Clinician A" in page.locator("#staff-list").inner_text()

    # Add a supervisor (Alliance makes the id); they are listed and active in the API.
    page.select_option("#add-staff select[name=role]", "supervisor")
    page.locator("#add-staff button[type=submit]").focus()
    page.keyboard.press("Enter")
    added = page.locator("#add-staff .notice .new-staff-id")
    added.wait_for()
    assert _focused(page) == "notice"
    new_id = added.inner_text()
    row = page.locator(f'#staff-list tr[data-staff="{new_id}"]')
    row.wait_for()
    assert row.get_attribute("data-role") == "supervisor"
    assert _active_staff(server)[new_id] == "supervisor"

    # Invite them to sign in: the code is shown once.
    row.locator("button.invite").click()
    code = row.locator(".invitation-code")
    code.wait_for()
    assert len(code.inner_text()) == 68

    # Deactivate them, by keyboard: asked once more in the row (the focus on the question's
    # button), then gone from the list and from the API's staff.
    row.locator("button.deactivate").focus()
    page.keyboard.press("Enter")
    row.locator("button.confirm-deactivate").wait_for()
    assert page.evaluate("document.activeElement.classList.contains('confirm-deactivate')")
    page.keyboard.press("Enter")
    notice = page.locator("#staff-notice")
    notice.wait_for()
    assert "is deactivated" in notice.inner_text() and page.evaluate("document.activeElement.id") == "staff-notice"
    assert page.locator(f'#staff-list tr[data-staff="{new_id}"]').count() == 0
    assert new_id not in _active_staff(server)
    screenshot(page, "admin-staff-deactivated-desktop")

    # The crisis information: saved, and the client's plan carries the new words.
    page.locator("#nav a", has_text="Clinic settings").click()
    page.locator("#crisis-form").wait_for()
    page.fill("#crisis-text", CRISIS)
    page.fill("#crisis-contacts", "Crisis line: 0000 000 000 (synthetic)\nText SHOUT to 00000 (synthetic)")
    page.locator("#crisis-form button[type=submit]").click()
    saved = page.locator("#crisis-form .notice")
    saved.wait_for()
    assert "Saved" in saved.inner_text() and _focused(page) == "notice"
    plan = httpx.get(f"{server.url}/clients/{server.id(ROBIN)}/plan", headers=server.headers(ROBIN), timeout=10).json()
    assert plan["crisis_information"] == {"text": CRISIS, "contacts": ["Crisis line: 0000 000 000 (synthetic)",
                                                                       "Text SHOUT to 00000 (synthetic)"]}

    # A refused value (more than 72 hours): the API's words, focused, the field marked invalid.
    page.fill("#escalation-hours", "100")
    page.locator("#escalation-form button[type=submit]").click()
    problem = page.locator("#escalation-form .error")
    problem.wait_for()
    assert "at most 72 hours" in problem.inner_text()
    assert page.evaluate("document.activeElement.classList.contains('error')")
    assert page.get_attribute("#escalation-hours", "aria-invalid") == "true"
    screenshot(page, "admin-settings-refused-desktop")
    # Corrected, it is saved (and the mark goes).
    page.fill("#escalation-hours", "12")
    page.locator("#escalation-form button[type=submit]").click()
    page.locator("#escalation-form .notice").wait_for()
    assert page.get_attribute("#escalation-hours", "aria-invalid") is None

    # Before anything is saved, the alert form shows the default in force, said so.
    assert page.input_value("#alert-after") == "8" and page.input_value("#alert-weeks") == ""
    assert "default is in force" in page.locator("#alert-form .changed").inner_text()
    # A saved form says who changed it (read back from GET /clinic/settings).
    page.locator("#escalation-form .changed", has_text="by you").wait_for()

    # A reminder naming the questionnaire is refused (it can be read on a lock screen).
    page.fill("#reminder-body", "Your PHQ-9 is ready to fill in.")
    page.locator("#reminder-form button[type=submit]").click()
    refused = page.locator("#reminder-form .error")
    refused.wait_for()
    assert "never names the questionnaire" in refused.inner_text()
    assert page.get_attribute("#reminder-body", "aria-invalid") == "true"
    # A work email for the auditor (auditors are not notified of anything clinical).
    page.select_option("#email-staff", server.id("Auditor"))
    page.fill("#staff-email", "auditor@clinic.example")
    page.locator("#email-form button[type=submit]").click()
    page.locator("#email-form .notice").wait_for()
    assert "auditor@clinic.example" in page.locator("#email-form .notice").inner_text()

    # Opened again, every form starts from what was saved before (GET /clinic/settings), not the default.
    page.locator("#nav a", has_text="Staff").click()
    page.locator("#staff-list").wait_for()
    page.locator("#nav a", has_text="Clinic settings").click()
    page.locator("#crisis-form").wait_for()
    assert page.input_value("#crisis-text") == CRISIS
    assert page.input_value("#crisis-contacts") == ("Crisis line: 0000 000 000 (synthetic)\n"
                                                    "Text SHOUT to 00000 (synthetic)")
    assert "Last changed" in page.locator("#crisis-form .changed").inner_text()
    assert page.input_value("#escalation-hours") == "12" and page.input_value("#duty-clinician") == ""
    # the refused reminder was not saved: the default text is still in force
    assert page.input_value("#reminder-subject") == "A questionnaire is ready"
    assert "default text is in force" in page.locator("#reminder-form .changed").inner_text()
    # the auditor's address is never sent back to the page, only that one is set
    page.select_option("#email-staff", server.id("Auditor"))
    assert "has a work email set" in page.locator("#email-status").inner_text()
    assert page.input_value("#staff-email") == ""
    assert "auditor@clinic.example" not in page.locator("main").inner_text()

    writes = [p for p in posts if "/stream-tickets" not in p["url"]]
    # add, invite, deactivate, crisis, escalation refused and saved, reminder refused, email
    assert len(writes) == 8, [p["url"] for p in writes]
    assert all(p.get("idempotency-key") for p in writes), writes
    assert len({p["idempotency-key"] for p in writes}) == len(writes)
    assert not watched.errors, watched.errors


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_the_admin_pages_are_accessible(server: Server, open_page, size, viewport):
    watched = open_page(viewport)
    page = sign_in(watched, server, ADMIN)
    found = check_pages(page, (("admin-staff", "#/admin", "#staff-list"),
                               ("admin-settings", "#/admin/settings", "#alert-form")), size, viewport)
    print(f"\n[axe] admin pages, {size}: serious or critical violations: {found or 'none'}")
    assert not found, found
    assert not watched.errors, watched.errors
