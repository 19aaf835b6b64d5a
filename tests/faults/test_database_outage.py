"""Trial: PostgreSQL stopped with ``pg_ctl stop -m immediate`` under load, started again
while the service keeps running.

Promise: during the outage every answer is a 503 problem with ``Retry-After`` (never a 500,
never a dropped connection); afterwards the same processes serve again within 15 s, with no
restart; every request retried with its key resolves, and each is stored exactly once.

As in the server-kill trial, the outage is made to hit requests inside the append for
certain: the trial holds half the clients' stream rows (``FOR UPDATE``) when it stops the
server, so those requests have claimed their keys and lose their connection mid-command.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
import httpx

from tests.faults.db import measurement_counts
from tests.faults.world import (
    Keyed,
    enrol_client,
    eventually,
    measurement,
    retry_all,
    status_counts,
    until,
)

WRITERS = 4
READERS = 2
BEFORE_SECONDS = 1.0
DOWN_SECONDS = 3.0
RECOVERY_SECONDS = 15.0
AFTER_SECONDS = 1.0
MAX_REQUESTS_PER_TASK = 3000
PAUSE = 0.05  # between one task's requests, so an outage of fast 503s stays a bounded load


@dataclass
class Answer:
    at: float
    kind: str  # "write" | "read"
    status: int | str
    retry_after: bool = False
    problem: bool = False


async def test_database_stopped_immediately_and_started_under_load(service, clinic, http, cluster) -> None:
    clients = [await enrol_client(clinic, http) for _ in range(max(WRITERS, READERS))]
    pids_before = (service.proc.pid, service.worker_pids())
    answers: list[Answer] = []
    sent: list[Keyed] = []
    stop = asyncio.Event()

    def record(kind: str, result: httpx.Response | Exception) -> None:
        if isinstance(result, Exception):
            answers.append(Answer(time.monotonic(), kind, type(result).__name__))
            return
        answers.append(Answer(time.monotonic(), kind, result.status_code, "retry-after" in result.headers,
                              result.headers.get("content-type", "").startswith("application/problem+json")))

    async def writer(index: int) -> None:
        async with httpx.AsyncClient(timeout=10.0) as own:
            for n in range(MAX_REQUESTS_PER_TASK):
                if stop.is_set():
                    return
                item = measurement(clients[index], f"outage-{index}-{n}", n)
                sent.append(item)
                item.attempts += 1
                try:
                    r = await own.post(f"{service.url}/clients/{item.client_id}/measurements", json=item.body,
                                       headers=clinic.client_headers(item.client_id, item.key))
                    item.first_status = r.status_code
                    if 200 <= r.status_code < 300:
                        item.measurement_id = r.json()["created"]["measurement_id"]
                    record("write", r)
                except httpx.HTTPError as exc:
                    item.first_status = type(exc).__name__
                    record("write", exc)
                await asyncio.sleep(PAUSE)

    async def reader(index: int) -> None:
        async with httpx.AsyncClient(timeout=10.0) as own:
            for _ in range(MAX_REQUESTS_PER_TASK):
                if stop.is_set():
                    return
                try:
                    record("read", await own.get(f"{service.url}/clients/{clients[index]}/plan",
                                                 headers=clinic.client_headers(clients[index])))
                except httpx.HTTPError as exc:
                    record("read", exc)
                await asyncio.sleep(PAUSE)

    tasks = [asyncio.create_task(writer(i)) for i in range(WRITERS)]
    tasks += [asyncio.create_task(reader(i)) for i in range(READERS)]
    await asyncio.sleep(BEFORE_SECONDS)
    blocker = await asyncpg.connect(cluster.dsn("alliance"), timeout=10)
    await blocker.execute("BEGIN")
    await blocker.execute("SELECT 1 FROM streams WHERE stream_id = ANY($1) FOR UPDATE",
                          [f"client-{c}" for c in clients[: WRITERS // 2]])
    stuck = await eventually(lambda: _waiting_on_locks(blocker, WRITERS // 2), within=10)
    down_at = time.monotonic()
    await asyncio.to_thread(cluster.stop, "immediate")
    blocker.terminate()  # its server is gone; nothing to roll back
    await asyncio.sleep(DOWN_SECONDS)
    await asyncio.to_thread(cluster.start)
    up_at = time.monotonic()

    def first_ok(kind: str) -> float | None:
        times = [a.at for a in answers if a.kind == kind and a.at > up_at and isinstance(a.status, int)
                 and 200 <= a.status < 300]
        return min(times) - up_at if times else None

    await until(lambda: (first_ok("write") is not None and first_ok("read") is not None),
                     within=RECOVERY_SECONDS - (time.monotonic() - up_at), every=0.05)
    await asyncio.sleep(AFTER_SECONDS)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    pids_after = (service.proc.pid, service.worker_pids())

    failed = [i for i in sent if not (isinstance(i.first_status, int) and 200 <= i.first_status < 300)]
    await retry_all(clinic, http, failed, within=RECOVERY_SECONDS)
    unresolved = [i for i in failed if not (isinstance(i.final_status, int) and 200 <= i.final_status < 300)]
    counts = await measurement_counts(cluster.dsn("alliance"), clients)
    known = {i.measurement_id for i in sent if i.measurement_id}
    not_once = [i.key for i in sent if i.measurement_id and counts.get(i.measurement_id, 0) != 1]
    strays = sum(n for m, n in counts.items() if m not in known)

    during = [a for a in answers if down_at <= a.at <= up_at]
    bad = [a for a in answers if not isinstance(a.status, int) or (a.status >= 500 and a.status != 503)]
    bare_503 = [a for a in answers if a.status == 503 and not (a.retry_after and a.problem)]
    write_recovery, read_recovery = first_ok("write"), first_ok("read")
    print(f"\n[database outage] stuck_in_append_at_stop={stuck or 0} down={up_at - down_at:.1f}s "
          f"answers_during={status_counts([a.status for a in during])} "
          f"answers_in_all={status_counts([a.status for a in answers])} "
          f"503_without_retry_after_or_problem={len(bare_503)}")
    print(f"[database outage] first 2xx after start: write={_s(write_recovery)} read={_s(read_recovery)} "
          f"service_restarted={pids_before != pids_after} (pids {pids_before} -> {pids_after})")
    print(f"[database outage] keys={len(sent)} not_2xx_first={len(failed)} "
          f"retries_final={status_counts([i.final_status for i in failed])} unresolved={len(unresolved)} "
          f"measurement events={sum(counts.values())} not_stored_once={len(not_once)} events_of_no_key={strays}")

    assert stuck, "no request was inside the append when the database stopped"
    assert not bad, f"outage answers other than 503: {status_counts([a.status for a in bad])}"
    assert any(a.status == 503 for a in during), "no request met the outage"
    assert not bare_503, f"{len(bare_503)} 503s without Retry-After or problem details"
    assert write_recovery is not None and read_recovery is not None, "no recovery within 15 s"
    assert pids_before == pids_after, "the service (or a worker) was restarted"
    assert not unresolved, f"unresolved retries: {status_counts([i.final_status for i in unresolved])}"
    assert not not_once and strays == 0, (not_once[:5], strays)


async def _waiting_on_locks(conn: asyncpg.Connection, at_least: int) -> int:
    n = int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))
    return n if n >= at_least else 0


def _s(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}s"
