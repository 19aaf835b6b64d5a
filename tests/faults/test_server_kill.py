"""Trial: ``kill -9`` of the whole server mid-load, then every request retried with its key.

Promise: what was acknowledged is stored exactly once, every retry resolves within 15 s
(the recorded outcome when the command was stored, a fresh run when it was not), and the
store and its projections verify afterwards.

A kill lands in the dangerous window (key claimed, command not finished) only by luck, so
the trial makes it certain: just before the kill it holds the stream rows of half the
clients (``SELECT ... FOR UPDATE`` from its own session), so their requests are stuck inside
the server's append when the server dies; releasing the rows afterwards lets those appends
commit with nobody left to answer - stored, never acknowledged.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx

from tests.faults.db import measurement_counts
from tests.faults.world import (
    Keyed,
    enrol_client,
    eventually,
    measurement,
    retry_all,
    send,
    status_counts,
    until,
)

WRITERS = 4
MAX_PER_WRITER = 200  # bounds the load phase in count...
LOAD_SECONDS = 10.0  # ...and in time
KILL_AFTER_ACKED = 24
RECOVERY_SECONDS = 15.0


async def test_kill_9_mid_load_then_retries_with_the_same_keys(service, clinic, http, cluster) -> None:
    clients = [await enrol_client(clinic, http) for _ in range(WRITERS)]
    sent: list[Keyed] = []
    acked = 0
    killed = asyncio.Event()

    async def writer(index: int) -> None:
        nonlocal acked
        async with httpx.AsyncClient() as own:  # one connection per writer: concurrent, like separate devices
            for n in range(MAX_PER_WRITER):
                item = measurement(clients[index], f"kill-{index}-{n}", n)
                sent.append(item)
                item.first_status = await send(clinic, own, item, seconds=10.0)
                if isinstance(item.first_status, int) and 200 <= item.first_status < 300:
                    acked += 1
                elif killed.is_set():
                    return  # the server is gone: what happened to this one is what the retries find out

    tasks = [asyncio.create_task(writer(i)) for i in range(WRITERS)]
    await until(lambda: (acked >= KILL_AFTER_ACKED), within=LOAD_SECONDS, every=0.01)
    acked_before_kill = acked
    held = [f"client-{c}" for c in clients[: WRITERS // 2]]
    blocker = await asyncpg.connect(cluster.dsn("alliance"), timeout=10)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT 1 FROM streams WHERE stream_id = ANY($1) FOR UPDATE", held)
        stuck = await eventually(lambda: _waiting_on_locks(blocker, len(held)), within=10)
        killed.set()
        await asyncio.to_thread(service.kill)
        await tx.rollback()
    finally:
        await blocker.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    in_flight = [i for i in sent if not (isinstance(i.first_status, int) and 200 <= i.first_status < 300)]

    restart_started = time.monotonic()
    await asyncio.to_thread(service.start)
    restart_seconds = time.monotonic() - restart_started

    await retry_all(clinic, http, sent, within=RECOVERY_SECONDS)
    unresolved = [i for i in sent if not (isinstance(i.final_status, int) and 200 <= i.final_status < 300)]
    counts = await measurement_counts(cluster.dsn("alliance"), clients)
    acked_items = [i for i in sent if isinstance(i.first_status, int) and 200 <= i.first_status < 300]
    acked_not_once = [i.key for i in acked_items if counts.get(i.measurement_id or "", 0) != 1]
    resolved_not_once = [i.key for i in sent if i.measurement_id and counts.get(i.measurement_id, 0) != 1]
    known = {i.measurement_id for i in sent if i.measurement_id}
    strays = sum(n for m, n in counts.items() if m not in known)
    ready = await eventually(lambda: _ready(http, service.url), within=RECOVERY_SECONDS)
    verify = await asyncio.to_thread(service.cli, "verify")
    projections = await asyncio.to_thread(service.cli, "projections", "verify")

    print(f"\n[server kill] writers={WRITERS} sent={len(sent)} stuck_in_append_at_kill={stuck or 0} "
          f"acknowledged_before_kill={acked_before_kill} acknowledged_in_all={len(acked_items)} "
          f"unanswered_at_kill={len(in_flight)} "
          f"first_answers={status_counts([i.first_status for i in sent])}")
    print(f"[server kill] restart={restart_seconds:.1f}s "
          f"retries: final={status_counts([i.final_status for i in sent])} "
          f"unresolved_after_{RECOVERY_SECONDS:.0f}s={len(unresolved)} "
          f"slowest_resolution={max((i.resolved_after or 0.0) for i in sent):.2f}s "
          f"attempts={sum(i.attempts for i in sent)}")
    print(f"[server kill] stored: measurement events={sum(counts.values())} for {len(known)} resolved keys, "
          f"acknowledged_not_stored_once={len(acked_not_once)} resolved_not_stored_once={len(resolved_not_once)} "
          f"events_of_no_key={strays} ready={bool(ready)} verify_exit={verify.returncode} "
          f"projections_verify_exit={projections.returncode}")

    assert stuck, "no request was inside the server's append when it was killed"
    assert not acked_not_once, f"acknowledged but not stored exactly once: {acked_not_once[:5]}"
    assert not unresolved, (f"{len(unresolved)} retries unresolved after {RECOVERY_SECONDS} s: "
                            f"{status_counts([i.final_status for i in unresolved])}")
    assert not resolved_not_once and strays == 0, (resolved_not_once[:5], strays)
    assert ready, "the service did not report ready"
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert projections.returncode == 0, projections.stdout + projections.stderr


async def _waiting_on_locks(conn: asyncpg.Connection, at_least: int) -> int:
    n = int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))
    return n if n >= at_least else 0


async def _ready(http: httpx.AsyncClient, url: str) -> bool:
    return (await http.get(url + "/ready")).status_code == 200
