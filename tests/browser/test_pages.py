"""Every page of the web app, at desktop (1280x800) and phone (390x844) size: axe-core finds no
serious or critical violation, the page loads nothing its Content-Security-Policy refuses, and a
screenshot is written to docs/screenshots/<page>-<size>.png."""

from __future__ import annotations

import pytest

from tests.browser.conftest import DESKTOP, PHONE, Server, axe_violations, screenshot, sign_in

ROBIN = "Robin (client)"
CLINICIAN = "Clinician A"


def _pages(server: Server) -> list[tuple[str, str | None, str, str]]:
    """(name, who signs in, the hash to open, a selector that says the page is drawn)."""
    robin = server.id(ROBIN)
    return [
        ("sign-in", None, "", "ul.people button"),
        ("client-goals", ROBIN, "#/me", "article.goal"),
        ("client-reviews", ROBIN, "#/me/reviews", "section.review"),
        ("client-progress", ROBIN, "#/me/progress", "section.measure canvas"),
        ("client-check-in", ROBIN, "#/me/check-in", "ul.people a"),
        ("client-phq9", ROBIN, "#/me/check-in/phq9", "form.questionnaire"),
        ("client-mood-diary", ROBIN, "#/me/check-in/mood_diary", "form.questionnaire"),
        ("clinician-caseload", CLINICIAN, "#/caseload", "#caseload table"),
        ("clinician-client", CLINICIAN, f"#/clients/{robin}", "section.measure canvas"),
        ("clinician-history", CLINICIAN, f"#/clients/{robin}/history", "main table"),
    ]


@pytest.mark.parametrize(("size", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_every_page_is_accessible_and_photographed(server: Server, open_page, size, viewport):
    found: dict[str, list[dict[str, object]]] = {}
    for name, who, where, ready in _pages(server):
        watched = open_page(viewport)
        page = watched.page
        if who is None:
            page.goto(server.url + "/app/")
        else:
            sign_in(watched, server, who)
            page.evaluate(f"location.hash = {where!r}")
        page.locator(ready).first.wait_for(timeout=15_000)
        page.wait_for_timeout(300)  # charts draw on the next animation frame
        violations = axe_violations(page)
        if violations:
            found[name] = violations
        screenshot(page, f"{name}-{size}")
        assert not watched.errors, (name, watched.errors)
        if size == "phone":  # nothing wider than the phone's screen
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], name
        page.context.close()
    print(f"\n[axe] {size}: {len(_pages(server))} pages, serious or critical violations: {found or 'none'}")
    assert not found, found
