"""Live progress over Server-Sent Events, through two real uvicorn workers.

httpx's ASGI transport buffers a whole response, so these tests talk to real processes:
receive, disconnect, resume on the other worker with ``Last-Event-ID``, nothing missed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.api.support import assert_problem, phq9

TIMEOUT = httpx.Timeout(10.0, read=10.0)


@dataclass
class Sse:
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    lines: Any = None


async def read_sse(response: httpx.Response, sse: Sse, until: Any, *, within: float = 10.0) -> None:
    """Parse the stream into ``sse`` until ``until(sse)`` holds (or fail after ``within`` seconds)."""
    if sse.lines is None:
        sse.lines = response.aiter_lines()
    current: dict[str, Any] = {}
    async with asyncio.timeout(within):
        async for line in sse.lines:
            if line == "":
                if current:
                    sse.events.append(current)
                    current = {}
                if until(sse):
                    return
                continue
            if line.startswith(":"):
                sse.comments.append(line[1:].strip())
                if until(sse):
                    return
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            current[name] = current[name] + "\n" + value if name == "data" and name in current else value
    raise AssertionError(f"the stream ended early: {sse}")


def measurement(observed: datetime, total: int) -> tuple[str, dict[str, Any]]:
    mid = str(uuid.uuid4())
    return mid, {"instrument_id": "phq9", "answers": phq9(total), "observed_at": observed.isoformat(),
                 "measurement_id": mid}


def progress_with(ids: set[str]) -> Any:
    def check(sse: Sse) -> bool:
        return any(e.get("event") == "progress" and all(i in e.get("data", "") for i in ids) for e in sse.events)
    return check


async def test_receive_disconnect_resume_on_the_other_worker(api, clinic, servers, database):
    client_id = await api.enrolled_client(clinic)
    me = servers.token(clinic.tenant, "client", client_id)
    stream = f"/clients/{client_id}/progress/stream"
    observed = datetime.now(UTC) - timedelta(days=3)

    async with httpx.AsyncClient(base_url=servers.urls[0], timeout=TIMEOUT) as w0:
        first_id, first = measurement(observed, 12)
        sse = Sse()
        async with w0.stream("GET", stream, headers=me) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            await read_sse(response, sse, lambda s: any(e.get("event") == "ready" for e in s.events))
            r = await w0.post(f"/clients/{client_id}/measurements", json=first, headers=me)
            assert r.status_code == 201, r.text
            await read_sse(response, sse, progress_with({first_id}))
        delivered = [e for e in sse.events if "id" in e]
        assert delivered, sse
        cursor = delivered[-1]["id"]

    # opaque: not a global position (nor anything that looks like one)
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        positions = {str(p) for p in await conn.fetchval("SELECT array_agg(position) FROM events")}
    finally:
        await conn.close()
    for event in delivered:
        assert event["id"] not in positions
        assert not event["id"].isdigit()

    # while nobody listens, two more measurements
    later = [measurement(observed + timedelta(hours=h), t) for h, t in ((6, 9), (12, 4))]
    async with httpx.AsyncClient(base_url=servers.urls[1], timeout=TIMEOUT) as w1:
        for _, body in later:
            r = await w1.post(f"/clients/{client_id}/measurements", json=body, headers=me)
            assert r.status_code == 201, r.text
        # Once both are projected, the feed's head is the last change the resumed stream owes us.
        # (A change is delivered with the view as it is when delivered, which may already hold
        # later measurements: so we read up to the head's cursor, not up to the first full view.)
        async with asyncio.timeout(10):
            while True:
                view = json.dumps(await api.services.feed.view(client_id, "progress") or {})
                if all(mid in view for mid, _ in later):
                    break
                await asyncio.sleep(0.02)
        head = await api.services.feed.head(client_id)
        resumed = Sse()
        async with w1.stream("GET", stream, headers={**me, "Last-Event-ID": cursor}) as response:
            assert response.status_code == 200
            await read_sse(response, resumed, lambda s: any(e.get("id") == head for e in s.events))
    new_cursors = [e["id"] for e in resumed.events if "id" in e and e.get("event") != "ready"]
    assert new_cursors and cursor not in new_cursors
    assert progress_with({first_id, *(mid for mid, _ in later)})(resumed)
    # the feed's order: every cursor after the one we resumed from, up to the head, was covered
    missed = await api.services.feed.changes_after(client_id, new_cursors[-1])
    assert not [c for c, kind in missed if kind == "progress"], (missed, head)


async def test_heartbeats_and_bad_cursors(api, clinic, servers):
    client_id = await api.enrolled_client(clinic)
    me = servers.token(clinic.tenant, "client", client_id)
    stream = f"/clients/{client_id}/progress/stream"
    async with httpx.AsyncClient(base_url=servers.urls[1], timeout=TIMEOUT) as http:
        sse = Sse()
        async with http.stream("GET", stream + "?heartbeat=0.3", headers=me) as response:
            assert response.status_code == 200
            await read_sse(response, sse, lambda s: s.comments.count("heartbeat") >= 2, within=5)
        for bad in ("12345", "c1-zz", "not a cursor"):
            r = await http.get(stream, headers={**me, "Last-Event-ID": bad})
            assert_problem(r, 422, "invalid_cursor")
        # a heartbeat that is not a number is a 422, NaN is no reason to spin
        r = await http.get(stream + "?heartbeat=soon", headers=me)
        assert_problem(r, 422)
        sse = Sse()
        async with http.stream("GET", stream + "?heartbeat=nan", headers=me) as response:
            assert response.status_code == 200
            await read_sse(response, sse, lambda s: any(e.get("event") == "ready" for e in s.events), within=5)


async def test_stream_refuses_like_every_read(api, clinic, servers):
    client_id = await api.enrolled_client(clinic)
    other = await api.enrolled_client(clinic)
    stream = f"/clients/{client_id}/progress/stream"
    foreign = await api.clinic()
    async with httpx.AsyncClient(base_url=servers.urls[0], timeout=TIMEOUT) as http:
        for headers, status in (
                ({}, 401),
                (servers.token(clinic.tenant, "client", other), 404),
                (servers.token(foreign.tenant, "clinician", foreign.clinician), 404),
                (servers.token(clinic.tenant, "clinician", clinic.outsider), 403),
                (servers.token(clinic.tenant, "auditor", clinic.auditor), 403),
                (servers.token(clinic.tenant, "admin", clinic.admin), 403)):
            r = await http.get(stream, headers=headers)
            assert_problem(r, status)
        sse = Sse()
        clin = servers.token(clinic.tenant, "clinician", clinic.clinician)
        async with http.stream("GET", stream, headers=clin) as response:
            assert response.status_code == 200
            await read_sse(response, sse, lambda s: bool(s.events))
        assert json.loads(sse.events[0]["data"])["cursor"].startswith("c")


async def test_ready_carries_the_cursor_so_an_early_reconnect_misses_nothing(api, clinic, servers):
    client_id = await api.enrolled_client(clinic)
    me = servers.token(clinic.tenant, "client", client_id)
    stream = f"/clients/{client_id}/progress/stream"
    async with httpx.AsyncClient(base_url=servers.urls[0], timeout=TIMEOUT) as http:
        sse = Sse()
        async with http.stream("GET", stream, headers=me) as response:
            await read_sse(response, sse, lambda s: bool(s.events))
        first = sse.events[0]
        assert first["event"] == "ready" and first.get("id") == json.loads(first["data"])["cursor"], first
        assert first["id"].startswith("c1-"), first
        # the connection drops before any change; a change happens meanwhile; the reconnect
        # (EventSource sends the ready event's id as Last-Event-ID) gets it
        mid, body = measurement(datetime.now(UTC) - timedelta(hours=1), 7)
        r = await http.post(f"/clients/{client_id}/measurements", json=body, headers=me)
        assert r.status_code == 201, r.text
        resumed = Sse()
        async with http.stream("GET", stream, headers={**me, "Last-Event-ID": first["id"]}) as response:
            await read_sse(response, resumed, progress_with({mid}))
        assert resumed.events[0]["event"] == "ready" and resumed.events[0]["id"] == first["id"]
