"""A page on another origin listed in ALLIANCE_CORS_ORIGINS subscribes with native EventSource
through a stream ticket and receives an update within 2 s; an origin not on the list is refused
(the browser's fetch fails: no Access-Control-Allow-Origin)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx

from tests.browser.conftest import Server

JO = "Jo (client)"
SAM = "Sam (client)"


def _page_for(site_origin: str, server: Server, label: str) -> str:
    fragment = urlencode({"api": server.url, "client": server.id(label), "token": server.people[label]["token"]})
    return f"{site_origin}/index.html#{fragment}"


def test_a_page_on_an_allowed_origin_follows_progress_with_eventsource(server: Server, open_page):
    watched = open_page()
    page = watched.page
    page.goto(_page_for(server.allowed.origin, server, SAM))
    page.wait_for_function("() => document.getElementById('state').textContent === 'ready'", timeout=15_000)
    sent = time.time()
    r = httpx.post(f"{server.url}/clients/{server.id(SAM)}/measurements", headers=server.headers(SAM), timeout=10,
                   json={"instrument_id": "mood_diary", "answers": {"mood": 7},
                         "observed_at": datetime.now(UTC).isoformat()})
    assert r.status_code == 201, r.text
    page.wait_for_function("() => [...document.querySelectorAll('#events li')].some(li => li.dataset.latest === '7')",
                           timeout=10_000)
    received = float(page.locator("#events li").last.get_attribute("data-at")) / 1000
    print(f"\n[other origin] measurement recorded -> EventSource event on the page after {received - sent:.3f} s")
    assert received - sent < 2.0


def test_an_origin_not_on_the_list_is_refused(server: Server, open_page):
    watched = open_page()
    page = watched.page
    page.goto(_page_for(server.refused.origin, server, JO))
    page.wait_for_function("() => document.getElementById('state').textContent.startsWith('refused')",
                           timeout=15_000)
    assert page.locator("#state").inner_text() == "refused: TypeError"
    for origin, allowed in ((server.refused.origin, False), (server.allowed.origin, True)):
        r = httpx.options(f"{server.url}/clients/{server.id(JO)}/progress/stream-tickets", timeout=10,
                          headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                   "Access-Control-Request-Headers": "authorization,content-type"})
        assert (r.headers.get("access-control-allow-origin") == origin) is allowed, (origin, r.status_code, r.headers)
