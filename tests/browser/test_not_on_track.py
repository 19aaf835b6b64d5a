"""A not-on-track alert (a reliable deterioration on the PHQ-9) reaches the clinician's caseload
and client page, shown with its data and criterion, and is acknowledged with the action taken."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx

from tests.browser.conftest import Server, sign_in

SAM = "Sam (client)"


def test_an_alert_reaches_the_clinician_who_acknowledges_it(server: Server, open_page):
    sam = server.id(SAM)
    answers = {f"item{i}": 3 for i in range(1, 7)} | {"item7": 1, "item8": 0, "item9": 0}  # 19, from 12: +7
    r = httpx.post(f"{server.url}/clients/{sam}/measurements", headers=server.headers(SAM), timeout=10,
                   json={"instrument_id": "phq9", "answers": answers, "observed_at": datetime.now(UTC).isoformat()})
    assert r.status_code == 201, r.text
    clinician = server.headers("Clinician A")
    deadline = time.monotonic() + 20
    alerts: list[dict[str, object]] = []
    while not alerts and time.monotonic() < deadline:  # the alert follower reads the store after the append
        alerts = httpx.get(f"{server.url}/clients/{sam}/plan", headers=clinician, timeout=10).json()["open_alerts"]
        time.sleep(0.25)
    assert [a["rule"] for a in alerts] == ["reliable_deterioration"], alerts

    staff = open_page()
    desk = sign_in(staff, server, "Clinician A")
    row = desk.locator(f"tr[data-client='{sam}']")
    row.wait_for(timeout=10_000)
    assert "not on track (phq9)" in row.inner_text()
    row.get_by_role("link").click()
    alert = desk.locator(f"form.alert[data-alert='{alerts[0]['alert_id']}']")
    assert "12 → 19" in alert.inner_text() and "reliable deterioration" in alert.inner_text()
    alert.get_by_label("Action taken").fill("Brought the review forward to this week")
    alert.get_by_role("button", name="Acknowledge").click()
    alert.wait_for(state="detached", timeout=10_000)
    plan = httpx.get(f"{server.url}/clients/{sam}/plan", headers=clinician, timeout=10).json()
    assert plan["open_alerts"] == []
    assert not staff.errors, staff.errors
