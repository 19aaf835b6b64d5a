"""The alert policy's rebuild (issue 16), on a dedicated fresh database dropped afterwards.

    .venv/bin/python -m bench.bench_alerts            # 1,000 clients × 8 weeks (68,000 events)
    .venv/bin/python -m bench.bench_alerts --quick    # 200 clients
    .venv/bin/python -m bench.bench_alerts --clients 10000   # the issue's 10,000 clients

Each client is enrolled with its consents and on the issue's schedules: a weekly PHQ-9 (a
random walk of totals, a share of the series deteriorating) and a daily mood diary with a note
(a personal field, sealed like every diary note). The figure is the alert policy taking the
lead: ``read_all`` over every event, each page folded by ``AlertPolicy`` (the installed
instruments' definitions, every rule evaluated at every administration) and its decisions taken
at the end. The baseline is ``read_all`` alone over the same events, in the same run; the two
alternate, medians of 3 runs (1 with ``--quick``). Target: the rebuild at ≥ 0.5 × ``read_all``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alliance.core.alerts.follower import registry_definitions
from alliance.core.alerts.policy import AlertPolicy
from alliance.core.database import create_app_pool
from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from bench.harness import (
    Results,
    console,
    create_bench_database,
    drop_bench_database,
    print_server,
    print_table_size,
)
from tests.projections.helpers import Client, domain_codec

BATCH = 1000  # the follower's page


async def generate(store: PostgresEventStore, clients: int, weeks: int, workers: int = 8) -> int:
    rng = random.Random(16)
    todo = list(range(clients))

    async def worker() -> None:
        while todo:
            todo.pop()
            c = Client().enrol()
            start, total = c.t, rng.randint(8, 20)
            drift = rng.choice((-1.0, -0.5, 0.0, 0.8))  # improving, slowly, not at all, deteriorating
            for day in range(weeks * 7):
                c.measure(rng.randint(0, 10), instrument="mood_diary", observed=start + timedelta(days=day))
                if day % 7 == 0:
                    total = min(27, max(0, round(total + drift + rng.uniform(-2, 2))))
                    c.measure(total, instrument="phq9", observed=start + timedelta(days=day))
            await c.flush(store)

    await asyncio.gather(*(worker() for _ in range(workers)))
    async with store._pool.acquire() as conn:  # bench-only peek
        return int(await conn.fetchval("SELECT count(*) FROM events"))


async def read_all_alone(store: PostgresEventStore) -> tuple[int, float]:
    started, after, n = time.perf_counter(), "0.0", 0
    while True:
        events = await store.read_all(after=after, limit=BATCH)
        n += len(events)
        if len(events) < BATCH:
            return n, time.perf_counter() - started
        after = events[-1].checkpoint


async def policy_rebuild(store: PostgresEventStore, registry: InstrumentRegistry) -> tuple[int, float, int]:
    """As the follower does on taking the lead: fold every page, take the decisions once caught up."""
    started, after, n = time.perf_counter(), "0.0", 0
    policy = AlertPolicy(registry_definitions(registry))
    while True:
        events = await store.read_all(after=after, limit=BATCH)
        policy.observe_all(events)
        n += len(events)
        if len(events) < BATCH:
            decisions = len(policy.take_pending())
            return n, time.perf_counter() - started, decisions
        after = events[-1].checkpoint


async def run(args: argparse.Namespace) -> Results:
    db = await create_bench_database()
    results = Results("alert policy (issue 16)")
    pool = await create_app_pool(db.app_dsn, min_size=2, max_size=12)
    store = PostgresEventStore(pool, domain_codec(), PostgresKeyRing(pool, os.urandom(32)), dsn=db.app_dsn)
    try:
        await print_server(db)
        started = time.perf_counter()
        total = await generate(store, args.clients, args.weeks)
        console.print(f"  generated {total:,} events for {args.clients:,} clients ({args.weeks} weeks of a weekly "
                      f"PHQ-9 and a daily mood diary) in {time.perf_counter() - started:.1f} s")
        await print_table_size(db.owner_dsn, "events")
        registry = InstrumentRegistry.from_plugin_manager(get_plugin_manager())
        await read_all_alone(store)  # warm the cache and the key ring for both sides alike
        base, mine, decided = [], [], 0
        for _ in range(args.runs):
            n, secs = await read_all_alone(store)
            base.append(n / secs)
            n, secs, decided = await policy_rebuild(store, registry)
            mine.append(n / secs)
        console.print(f"  read_all alone {statistics.median(base):,.0f} events/s; alert policy rebuild "
                      f"{statistics.median(mine):,.0f} events/s, {decided:,} alerts decided "
                      f"(runs: {', '.join(f'{r:,.0f}' for r in mine)} vs {', '.join(f'{r:,.0f}' for r in base)})")
        results.add("alert policy rebuild", statistics.median(mine), "read_all alone", statistics.median(base), 0.5)
    finally:
        await store.close()
        await pool.close()
        await drop_bench_database(db)
    results.print()
    return results


def main() -> Results:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 clients, 1 run")
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--runs", type=int, default=None)
    args, _ = parser.parse_known_args()
    args.clients = args.clients or (200 if args.quick else 1000)
    args.runs = args.runs or (1 if args.quick else 3)
    from alliance.core.logging import configure_logging
    configure_logging(fmt="console", level="warning")
    return asyncio.run(run(args))


if __name__ == "__main__":
    main()
