"""A questionnaire form in the client's language where the instrument has it (the browser's
language, here Dutch), with the instrument's own answer labels; English where it has none."""

from __future__ import annotations

from tests.browser.conftest import Server, Watched, sign_in


def test_the_form_speaks_the_clients_language_where_the_instrument_does(server: Server, browser):
    context = browser.new_context(locale="nl-NL", viewport={"width": 390, "height": 844})
    try:
        watched = Watched(context.new_page())
        page = sign_in(watched, server, "Alex (client)")
        page.evaluate("location.hash = '#/me/check-in/week_check'")
        form = page.locator("form.questionnaire[data-instrument=week_check]")
        form.wait_for(timeout=10_000)
        assert form.locator("legend").inner_text() == "Hoe was je week in het algemeen?"
        assert [label.inner_text() for label in form.locator("fieldset label").all()] == ["Zwaar", "Wisselend", "Goed"]
        form.get_by_label("Goed").check()
        form.get_by_role("button", name="Save my answers").click()
        page.get_by_text("Saved. Thank you.").wait_for(timeout=10_000)
        page.evaluate("location.hash = '#/me/check-in/phq9'")  # no Dutch in the PHQ-9 here: its English
        page.locator("form.questionnaire[data-instrument=phq9] legend").first.wait_for(timeout=10_000)
        first = page.locator("form.questionnaire legend").first.inner_text()
        assert first == "Little interest or pleasure in doing things"
        assert not watched.errors, watched.errors
    finally:
        context.close()
