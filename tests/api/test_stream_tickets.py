"""Stream tickets: a page on another origin opens a stream with native EventSource, which cannot
send an Authorization header. The ticket opens that one stream, once, within 60 s, as its
issuer, until the issuing token's exp; it is never logged.

Streams need a real server (httpx's ASGI transport buffers a whole response): one uvicorn worker
of this module's own, with an allowed origin and uvicorn's access log on (``--log-level info``),
so the test can read what a deployment's logs would hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from alliance.api.auth import Principal, issue_token
from alliance.api.stream_guard import StreamGrant
from alliance.api.stream_tickets import (
    OPEN_WITHIN_SECONDS,
    SWEEP_BATCH,
    StreamTicketInvalid,
    issue_ticket,
    spend_ticket,
    ticket_hash,
)
from alliance.core.clock import SYSTEM_CLOCK, SettableClock
from alliance.core.identity import Role
from tests.api.conftest import JWT_SECRET, KEK, _stop, _tail, free_port
from tests.api.support import PROBLEM_JSON, assert_problem, phq9
from tests.api.test_sse import Sse, read_sse

TIMEOUT = httpx.Timeout(10.0, read=10.0)
ORIGIN = "https://app.clinic.example"
#: What a browser's EventSource sends: no Authorization, an Origin when the page is elsewhere.
EVENTSOURCE = {"Accept": "text/event-stream", "Cache-Control": "no-cache", "Origin": ORIGIN}


@dataclass
class Worker:
    url: str
    settings: Any
    log: Path

    def token(self, tenant: uuid.UUID, role: Role | str, sub: uuid.UUID, *, ttl: int = 3600) -> dict[str, str]:
        return {"Authorization": "Bearer " + issue_token(self.settings, tenant=tenant, role=Role(role), sub=sub,
                                                         ttl_seconds=ttl)}


def _spawn_logging(log: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """uvicorn as a deployment might run it, access log included (``--log-level info``)."""
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "alliance.api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "info"], env=env, stdout=out, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
async def worker(database, api, tmp_path_factory) -> AsyncIterator[Worker]:
    home = tmp_path_factory.mktemp("alliance-tickets")
    env = {**os.environ, "DATABASE_URL": database.owner_dsn, "ALLIANCE_KEK": KEK, "ALLIANCE_JWT_SECRET": JWT_SECRET,
           "ALLIANCE_HOME": str(home), "ALLIANCE_LOG_LEVEL": "info", "ALLIANCE_LOG_FORMAT": "json",
           "ALLIANCE_AUTH_FAILURES_PER_MINUTE": "1000000", "ALLIANCE_CORS_ORIGINS": ORIGIN}
    port = free_port()
    log = home / "worker.log"
    proc = _spawn_logging(log, port, env)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited: {_tail(log)}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url + "/health")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not become healthy: {_tail(log)}")
                await asyncio.sleep(0.1)
        yield Worker(url, api.settings, log)
    finally:
        _stop([proc])


#: Every ticket handed out in this module: none may show up in the worker's log.
ISSUED: list[str] = []


async def new_ticket(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> dict[str, Any]:
    r = await http.post(path, headers={**headers, "Origin": ORIGIN})
    assert r.status_code == 201, r.text
    body = r.json()
    ISSUED.append(body["ticket"])
    return body  # type: ignore[no-any-return]


def ready(sse: Sse) -> bool:
    return any(e.get("event") == "ready" for e in sse.events)


def measurement(total: int) -> tuple[str, dict[str, Any]]:
    mid = str(uuid.uuid4())
    return mid, {"instrument_id": "phq9", "answers": phq9(total), "measurement_id": mid,
                 "observed_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}


async def test_a_page_on_another_origin_subscribes_with_a_ticket(api, clinic, worker):
    """Reproduces the report: EventSource (no Authorization) got 401 and the preflight had no
    Access-Control-* headers; now the page gets a ticket and its stream, and an update within 2 s."""
    client_id = await api.enrolled_client(clinic)
    me = worker.token(clinic.tenant, "client", client_id)
    tickets = f"/clients/{client_id}/progress/stream-tickets"
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
        # the page's fetch of a ticket carries the bearer token, so the browser asks first
        r = await http.options(tickets, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                 "Access-Control-Request-Headers": "authorization"})
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == ORIGIN, r.headers
        # without a ticket, EventSource is refused as before
        assert_problem(await http.get(f"/clients/{client_id}/progress/stream", headers=EVENTSOURCE), 401)

        r = await http.post(tickets, headers={**me, "Origin": ORIGIN})
        assert r.status_code == 201, r.text
        assert r.headers["access-control-allow-origin"] == ORIGIN
        issued = r.json()
        ISSUED.append(issued["ticket"])
        assert set(issued) == {"ticket", "stream_url", "expires_at", "open_within_seconds"}
        assert issued["stream_url"] == f"/clients/{client_id}/progress/stream?ticket={issued['ticket']}"
        assert issued["open_within_seconds"] == OPEN_WITHIN_SECONDS
        expires = datetime.fromisoformat(issued["expires_at"])
        assert expires.tzinfo is not None
        assert timedelta(seconds=55) < expires - datetime.now(UTC) <= timedelta(seconds=61)
        assert len(issued["ticket"]) >= 43 and issued["ticket"] not in me["Authorization"]
        assert r.headers["cache-control"] == "no-store"
        # never kept as an Idempotency-Key answer (that would store the ticket): a retry gets a new one
        key = {"Idempotency-Key": str(uuid.uuid4())}
        again = [(await http.post(tickets, headers={**me, **key})) for _ in range(2)]
        assert all(a.status_code == 201 and "idempotent-replayed" not in a.headers for a in again)
        assert again[0].json()["ticket"] != again[1].json()["ticket"]
        ISSUED.extend(a.json()["ticket"] for a in again)

        sse = Sse()
        async with http.stream("GET", issued["stream_url"], headers=EVENTSOURCE) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["access-control-allow-origin"] == ORIGIN
            await read_sse(response, sse, ready)
            # the first change after a worker starts may wait for its feed and the projection
            # leader to settle (seconds on a loaded machine); the one after it is the measure
            for bound in (10.0, 2.0):
                mid, body = measurement(9)
                started = time.monotonic()
                r = await http.post(f"/clients/{client_id}/measurements", json=body, headers=me)
                assert r.status_code == 201, r.text
                await read_sse(response, sse, lambda s, mid=mid: any(
                    e.get("event") == "progress" and mid in e.get("data", "") for e in s.events), within=bound)
            assert time.monotonic() - started < 2.0  # measured: 0.1-0.2 s


async def test_a_ticket_opens_once_and_a_spent_one_is_a_stable_401(api, clinic, worker, database):
    client_id = await api.enrolled_client(clinic)
    me = worker.token(clinic.tenant, "client", client_id)
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
        issued = await new_ticket(http, f"/clients/{client_id}/progress/stream-tickets", me)
        sse = Sse()
        async with http.stream("GET", issued["stream_url"], headers=EVENTSOURCE) as response:
            assert response.status_code == 200
            await read_sse(response, sse, ready)
        # stored hashed: the row (now spent) never held the ticket itself
        conn = await asyncpg.connect(database.owner_dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM stream_tickets WHERE ticket_hash = $1",
                                       ticket_hash(issued["ticket"])) == 0
        finally:
            await conn.close()
        # EventSource reconnects to the same URL: a problem, not a stream, so it stops retrying
        for _ in range(2):
            r = await http.get(issued["stream_url"], headers=EVENTSOURCE)
            problem = assert_problem(r, 401, "stream_ticket_invalid")
            assert r.headers["content-type"].startswith(PROBLEM_JSON)
            assert r.headers["access-control-allow-origin"] == ORIGIN  # the page can read the code
            assert problem["field"] == "ticket" and issued["ticket"] not in r.text
        for bogus in ("", "x", "A" * 43, "A" * 500):
            assert_problem(await http.get(f"/clients/{client_id}/progress/stream", params={"ticket": bogus},
                                          headers=EVENTSOURCE), 401, "stream_ticket_invalid")


async def test_an_expired_ticket_is_refused(api, clinic, worker, database):
    client_id = await api.enrolled_client(clinic)
    me = worker.token(clinic.tenant, "client", client_id)
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
        issued = await new_ticket(http, f"/clients/{client_id}/progress/stream-tickets", me)
        conn = await asyncpg.connect(database.owner_dsn)
        try:  # its minute passed (the worker's clock is the wall clock: the row says when it ends)
            moved = await conn.execute("UPDATE stream_tickets SET open_by = now() - interval '1 second' "
                                       "WHERE ticket_hash = $1", ticket_hash(issued["ticket"]))
            assert moved == "UPDATE 1"
        finally:
            await conn.close()
        assert_problem(await http.get(issued["stream_url"], headers=EVENTSOURCE), 401, "stream_ticket_invalid")


async def test_tickets_expire_by_the_injected_clock_and_are_swept_on_issue(api, clinic, database):
    client_id = await api.enrolled_client(clinic)
    pool = api.services.pool
    grant = StreamGrant(principal=Principal(id=client_id, tenant_id=clinic.tenant, role=Role.CLIENT),
                        expires_at=time.time() + 3600)
    clock = SettableClock(datetime.now(UTC))
    kept = await issue_ticket(pool, grant, "progress", client_id, clock=clock)
    late = await issue_ticket(pool, grant, "progress", client_id, clock=clock)
    clock.advance(timedelta(seconds=OPEN_WITHIN_SECONDS - 1))
    opened = await spend_ticket(pool, kept.ticket, "progress", client_id, clock=clock)
    assert opened.principal == grant.principal and opened.expires_at == pytest.approx(grant.expires_at, abs=1e-3)
    clock.advance(timedelta(seconds=2))
    with pytest.raises(StreamTicketInvalid):
        await spend_ticket(pool, late.ticket, "progress", client_id, clock=clock)

    # the routes read the app's clock too
    fixed = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    api.services.clock = SettableClock(fixed)
    try:
        r = await api.http.post(f"/clients/{client_id}/progress/stream-tickets",
                                headers=api.token(clinic.tenant, "client", client_id))
        assert r.status_code == 201, r.text
        assert datetime.fromisoformat(r.json()["expires_at"]) == fixed + timedelta(seconds=OPEN_WITHIN_SECONDS)
    finally:
        api.services.clock = SYSTEM_CLOCK

    # expired rows go with a later issue, at most SWEEP_BATCH per issue, oldest first
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        old = [await issue_ticket(pool, grant, "progress", client_id, clock=clock) for _ in range(3)]
        hashes = [ticket_hash(t.ticket) for t in old]
        assert await conn.fetchval("SELECT count(*) FROM stream_tickets WHERE ticket_hash = ANY($1)", hashes) == 3
        clock.advance(timedelta(seconds=OPEN_WITHIN_SECONDS + 1))
        fresh = await issue_ticket(pool, grant, "progress", client_id, clock=clock)
        assert await conn.fetchval("SELECT count(*) FROM stream_tickets WHERE ticket_hash = ANY($1)", hashes) == 0
        assert await conn.fetchval("SELECT count(*) FROM stream_tickets WHERE ticket_hash = $1",
                                   ticket_hash(fresh.ticket)) == 1
        # a backlog (say, after a long quiet spell) is worked off a batch per issue, not all at once
        backlog = [os.urandom(32) for _ in range(SWEEP_BATCH + 5)]
        await conn.executemany(
            "INSERT INTO stream_tickets (ticket_hash, tenant_id, principal_id, role, purpose, client_id, issued_at, "
            "open_by, grant_ends_at) VALUES ($1, $2, $3, 'client', 'progress', $3, $4, $4, $4)",
            [(h, clinic.tenant, client_id, datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=i))
             for i, h in enumerate(backlog)])
        left = "SELECT count(*) FROM stream_tickets WHERE ticket_hash = ANY($1)"
        await issue_ticket(pool, grant, "progress", client_id, clock=clock)
        assert await conn.fetchval(left, backlog) == 5
        assert await conn.fetchval(left, backlog[-5:]) == 5  # the oldest went first
        await issue_ticket(pool, grant, "progress", client_id, clock=clock)
        assert await conn.fetchval(left, backlog) == 0
    finally:
        await conn.close()


async def test_a_ticket_from_one_worker_opens_on_another(api, clinic, servers):
    client_id = await api.enrolled_client(clinic)
    me = servers.token(clinic.tenant, "client", client_id)
    async with httpx.AsyncClient(base_url=servers.urls[0], timeout=TIMEOUT) as w0, \
            httpx.AsyncClient(base_url=servers.urls[1], timeout=TIMEOUT) as w1:
        issued = await new_ticket(w0, f"/clients/{client_id}/progress/stream-tickets", me)
        sse = Sse()
        async with w1.stream("GET", issued["stream_url"], headers=EVENTSOURCE) as response:
            assert response.status_code == 200
            await read_sse(response, sse, ready)
        # spent there, so refused here
        assert_problem(await w0.get(issued["stream_url"], headers=EVENTSOURCE), 401, "stream_ticket_invalid")


async def test_a_ticket_opens_only_its_own_stream(api, clinic, worker):
    mine = await api.enrolled_client(clinic)
    other = await api.enrolled_client(clinic)
    clin = worker.token(clinic.tenant, "clinician", clinic.clinician)  # primary clinician of both
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
        # another client's stream
        issued = await new_ticket(http, f"/clients/{mine}/progress/stream-tickets", clin)
        r = await http.get(f"/clients/{other}/progress/stream", params={"ticket": issued["ticket"]},
                           headers=EVENTSOURCE)
        assert_problem(r, 401, "stream_ticket_invalid")
        # ... which spent it: a ticket presented in the wrong place cannot be tried again
        assert_problem(await http.get(issued["stream_url"], headers=EVENTSOURCE), 401, "stream_ticket_invalid")
        # the caseload stream with a progress ticket, and the other way round
        issued = await new_ticket(http, f"/clients/{mine}/progress/stream-tickets", clin)
        assert_problem(await http.get("/caseload/stream", params={"ticket": issued["ticket"]}, headers=EVENTSOURCE),
                       401, "stream_ticket_invalid")
        caseload = await new_ticket(http, "/caseload/stream-tickets", clin)
        assert caseload["stream_url"] == f"/caseload/stream?ticket={caseload['ticket']}"
        assert_problem(await http.get(f"/clients/{mine}/progress/stream", params={"ticket": caseload["ticket"]},
                                      headers=EVENTSOURCE), 401, "stream_ticket_invalid")
        # and a caseload ticket of its own opens the caseload stream, as the clinician
        caseload = await new_ticket(http, "/caseload/stream-tickets", clin)
        sse = Sse()
        async with http.stream("GET", caseload["stream_url"], headers=EVENTSOURCE) as response:
            assert response.status_code == 200
            await read_sse(response, sse, ready)
        assert {str(mine), str(other)} <= set(json.loads(sse.events[0]["data"])["clients"])


async def test_a_ticket_authorizes_nothing_else(api, clinic, worker):
    client_id = await api.enrolled_client(clinic)
    me = worker.token(clinic.tenant, "client", client_id)
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
        issued = await new_ticket(http, f"/clients/{client_id}/progress/stream-tickets", me)
        ticket = issued["ticket"]
        for path in (f"/clients/{client_id}/plan", f"/clients/{client_id}/progress", "/clients"):
            assert_problem(await http.get(path, headers={"Authorization": f"Bearer {ticket}"}), 401,
                           "not_authenticated")
            assert_problem(await http.get(path, params={"ticket": ticket}), 401, "not_authenticated")
        r = await http.post(f"/clients/{client_id}/progress/stream-tickets",
                            headers={"Authorization": f"Bearer {ticket}"})
        assert_problem(r, 401, "not_authenticated")  # a ticket does not beget tickets
        r = await http.post(f"/clients/{client_id}/measurements", json=measurement(3)[1],
                            headers={"Authorization": f"Bearer {ticket}"})
        assert_problem(r, 401, "not_authenticated")
        # none of that spent it (nor was it accepted): it still opens its stream
        sse = Sse()
        async with http.stream("GET", issued["stream_url"], headers=EVENTSOURCE) as response:
            assert response.status_code == 200
            await read_sse(response, sse, ready)


async def test_who_may_have_a_ticket_is_who_may_open_the_stream(api, clinic, worker):
    client_id = await api.enrolled_client(clinic)
    other = await api.enrolled_client(clinic)
    path = f"/clients/{client_id}/progress/stream-tickets"
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
        assert_problem(await http.post(path), 401, "not_authenticated")
        for headers, status, code in (
                (worker.token(clinic.tenant, "client", other), 404, "client_not_found"),
                (worker.token(clinic.tenant, "clinician", clinic.outsider), 403, "not_on_care_team"),
                (worker.token(clinic.tenant, "auditor", clinic.auditor), 403, "auditor_history_only"),
                (worker.token(clinic.tenant, "admin", clinic.admin), 403, "admin_no_clinical_access")):
            assert_problem(await http.post(path, headers=headers), status, code)
        r = await http.post("/caseload/stream-tickets", headers=worker.token(clinic.tenant, "client", client_id))
        assert_problem(r, 403, "role_not_allowed")

        # a clinician deactivated after the ticket was issued cannot open with it
        issued = await new_ticket(http, path, worker.token(clinic.tenant, "clinician", clinic.clinician))
        r = await http.post(f"/staff/{clinic.clinician}/deactivation",
                            headers=worker.token(clinic.tenant, "admin", clinic.admin))
        assert r.status_code in (200, 201), r.text
        assert_problem(await http.get(issued["stream_url"], headers=EVENTSOURCE), 403, "staff_inactive")


async def test_a_ticket_stream_ends_at_the_issuing_tokens_exp(api, clinic, worker, database):
    client_id = await api.enrolled_client(clinic)
    clin = worker.token(clinic.tenant, "clinician", clinic.clinician, ttl=3)
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
        issued = await new_ticket(http, f"/clients/{client_id}/progress/stream-tickets", clin)
        assert issued["open_within_seconds"] <= 3  # it cannot outlive the token, even unopened
        sse = Sse()
        started = time.monotonic()
        async with http.stream("GET", issued["stream_url"], headers=EVENTSOURCE) as response:
            assert response.status_code == 200
            await read_sse(response, sse, lambda s: any(e.get("event") == "closed" for e in s.events), within=8)
        closed = next(e for e in sse.events if e.get("event") == "closed")
        assert json.loads(closed["data"])["reason"] == "token_expired", closed
        assert time.monotonic() - started < 5
    # the open was the clinician's read, access-logged like one made with the header
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        rows = await conn.fetch("SELECT route, status FROM access_log WHERE actor_id = $1 AND client_id = $2",
                                clinic.clinician, client_id)
    finally:
        await conn.close()
    assert ("/clients/{client_id}/progress/stream", 200) in [tuple(r) for r in rows], rows


async def test_reopening_after_the_ready_cursor_misses_nothing(api, clinic, worker):
    """The page's reconnect: a new ticket, and ``after`` = the last id it saw (here: ready's)."""
    client_id = await api.enrolled_client(clinic)
    me = worker.token(clinic.tenant, "client", client_id)
    tickets = f"/clients/{client_id}/progress/stream-tickets"
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
        first = Sse()
        issued = await new_ticket(http, tickets, me)
        async with http.stream("GET", issued["stream_url"], headers=EVENTSOURCE) as response:
            await read_sse(response, first, ready)
        cursor = first.events[0]["id"]
        assert cursor == json.loads(first.events[0]["data"])["cursor"]
        # the stream is gone (EventSource got a 401 on its retry); a change happens meanwhile
        mid, body = measurement(11)
        r = await http.post(f"/clients/{client_id}/measurements", json=body, headers=me)
        assert r.status_code == 201, r.text
        issued = await new_ticket(http, tickets, me)
        resumed = Sse()
        async with http.stream("GET", issued["stream_url"] + f"&after={cursor}", headers=EVENTSOURCE) as response:
            assert response.status_code == 200
            await read_sse(response, resumed, lambda s: any(
                e.get("event") == "progress" and mid in e.get("data", "") for e in s.events))
        assert resumed.events[0]["event"] == "ready" and resumed.events[0]["id"] == cursor


async def test_tickets_never_reach_the_logs(worker):
    """Runs after the others in this module: every ticket they used was logged about, none in clear."""
    assert len(ISSUED) >= 8, ISSUED
    await asyncio.sleep(0.3)  # the worker's last lines
    text = worker.log.read_text(errors="replace")
    # the log did capture those requests: uvicorn's access lines, with the ticket replaced ...
    assert "/progress/stream?ticket=REDACTED" in text, text[-3000:]
    assert "/caseload/stream?ticket=REDACTED" in text
    # ... and Alliance's own request lines (route templates, no query at all)
    assert '"route": "/clients/{client_id}/progress/stream"' in text or \
        '"route":"/clients/{client_id}/progress/stream"' in text, text[-3000:]
    leaked = [t for t in ISSUED if t in text]
    assert not leaked, f"{len(leaked)} tickets in the log"
