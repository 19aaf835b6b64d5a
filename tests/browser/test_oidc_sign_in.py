"""Production sign-in in the browser: the clinic's OpenID Connect provider, authorization code
with PKCE (S256). A client whose provider account is linked (invitation, redemption, the
inviter's confirmation) signs in, sees their own goals and follows them live; the token is in
no storage and the code leaves the address bar."""

from __future__ import annotations

import httpx

from tests.browser.conftest import Server

JO = "Jo (client)"
SUBJECT = "jo-at-the-provider"


def _link(server: Server) -> None:
    admin = server.admin_headers()
    r = httpx.post(f"{server.url}/identity/invitations", headers=admin, timeout=10,
                   json={"principal_id": server.id(JO), "role": "client"})
    assert r.status_code == 201, r.text
    invitation = r.json()
    r = httpx.post(f"{server.url}/identity/invitations/redemption", timeout=10, json={"code": invitation["code"]},
                   headers=server.provider.issuer.bearer(SUBJECT))
    assert r.status_code == 202, r.text
    r = httpx.post(f"{server.url}/identity/invitations/{invitation['invitation_id']}/confirmation", headers=admin,
                   timeout=10, json={"accept": True})
    assert r.status_code == 200, r.text


def test_a_client_signs_in_with_the_provider_using_pkce(server: Server, open_page):
    _link(server)
    server.provider.next_subject = SUBJECT
    watched = open_page()
    page = watched.page
    page.goto(server.url + "/app/")
    page.get_by_role("button", name="Sign in with your clinic account").click()
    page.wait_for_url(f"{server.url}/app/#/me", timeout=15_000)
    page.locator("article.goal", has_text="Go for a short run on Saturdays").wait_for(timeout=15_000)
    page.locator("#live-status[data-state=live]").wait_for(timeout=15_000)  # a ticket bought with the IdP token
    assert server.provider.exchanged == 1 and server.provider.refused == []
    assert "code=" not in page.url and "state=" not in page.url
    stored = page.evaluate("JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
    assert stored == "[[],[]]", stored  # the token (and the used verifier) is in no storage
    assert page.get_by_role("button", name="Get help now").is_visible()
    assert not watched.errors, watched.errors
    # A reload forgets the token: memory only.
    page.reload()
    page.get_by_role("button", name="Sign in with your clinic account").click()
    page.locator("article.goal").first.wait_for(timeout=15_000)
    # The account is unlinked: the next call is refused (401) and the page asks to sign in again.
    r = httpx.post(f"{server.url}/identity/links/{server.id(JO)}/unlinking", headers=server.admin_headers(),
                   timeout=10)
    assert r.status_code == 200, r.text
    page.get_by_role("link", name="My progress").click()
    page.get_by_text("Your sign-in has ended. Please sign in again.").wait_for(timeout=15_000)
    assert page.get_by_role("button", name="Sign in with your clinic account").is_visible()
    assert not page.get_by_role("button", name="Get help now").is_visible()
    assert server.provider.exchanged == 2
