"""Trial: ``kill -9`` of the one worker that leads the projections (it holds their advisory
locks), while measurements are written and two clients follow the progress stream.

Promise: another worker takes the leadership over within 15 s and the projections catch
up; a stream that was on the dead worker resumes by ``Last-Event-ID`` on whichever worker
the reconnect lands, and neither stream shows a gap (every change delivered, or coalesced
into a later delivery of the same kind) or a duplicate (cursors strictly increase).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

import asyncpg

from tests.faults.db import lock_holders
from tests.faults.service import leadership_lock_keys, socket_owner
from tests.faults.sse import Follower
from tests.faults.world import connections_on_workers, enrol_client, eventually, measurement, send, status_counts

MEASUREMENTS = 30
KILL_AFTER = 10
PAUSE = 0.1
TAKEOVER_SECONDS = 15.0


async def test_projection_leader_killed_streams_resume_without_gap_or_duplicate(service, clinic, http,
                                                                                cluster) -> None:
    dsn = cluster.dsn("alliance")
    client_id = await enrol_client(clinic, http)
    keys = await asyncio.to_thread(leadership_lock_keys, service)

    async def leader() -> int | None:
        holders = await lock_holders(dsn, keys)
        if len(holders) != 1:
            return None
        return socket_owner(service.worker_pids(), holders[0][1], cluster.port)

    leader_pid = await eventually(leader, within=TAKEOVER_SECONDS)
    assert leader_pid, "no single worker holds the projection leadership"
    workers = await connections_on_workers(service, 2)  # the survivor's: one writes, one streams
    assert leader_pid in workers and len(workers) == 2 and all(len(c) == 2 for c in workers.values()), \
        (leader_pid, {pid: len(c) for pid, c in workers.items()})
    survivor_pid = next(pid for pid in workers if pid != leader_pid)
    writer = workers[survivor_pid][0]
    url = f"{service.url}/clients/{client_id}/progress/stream?heartbeat=1"
    on_leader = Follower(url, clinic.client_headers(client_id), first=workers[leader_pid][0])
    on_survivor = Follower(url, clinic.client_headers(client_id), first=workers[survivor_pid][1])
    written: list[str] = []
    finished = asyncio.Event()

    def all_seen(follower: Follower) -> bool:
        return finished.is_set() and bool(written) and all(
            any(m in e.data for e in follower.events if e.kind == "progress") for m in written[-1:])

    deadline = time.monotonic() + 60
    followers = [asyncio.create_task(f.run(lambda f=f: all_seen(f), deadline=deadline))
                 for f in (on_leader, on_survivor)]
    await eventually(lambda: _started(on_leader, on_survivor), within=10)
    statuses = []
    kill_at = None
    for n in range(MEASUREMENTS):
        item = measurement(client_id, f"leader-{uuid.uuid4()}", n)
        statuses.append(await send(clinic, writer, item))
        if item.measurement_id:
            written.append(item.measurement_id)
        if n + 1 == KILL_AFTER:
            service.kill_worker(leader_pid)
            kill_at = time.monotonic()
        await asyncio.sleep(PAUSE)
    assert kill_at is not None

    async def taken_over() -> int | None:
        pid = await leader()
        return pid if pid and pid != leader_pid else None

    new_leader = await eventually(taken_over, within=TAKEOVER_SECONDS)
    takeover = time.monotonic() - kill_at
    finished.set()
    await asyncio.wait_for(asyncio.gather(*followers), 90)
    for own in (c for conns in workers.values() for c in conns):
        await own.aclose()

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        changes = [(int(r["seq"]), r["kind"]) for r in await conn.fetch(
            "SELECT seq, kind FROM projections.changes WHERE client_id = $1 ORDER BY seq", client_id)]
    finally:
        await conn.close()

    report = {}
    for name, f in (("stream on the killed leader", on_leader), ("stream on the survivor", on_survivor)):
        seqs = [int(e.id.removeprefix("c1-"), 16) for e in f.events]
        duplicates = len(seqs) - len(set(seqs))
        disorder = sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
        start = int((f.start_cursor or "c1-0").removeprefix("c1-"), 16)
        gaps = [(s, k) for s, k in changes if s > start and not any(
            e.kind == k and int(e.id.removeprefix("c1-"), 16) >= s for e in f.events)]
        progress = [e for e in f.events if e.kind == "progress"]
        missing = [m for m in written if not progress or m not in progress[-1].data]
        report[name] = dict(events=len(f.events), connections=f.connections, errors=status_counts(f.errors),
                            duplicates=duplicates, out_of_order=disorder, gaps=len(gaps),
                            measurements_missing_from_last_view=len(missing))
    print(f"\n[leader kill] leader={leader_pid} killed after {KILL_AFTER} of {MEASUREMENTS} writes; new leader="
          f"{new_leader} after {takeover:.2f}s; workers now {service.worker_pids()}; writes={status_counts(statuses)}; "
          f"changes recorded={len(changes)}")
    for name, figures in report.items():
        print(f"[leader kill] {name}: {figures}")

    assert new_leader, f"no other worker took the leadership within {TAKEOVER_SECONDS} s"
    assert all(s == 201 for s in statuses), status_counts(statuses)
    assert on_leader.connections >= 2, "the stream on the killed worker never had to resume"
    assert on_survivor.connections == 1, "the stream on the surviving worker was interrupted"
    for name, figures in report.items():
        assert figures["duplicates"] == 0 and figures["out_of_order"] == 0, (name, figures)
        assert figures["gaps"] == 0 and figures["measurements_missing_from_last_view"] == 0, (name, figures)


async def _started(*followers: Follower) -> bool:
    return all(f.start_cursor is not None for f in followers)
