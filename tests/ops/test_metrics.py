"""``GET /metrics`` of ``alliance serve --workers 2``: refused without the scraper's token, and with
it every worker's counts summed (prometheus-client multiprocess mode), route templates as labels
(never an id), and the database's figures (projection lag, open risk flags)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import httpx

from tests.database import create_test_database, drop_test_database
from tests.faults.service import Service
from tests.faults.world import bootstrap_clinic, enrol_client, eventually

TOKEN = "metrics-scraper-token-0123456789abcdef"
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the exposition text (labels matched exactly, in any order)."""
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        metric, brace, rest = head.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest[:rest.rindex("}")])) if brace else {}
        if found == labels:
            return float(value)
    return None


async def test_metrics_sum_every_worker_and_carry_no_ids(tmp_path):
    admin, owner, _app = await create_test_database("alliance_metrics")
    service = Service(owner, tmp_path / "home", workers=2, extra_env={"ALLIANCE_METRICS_TOKEN": TOKEN})
    try:
        await asyncio.to_thread(service.start)
        async with httpx.AsyncClient(timeout=20) as http:
            url = service.url + "/metrics"
            assert (await http.get(url)).status_code == 401
            assert (await http.get(url, headers={"Authorization": "Bearer " + "x" * 40})).status_code == 401
            clinic = await bootstrap_clinic(service, http)
            clients = [await enrol_client(clinic, http) for _ in range(3)]
            # Each on a new connection, so both workers answer some of them.
            for client_id in clients:
                async with httpx.AsyncClient(timeout=20) as one:
                    answers = {f"item{i}": 1 for i in range(1, 10)}  # item 9 > 0: a risk flag
                    r = await one.post(f"{service.url}/clients/{client_id}/measurements",
                                       json={"instrument_id": "phq9", "answers": answers,
                                             "observed_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
                                       headers=clinic.client_headers(client_id))
                    assert r.status_code == 201, r.text

            async def scraped() -> str | None:
                r = await http.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
                assert r.status_code == 200, r.text
                assert r.headers["content-type"].startswith("text/plain")
                text = r.text
                flags = sample(text, "alliance_risk_flags_unacknowledged")
                return text if flags == 3 else None

            text = await eventually(scraped, within=30)
            assert text, "the three risk flags were not counted as unacknowledged"
            route = "/clients/{client_id}/measurements"
            posted = sample(text, "alliance_http_request_duration_seconds_count", method="POST", route=route,
                            status="201")
            assert posted == 3, [line for line in text.splitlines() if "measurements" in line]
            enrolled = sample(text, "alliance_http_request_duration_seconds_count", method="POST", route="/clients",
                              status="201")
            assert enrolled == 3
            assert (sample(text, "alliance_append_duration_seconds_count", outcome="ok") or 0) >= 3 + 3 * 4
            assert (sample(text, "alliance_events_appended_total") or 0) >= 3 + 3 * 4
            assert (sample(text, "alliance_leader_changes_total", leader="projections") or 0) >= 1
            assert sample(text, "alliance_projection_lag_events", projection="plan") is not None
            assert sample(text, "alliance_dispatcher_lag_events", dispatcher="notifications") is not None
            assert sample(text, "alliance_notifications_given_up") is not None
            # No id, no tenant, no text in any label: route templates and fixed words only.
            assert not UUID_TEXT.search(text)
            assert "tenant" not in text and str(clinic.tenant) not in text
            assert all(str(c) not in text for c in clients)
    finally:
        await asyncio.to_thread(service.stop)
        await drop_test_database(admin, owner)


async def test_metrics_answer_404_when_not_enabled(tmp_path):
    admin, owner, _app = await create_test_database("alliance_metrics")
    service = Service(owner, tmp_path / "home", workers=2)
    try:
        await asyncio.to_thread(service.start)
        async with httpx.AsyncClient(timeout=20) as http:
            r = await http.get(service.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 404
            assert r.headers["content-type"].startswith("application/problem+json")
    finally:
        await asyncio.to_thread(service.stop)
        await drop_test_database(admin, owner)



