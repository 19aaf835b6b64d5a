"""Streams are re-authorised: an open stream ends, saying why, the moment its reader loses the
right to read; it never outlives its token; a reader that stops reading is cut off; a principal
opens only so many at once.

These talk to a real uvicorn worker of their own (httpx's ASGI transport buffers a whole
response), started with lowered limits so the bounds show within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from alliance.api.auth import issue_token
from alliance.core.identity import Role
from tests.api.conftest import JWT_SECRET, KEK, _spawn, _stop, _tail, free_port
from tests.api.support import assert_problem, phq9
from tests.api.test_sse import Sse, read_sse

TIMEOUT = httpx.Timeout(10.0, read=10.0)
#: The worker's lowered bounds (the defaults are 30 s, 30 s, 5 and 10).
STALL_SECONDS = 2.0
RECHECK_SECONDS = 30.0  # high on purpose: the closes below must come from notifications, not the backstop
PER_CLIENT = 2
PER_STAFF = 3


@dataclass
class Worker:
    url: str
    settings: Any

    def token(self, tenant: uuid.UUID, role: Role | str, sub: uuid.UUID, *, ttl: int = 3600) -> dict[str, str]:
        return {"Authorization": "Bearer " + issue_token(self.settings, tenant=tenant, role=Role(role), sub=sub,
                                                         ttl_seconds=ttl)}


@pytest.fixture(scope="module")
async def worker(database, api, tmp_path_factory) -> AsyncIterator[Worker]:
    home = tmp_path_factory.mktemp("alliance-guarded")
    env = {**os.environ, "DATABASE_URL": database.owner_dsn, "ALLIANCE_KEK": KEK, "ALLIANCE_JWT_SECRET": JWT_SECRET,
           "ALLIANCE_HOME": str(home), "ALLIANCE_LOG_LEVEL": "warning",
           "ALLIANCE_STREAM_STALL_SECONDS": str(STALL_SECONDS),
           "ALLIANCE_STREAM_RECHECK_SECONDS": str(RECHECK_SECONDS),
           "ALLIANCE_STREAMS_PER_CLIENT": str(PER_CLIENT), "ALLIANCE_STREAMS_PER_STAFF": str(PER_STAFF)}
    port = free_port()
    proc = _spawn(home, port, env, 0)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited: {_tail(home / 'worker-0.log')}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(url + "/health")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not become healthy: {_tail(home / 'worker-0.log')}")
                await asyncio.sleep(0.1)
        yield Worker(url, api.settings)
    finally:
        _stop([proc])


def ready(sse: Sse) -> bool:
    return any(e.get("event") == "ready" for e in sse.events)


def closed(sse: Sse) -> bool:
    return any(e.get("event") == "closed" for e in sse.events)


async def until_closed(response: httpx.Response, sse: Sse, *, within: float) -> dict[str, Any]:
    """Read until the server's ``closed`` event and the end of the stream; its data."""
    started = time.monotonic()
    await read_sse(response, sse, closed, within=within)
    event = next(e for e in sse.events if e.get("event") == "closed")
    # and then the server really ends the response (no more events, no heartbeats)
    async with asyncio.timeout(within):
        async for _ in sse.lines:
            pass
    assert time.monotonic() - started < within
    return dict(json.loads(event["data"]))


async def on_care_team(api: Any, clinic: Any, client_id: uuid.UUID) -> None:
    r = await api.http.post(f"/clients/{client_id}/care-team", json={"member_id": str(clinic.clinician_2)},
                            headers=api.token(clinic.tenant, "clinician", clinic.clinician))
    assert r.status_code == 201, r.text


async def stream_then(worker: Worker, headers: dict[str, str], client_id: uuid.UUID, action: Any, *,
                      within: float = 5.0) -> tuple[dict[str, Any], Sse]:
    """Open the client's stream with ``headers``, wait for ``ready``, run ``action()``, and return the
    data of the ``closed`` event the server must then send."""
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
        sse = Sse()
        async with http.stream("GET", f"/clients/{client_id}/progress/stream", headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            await read_sse(response, sse, ready)
            await action()
            return await until_closed(response, sse, within=within), sse


async def test_a_deactivated_clinician_s_stream_ends(api, clinic, worker):
    client_id = await api.enrolled_client(clinic)
    clin = worker.token(clinic.tenant, "clinician", clinic.clinician)

    async def deactivate() -> None:
        r = await api.http.post(f"/staff/{clinic.clinician}/deactivation",
                                headers=api.token(clinic.tenant, "admin", clinic.admin))
        assert r.status_code == 201, r.text

    reason, _ = await stream_then(worker, clin, client_id, deactivate)
    assert reason["reason"] == "access_revoked" and reason["code"] == "staff_inactive", reason
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:  # and the GET agrees
        assert_problem(await http.get(f"/clients/{client_id}/progress/stream", headers=clin), 403, "staff_inactive")


async def test_a_clinician_removed_from_the_care_team_loses_the_stream(api, clinic, worker):
    client_id = await api.enrolled_client(clinic)
    await on_care_team(api, clinic, client_id)

    async def remove() -> None:
        r = await api.http.post(f"/clients/{client_id}/care-team/{clinic.clinician_2}/removal",
                                json={"reason": "moved team"},
                                headers=api.token(clinic.tenant, "clinician", clinic.clinician))
        assert r.status_code == 201, r.text

    reason, _ = await stream_then(worker, worker.token(clinic.tenant, "clinician", clinic.clinician_2),
                                  client_id, remove)
    assert reason == {**reason, "reason": "access_revoked", "code": "not_on_care_team"}, reason


async def test_withdrawn_sharing_consent_ends_a_team_member_s_stream(api, clinic, worker):
    client_id = await api.enrolled_client(clinic)
    await on_care_team(api, clinic, client_id)

    async def withdraw() -> None:
        r = await api.http.post(f"/clients/{client_id}/consents/care_team_sharing/withdrawal", json={"mode": "self"},
                                headers=api.token(clinic.tenant, "client", client_id))
        assert r.status_code == 201, r.text

    reason, _ = await stream_then(worker, worker.token(clinic.tenant, "clinician", clinic.clinician_2),
                                  client_id, withdraw)
    assert reason["reason"] == "access_revoked" and reason["code"] == "care_team_sharing_not_consented", reason


async def test_an_erased_client_s_stream_ends(api, clinic, worker):
    client_id = await api.enrolled_client(clinic)

    async def erase() -> None:
        r = await api.http.post(f"/clients/{client_id}/erasure", json={"reason": "asked to be forgotten"},
                                headers=api.token(clinic.tenant, "admin", clinic.admin))
        assert r.status_code == 201, r.text

    reason, _ = await stream_then(worker, worker.token(clinic.tenant, "client", client_id), client_id, erase)
    assert reason["reason"] == "client_erased", reason


async def test_no_stream_outlives_its_token(api, clinic, worker):
    client_id = await api.enrolled_client(clinic)
    short = worker.token(clinic.tenant, "client", client_id, ttl=2)
    started = time.monotonic()
    reason, _ = await stream_then(worker, short, client_id, lambda: asyncio.sleep(0), within=6.0)
    assert reason["reason"] == "token_expired", reason
    assert time.monotonic() - started < 4.5, "the stream should end at the token's exp"
    # the final event carries the cursor to resume from with a fresh token
    assert reason["resume_from"].startswith("c1-"), reason


async def test_streams_per_principal_are_capped(api, clinic, worker):
    client_id = await api.enrolled_client(clinic)
    me = worker.token(clinic.tenant, "client", client_id)
    stream = f"/clients/{client_id}/progress/stream"
    held: list[Sse] = []  # each reader kept: a dropped line iterator closes its connection
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http, contextlib.AsyncExitStack() as open_:
        for _ in range(PER_CLIENT):
            response = await open_.enter_async_context(http.stream("GET", stream, headers=me))
            assert response.status_code == 200
            held.append(Sse())
            await read_sse(response, held[-1], ready)
        r = await http.get(stream, headers=me)
        assert_problem(r, 429, "too_many_streams")
        assert int(r.headers["retry-after"]) >= 1
        # another principal is not affected
        clin = worker.token(clinic.tenant, "clinician", clinic.clinician)
        async with http.stream("GET", stream, headers=clin) as response:
            assert response.status_code == 200
            await read_sse(response, Sse(), ready)
        assert all(not closed(sse) for sse in held)
    # the streams above are closed: their places are free again
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
        async with asyncio.timeout(5):
            while True:
                async with http.stream("GET", stream, headers=me) as response:
                    if response.status_code == 200:
                        break
                await asyncio.sleep(0.1)


async def test_a_staff_member_opening_a_stream_is_access_logged(api, clinic, worker, database):
    client_id = await api.enrolled_client(clinic)
    start = datetime.now(UTC) - timedelta(seconds=1)
    clin = worker.token(clinic.tenant, "clinician", clinic.clinician)
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http, \
            http.stream("GET", f"/clients/{client_id}/progress/stream", headers=clin) as response:
        assert response.status_code == 200
        await read_sse(response, Sse(), ready)
    r = await api.http.get("/audit/access", params={"client": str(client_id), "from": start.isoformat()},
                           headers=api.token(clinic.tenant, "auditor", clinic.auditor))
    assert r.status_code == 200, r.text
    entries = [(e["actor_id"], e["route"], e["status"]) for e in r.json()["entries"]]
    assert (str(clinic.clinician), "/clients/{client_id}/progress/stream", 200) in entries, entries


async def test_a_reader_that_stops_reading_is_disconnected(api, clinic, worker, database):
    client_id = await api.enrolled_client(clinic)
    me = worker.token(clinic.tenant, "client", client_id)
    host, port = worker.url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(10)
    sock.connect((host, int(port)))
    try:
        sock.sendall(f"GET /clients/{client_id}/progress/stream HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: {me['Authorization']}\r\n\r\n".encode())
        # never read: push updates until the server's writes have nowhere to go
        observed = datetime.now(UTC) - timedelta(days=30)
        async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
            pushed = 0
            started = time.monotonic()
            # 120 measurements make a progress view of ~30 KB and ~2 MB of events in all:
            # far more than the 4 KiB window plus the server's bounded send buffer
            while pushed < 120 and time.monotonic() - started < 60:
                body = {"instrument_id": "phq9", "answers": phq9(pushed % 20),
                        "observed_at": (observed + timedelta(minutes=pushed)).isoformat(),
                        "measurement_id": str(uuid.uuid4())}
                r = await http.post(f"/clients/{client_id}/measurements", json=body, headers=me)
                assert r.status_code == 201, r.text
                pushed += 1
        # the server gives up on the connection within the stall bound (plus the time the
        # last updates take to reach the stream): reading now finds its end, not more data
        await asyncio.sleep(STALL_SECONDS + 3)
        sock.settimeout(0.5)
        ended = False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                ended = True
                break
            except TimeoutError:
                break  # open and idle: not ended
            if not chunk:
                ended = True
                break
        assert ended, "the server kept a connection that stopped reading"
    finally:
        sock.close()


async def test_audit_verify_reports_only_the_auditor_s_clinic(api, clinic, database):
    from alliance.core.compliance.anchors import write_anchor

    other = await api.clinic()
    for _ in range(3):
        await api.enrolled_client(other)
    await api.enrolled_client(clinic)
    await write_anchor(api.services.pool, api.services.signer, api.settings.anchor_path, verify_first=True)
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        mine = await conn.fetchrow("SELECT count(*) AS streams, coalesce(sum(version), 0) AS events FROM streams "
                                   "WHERE tenant_id = $1 AND version > 0", clinic.tenant)
        everyone = await conn.fetchval("SELECT count(*) FROM streams WHERE version > 0")
    finally:
        await conn.close()
    assert everyone > mine["streams"]
    r = await api.http.get("/audit/verify", headers=api.token(clinic.tenant, "auditor", clinic.auditor))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["streams"] == mine["streams"] and report["events"] == mine["events"], (report, dict(mine))
    assert report["store_check"]["ok"] is True, report
    assert "events_checked" not in report["store_check"] and "streams_checked" not in report["store_check"]
    assert report["heads_digest"] and report["signature"], report
    theirs = (await api.http.get("/audit/verify", headers=api.token(other.tenant, "auditor", other.auditor))).json()
    assert theirs["streams"] != report["streams"] and theirs["heads_digest"] != report["heads_digest"]


async def test_one_caseload_stream_follows_a_clinician_s_clients(api, clinic, worker):
    mine = await api.enrolled_client(clinic)
    shared = await api.enrolled_client(clinic)
    await on_care_team(api, clinic, shared)  # clinician_2 follows ``shared`` only
    stream = "/caseload/stream?heartbeat=0.5"
    async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
        assert_problem(await http.get(stream, headers=worker.token(clinic.tenant, "client", mine)), 403,
                       "role_not_allowed")
        sse = Sse()
        async with http.stream("GET", stream, headers=worker.token(clinic.tenant, "clinician",
                                                                    clinic.clinician_2)) as response:
            assert response.status_code == 200
            await read_sse(response, sse, ready)
            assert json.loads(sse.events[0]["data"]) == {"clients": [str(shared)]}
            # a change of one of them names the client, and nothing else
            me = api.token(clinic.tenant, "client", shared)
            r = await api.http.post(f"/clients/{shared}/measurements", headers=me, json={
                "instrument_id": "phq9", "answers": phq9(9), "observed_at": datetime.now(UTC).isoformat()})
            assert r.status_code == 201, r.text
            await read_sse(response, sse, lambda s: any(e.get("event") == "changed" for e in s.events))
            changed = [json.loads(e["data"]) for e in sse.events if e.get("event") == "changed"]
            assert changed[0] == {"client_id": str(shared)}, changed
            # a change of a client who is not theirs is not announced; losing one is
            r = await api.http.post(f"/clients/{mine}/measurements", headers=api.token(clinic.tenant, "client", mine),
                                    json={"instrument_id": "phq9", "answers": phq9(3),
                                          "observed_at": datetime.now(UTC).isoformat()})
            assert r.status_code == 201, r.text
            r = await api.http.post(f"/clients/{shared}/consents/care_team_sharing/withdrawal",
                                    json={"mode": "self"}, headers=me)
            assert r.status_code == 201, r.text
            await read_sse(response, sse, lambda s: any(e.get("event") == "removed" for e in s.events))
            removed = [json.loads(e["data"]) for e in sse.events if e.get("event") == "removed"]
            assert removed[0]["client_id"] == str(shared) and removed[0]["code"] == "care_team_sharing_not_consented"
            assert all(str(mine) not in e.get("data", "") for e in sse.events)
            # and the clinician's deactivation ends it
            r = await api.http.post(f"/staff/{clinic.clinician_2}/deactivation",
                                    headers=api.token(clinic.tenant, "admin", clinic.admin))
            assert r.status_code == 201, r.text
            reason = await until_closed(response, sse, within=5)
            assert reason == {"reason": "access_revoked", "code": "staff_inactive"}, reason


async def test_the_cap_holds_across_workers(api, clinic, servers, database):
    from alliance.api.stream_guard import StreamLimits

    cap = StreamLimits().per_client  # the two shared workers run with the defaults
    client_id = await api.enrolled_client(clinic)
    me = servers.token(clinic.tenant, "client", client_id)
    stream = f"/clients/{client_id}/progress/stream"
    held: list[Sse] = []
    async with contextlib.AsyncExitStack() as open_:
        https = [await open_.enter_async_context(httpx.AsyncClient(base_url=url, timeout=TIMEOUT))
                 for url in servers.urls]
        for i in range(cap):  # spread over both workers
            response = await open_.enter_async_context(https[i % 2].stream("GET", stream, headers=me))
            assert response.status_code == 200
            held.append(Sse())
            await read_sse(response, held[-1], ready)
        for http in https:
            assert_problem(await http.get(stream, headers=me), 429, "too_many_streams")
    # all closed: the places are free again, on either worker
    async with httpx.AsyncClient(base_url=servers.urls[1], timeout=TIMEOUT) as http:
        async with asyncio.timeout(5):
            while True:
                async with http.stream("GET", stream, headers=me) as response:
                    if response.status_code == 200:
                        break
                await asyncio.sleep(0.1)
    conn = await asyncpg.connect(database.owner_dsn)
    try:  # the table holds ids and roles only
        columns = {r[0] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'stream_leases'")}
    finally:
        await conn.close()
    assert columns == {"id", "tenant_id", "principal_id", "role", "owner", "opened_at"}


async def test_a_gone_worker_s_streams_stop_counting(api, clinic, worker, database):
    client_id = await api.enrolled_client(clinic)
    me = worker.token(clinic.tenant, "client", client_id)
    stream = f"/clients/{client_id}/progress/stream"
    alive, dead = 0x5EED_0001_0000_0001, 0x5EED_0001_0000_0002
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", alive)  # a "worker" that is still there
        for _ in range(PER_CLIENT):
            await conn.execute("INSERT INTO stream_leases (id, tenant_id, principal_id, role, owner) "
                               "VALUES ($1, $2, $3, 'client', $4)", uuid.uuid4(), clinic.tenant, client_id, alive)
        async with httpx.AsyncClient(base_url=worker.url, timeout=TIMEOUT) as http:
            assert_problem(await http.get(stream, headers=me), 429, "too_many_streams")
            # that worker dies (its lock goes with its session): its streams no longer count
            await conn.execute("UPDATE stream_leases SET owner = $1 WHERE principal_id = $2", dead, client_id)
            async with http.stream("GET", stream, headers=me) as response:
                assert response.status_code == 200
                await read_sse(response, Sse(), ready)
        left = await conn.fetchval("SELECT count(*) FROM stream_leases WHERE principal_id = $1 AND owner = $2",
                                   client_id, dead)
        assert left == 0, "the dead worker's rows are swept by the next open"
    finally:
        await conn.close()
