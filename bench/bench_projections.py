"""Projection benchmarks (issue 5), on a dedicated fresh database dropped afterwards.

    .venv/bin/python bench/bench_projections.py                 # default: 50,000 events, < 2 min
    .venv/bin/python bench/bench_projections.py --events 1000000 # the issue's figure
    .venv/bin/python bench/bench_projections.py --events 1000000 --keep-db alliance_bench_1m --only rebuild
        # fills the named database once (kept afterwards, fixed KEK), then times read_all, rebuild and reads only

Prints, from one run: ``read_all`` alone over every event (the baseline), the rebuild of all
projections (events/s and the ratio to the baseline), append → projected → notified in
another process at a steady rate (p50/p99; then again while a rebuild runs), and plan and
progress read latency of one client with every event stored.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from alliance.core.database import create_app_pool, ensure_database, with_database, with_user
from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.migrations import apply_migrations
from alliance.core.projections.feed import ChangeFeed
from alliance.core.projections.queries import read_plan, read_progress
from alliance.core.projections.rebuild import rebuild
from alliance.core.projections.registry import PROJECTIONS
from alliance.core.projections.runner import ProjectionRunner
from tests.database import APP_ROLE, TEST_KEK, create_test_database, drop_test_database, test_settings
from tests.projections.helpers import Client, domain_codec


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


async def open_store(pool: asyncpg.Pool, dsn: str, kek: bytes) -> PostgresEventStore:
    """A store as the app opens one: following key destruction, so its key ring may cache keys."""
    store = PostgresEventStore(pool, domain_codec(), PostgresKeyRing(pool, kek), dsn=dsn)
    await store.listen()
    return store


# --- subprocess roles -----------------------------------------------------------------------

async def role_runner(dsn: str, kek: bytes, live: set[str]) -> None:
    pool = await create_app_pool(dsn, min_size=2, max_size=6)
    store = await open_store(pool, dsn, kek)
    runners = [ProjectionRunner([p for p in PROJECTIONS if p.name in live], store, dsn=dsn, batch_size=500,
                                poll_interval=1.0, standby_interval=0.2)]  # as the app runs them
    print("ready", flush=True)
    await asyncio.gather(*(r.run() for r in runners))


async def role_subscriber(dsn: str, kek: bytes, clients: list[UUID]) -> None:
    pool = await create_app_pool(dsn, min_size=2, max_size=10)
    store = await open_store(pool, dsn, kek)  # its key ring opens the sealed views
    feed = ChangeFeed(pool, dsn=dsn, keys=store.keys, poll_interval=5.0)

    async def follow(client: UUID) -> None:
        async for change in feed.follow(client, await feed.head(client)):
            if change.kind != "progress" or change.view is None:
                continue
            measures = change.view["measures"]
            if measures and measures[0]["points"]:
                mid = measures[0]["points"][-1]["measurement_id"]
                print(json.dumps({"m": mid, "t": time.time()}), flush=True)

    tasks = [asyncio.create_task(follow(c)) for c in clients]
    await asyncio.sleep(0.5)
    print("ready", flush=True)
    await asyncio.gather(*tasks)


async def role_rebuild(dsn: str, kek: bytes, batch: int) -> None:
    """A rebuild in its own process, as ``alliance projections rebuild`` runs it."""
    pool = await create_app_pool(dsn, min_size=2, max_size=6)
    store = await open_store(pool, dsn, kek)
    print("ready", flush=True)
    started = time.perf_counter()
    await rebuild(pool, store, dsn=dsn, batch_size=batch)
    print(json.dumps({"rebuilt": time.perf_counter() - started}), flush=True)
    await store.close()
    await pool.close()


# --- phases -----------------------------------------------------------------------------------

async def read_phase(pool: asyncpg.Pool, store: PostgresEventStore, client: UUID, tenant: UUID, reads: int) -> None:
    """Plan and progress read latency of one client (rows opened with its data key), ``reads`` of each."""
    from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
    registry = InstrumentRegistry.from_plugin_manager(get_plugin_manager())
    for name, read in (("plan", lambda: read_plan(pool, client, keys=store.keys, tenant_id=tenant)),
                       ("progress", lambda: read_progress(pool, client, keys=store.keys, tenant_id=tenant,
                                                          instruments=registry))):
        times = []
        for _ in range(reads):
            t = time.perf_counter()
            view = await read()
            times.append((time.perf_counter() - t) * 1000)
            assert view is not None
        print(f"{name} read of one client ({await count_events(store):,} events stored): "
              f"p50={pct(times, 50):.2f} ms p99={pct(times, 99):.2f} ms")


async def generate(store: PostgresEventStore, n_events: int, per_client: int, workers: int) -> list[Client]:
    """≈ ``n_events`` over ``n_events / per_client`` clients, appended by concurrent writers."""
    n_clients = max(1, n_events // per_client)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n_clients):
        queue.put_nowait(i)
    made: list[Client] = []
    extra = max(0, per_client - 30)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            c = Client().typical(measurements=extra)
            await c.flush(store)
            made.append(c)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    total = await count_events(store)
    print(f"generated {total:,} events for {n_clients:,} clients in {time.perf_counter() - started:.1f} s")
    return made


async def count_events(store: PostgresEventStore) -> int:
    async with store._pool.acquire() as conn:  # bench-only peek
        return int(await conn.fetchval("SELECT count(*) FROM events"))


async def read_all_baseline(store: PostgresEventStore, batch: int) -> tuple[int, float]:
    started = time.perf_counter()
    after, n = "0.0", 0
    while True:
        events = await store.read_all(after=after, limit=batch)
        n += len(events)
        if len(events) < batch:
            break
        after = events[-1].checkpoint
    return n, time.perf_counter() - started


async def latency_phase(store: PostgresEventStore, clients: list[Client], lines: asyncio.Queue[str],
                        rate: float, seconds: float) -> list[float]:
    sent: dict[str, float] = {}
    received: dict[str, float] = {}

    async def collect() -> None:
        while True:
            line = await lines.get()
            with contextlib.suppress(ValueError, KeyError):
                msg = json.loads(line)
                received.setdefault(msg["m"], msg["t"])

    collector = asyncio.create_task(collect())
    interval = 1.0 / rate
    start = time.perf_counter()
    i = 0
    pending: set[asyncio.Task[Any]] = set()

    async def one(c: Client) -> None:
        mid = c.measure(10, goal=c.goals[0])
        t = time.time()
        await c.flush(store)
        sent[str(mid)] = t

    busy: set[UUID] = set()
    while time.perf_counter() - start < seconds:
        c = clients[i % len(clients)]
        i += 1
        if c.client not in busy:  # one append at a time per client (stream versions)
            busy.add(c.client)
            task = asyncio.create_task(one(c))
            task.add_done_callback(lambda _t, cid=c.client: busy.discard(cid))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
    await asyncio.gather(*pending)
    await asyncio.sleep(2.0)
    collector.cancel()
    return [(received[m] - sent[m]) * 1000 for m in sent if m in received]


async def spawn(args: list[str], env: dict[str, str]) -> tuple[asyncio.subprocess.Process, asyncio.Queue[str]]:
    proc = await asyncio.create_subprocess_exec(sys.executable, __file__, *args, stdout=subprocess.PIPE,
                                                env=env)
    lines: asyncio.Queue[str] = asyncio.Queue()
    assert proc.stdout is not None
    first = (await proc.stdout.readline()).decode().strip()
    assert first == "ready", first

    async def pump() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            lines.put_nowait(raw.decode())

    asyncio.get_running_loop().create_task(pump())
    return proc, lines


async def kept_database(name: str) -> tuple[str, str, str]:
    """(admin, owner, app) DSNs of database ``name``, created and migrated when missing (kept afterwards)."""
    settings = test_settings()
    admin = settings.database_url
    if not admin:
        from alliance.core.database import start_embedded
        admin = start_embedded(settings)
    await ensure_database(admin, name)
    owner = with_database(admin, name)
    await apply_migrations(owner, app_role=APP_ROLE)
    return admin, owner, with_user(owner, APP_ROLE, settings.app_role_password)


async def main(args: argparse.Namespace) -> None:
    if args.keep_db:
        admin, owner, app = await kept_database(args.keep_db)
        kek = TEST_KEK  # a kept database outlives this process: its KEK must be known next time
    else:
        admin, owner, app = await create_test_database("alliance_bench")
        kek = os.urandom(32)
    env = {**os.environ, "ALLIANCE_BENCH_KEK": base64.b64encode(kek).decode()}
    procs: list[asyncio.subprocess.Process] = []
    pool = await create_app_pool(app, min_size=2, max_size=args.workers + 4)
    store = await open_store(pool, app, kek)
    try:
        stored = await count_events(store)
        if args.keep_db and stored:
            print(f"reusing {args.keep_db}: {stored:,} events")
            clients: list[Client] = []
        else:
            clients = await generate(store, args.events, args.per_client, args.workers)
        n, secs = await read_all_baseline(store, args.batch)
        base_rate = n / secs
        print(f"read_all alone: {n:,} events in {secs:.2f} s = {base_rate:,.0f} events/s")

        seen: list[float] = []
        started = time.perf_counter()
        await rebuild(pool, store, dsn=app, batch_size=args.batch,
                      progress=lambda p: seen.append(p.elapsed))
        secs = time.perf_counter() - started
        print(f"rebuild of all projections ({', '.join(p.name for p in PROJECTIONS)}): {n:,} events in "
              f"{secs:.2f} s = {n / secs:,.0f} events/s; ratio to read_all = {n / secs / base_rate:.2f}")
        if args.only == "rebuild":
            # the reads of the rows just rebuilt: the client with the most events (the same one each run)
            client, tenant = await pool.fetchrow("SELECT subject_id, min(tenant_id::text)::uuid FROM events "
                                                 "GROUP BY subject_id ORDER BY count(*) DESC, subject_id LIMIT 1")
            await read_phase(pool, store, client, tenant, args.reads)
            return
        if not clients:  # a reused database: fresh clients to append to and follow
            clients = await generate(store, args.subscribed * 30, 30, args.workers)

        runner, _ = await spawn(["--role", "runner", "--dsn", app, "--live", args.live], env)
        procs.append(runner)
        followed = clients[: args.subscribed]
        subscriber, lines = await spawn(["--role", "subscriber", "--dsn", app,
                                         "--clients", ",".join(str(c.client) for c in followed)], env)
        procs.append(subscriber)
        await asyncio.sleep(1.0)
        lat = await latency_phase(store, followed, lines, args.rate, args.seconds)
        print(f"append → projected → notified (other process), {args.rate:.0f} appends/s for {args.seconds:.0f} s: "
              f"n={len(lat)} p50={pct(lat, 50):.1f} ms p99={pct(lat, 99):.1f} ms max={max(lat, default=0):.1f} ms")

        rebuild_task = asyncio.create_task(rebuild(pool, store, dsn=app, batch_size=args.batch))
        lat2 = await latency_phase(store, followed, lines, args.rate, args.seconds)
        await rebuild_task
        print(f"… the same while a rebuild runs in this (the appending) process: n={len(lat2)} "
              f"p50={pct(lat2, 50):.1f} ms p99={pct(lat2, 99):.1f} ms max={max(lat2, default=0):.1f} ms")

        rebuilder, rebuilt = await spawn(["--role", "rebuild", "--dsn", app, "--batch", str(args.batch)], env)
        procs.append(rebuilder)
        lat3 = await latency_phase(store, followed, lines, args.rate, args.seconds)
        done = json.loads(await asyncio.wait_for(rebuilt.get(), 600))
        print(f"… the same while a rebuild runs in another process: n={len(lat3)} p50={pct(lat3, 50):.1f} ms "
              f"p99={pct(lat3, 99):.1f} ms max={max(lat3, default=0):.1f} ms "
              f"(rebuild took {done['rebuilt']:.1f} s, {'within' if done['rebuilt'] <= args.seconds else 'beyond'} "
              f"the {args.seconds:.0f} s window)")

        target = clients[len(clients) // 2]
        await read_phase(pool, store, target.client, target.tenant, args.reads)
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.wait(), 5)
        await store.close()
        await pool.close()
        if not args.keep_db:
            await drop_test_database(admin, owner)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--per-client", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--subscribed", type=int, default=100)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--keep-db", metavar="NAME",
                        help="use database NAME (filled with --events when empty) and keep it afterwards")
    parser.add_argument("--only", choices=["all", "rebuild"], default="all",
                        help="rebuild: read_all, the rebuild and the plan/progress reads only (no latency phases)")
    parser.add_argument("--role", choices=["main", "runner", "subscriber", "rebuild"], default="main")
    parser.add_argument("--dsn")
    parser.add_argument("--clients", default="")
    parser.add_argument("--live", default="plan,progress,history",
                        help="projections the runner process runs during the latency phases")
    ns = parser.parse_args()
    from alliance.core.logging import configure_logging
    configure_logging(fmt="console", level="warning")
    if ns.role == "runner":
        asyncio.run(role_runner(ns.dsn, base64.b64decode(os.environ["ALLIANCE_BENCH_KEK"]),
                                set(ns.live.split(","))))
    elif ns.role == "rebuild":
        asyncio.run(role_rebuild(ns.dsn, base64.b64decode(os.environ["ALLIANCE_BENCH_KEK"]), ns.batch))
    elif ns.role == "subscriber":
        asyncio.run(role_subscriber(ns.dsn, base64.b64decode(os.environ["ALLIANCE_BENCH_KEK"]),
                                    [UUID(x) for x in ns.clients.split(",") if x]))
    else:
        asyncio.run(main(ns))
