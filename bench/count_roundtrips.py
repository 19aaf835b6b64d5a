"""Statements and transactions per measurement POST, counted by the database (issue 18).

The real app (``create_app``, its lifespan on this event loop, Litestar over ASGI) on a fresh
bench database; a few clients seeded as ``bench_api`` seeds them; one warm-up POST per client
(so the state cache and data keys are warm, as in a worker that has run a while); then
``pg_stat_statements`` and ``pg_stat_database`` are reset, N POSTs run one after another (so
group commit has nothing to group: the count is the lone POST's) and the counters are read.
Everything any connection of the app did on that database in the window counts, background
work included (its lines are printed, so it can be told apart).

Needs ``DATABASE_URL`` naming a superuser on a server with ``pg_stat_statements`` in
``shared_preload_libraries`` (a throw-away cluster, never a shared one)::

    DATABASE_URL=postgresql://postgres@127.0.0.1:55433/postgres .venv/bin/python -m bench.count_roundtrips
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.bench_api import bench_settings_for, seed
from bench.harness import console, create_bench_database, drop_bench_database
from tests.api.conftest import running  # the app's lifespan on this loop, as the API tests hold it

#: What the request itself sends (the rest is the followers': projector, notifications, reminders).
REQUEST_PATH = ("idempotency_keys", "append_events(", "FROM streams s", "WHERE stream_id = $1",
                "WHERE event_id = $1",
                "'synchronous_commit', 'off', true), pg_notify", "unnest($1::int[], $2::text[], $3::bigint[])")


def in_request(query: str) -> bool:
    return any(mark in query for mark in REQUEST_PATH)


def body(at: datetime) -> dict[str, Any]:
    return {"instrument_id": "mood_diary", "answers": {"mood": 7}, "observed_at": at.isoformat()}


async def count(posts: int, clients: int, keyed: bool, concurrency: int) -> dict[str, float]:
    from alliance.api.app import create_app

    db = await create_bench_database("alliance_rt")
    admin = await asyncpg.connect(db.admin_dsn)
    try:
        home = Path(tempfile.mkdtemp(prefix="alliance-rt-"))
        s = await seed(db, home, clients, 1)
        app = create_app(bench_settings_for(db, home))
        async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                   base_url="http://alliance.test") as http:
            start = datetime.now(UTC) - timedelta(days=1)

            async def post(i: int, n: int) -> None:
                headers = {"Authorization": "Bearer " + s.client_tokens[i]}
                if keyed:
                    headers["Idempotency-Key"] = f"k-{n}-{uuid.uuid4().hex}"
                r = await http.post(f"/clients/{s.clients[i]}/measurements", json=body(start + timedelta(
                    seconds=n)), headers=headers)
                assert r.status_code == 201, r.text

            for i in range(clients):
                await post(i, -1 - i)
            await asyncio.sleep(1.0)  # the projector catches up with the warm-up
            oid = await admin.fetchval("SELECT oid FROM pg_database WHERE datname = $1", db.name)
            await admin.execute("SELECT pg_stat_statements_reset()")
            await admin.execute("SELECT pg_stat_reset_shared('wal')")
            conn = await asyncpg.connect(db.owner_dsn)
            await conn.execute("SELECT pg_stat_reset()")
            await conn.close()
            await asyncio.sleep(0.6)  # the stats collector forgets the reset's own traffic
            before = await admin.fetchval("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                          "WHERE datid = $1", oid)
            syncs_before = await admin.fetchval("SELECT wal_sync FROM pg_stat_wal")
            queue = list(range(posts))
            rng = random.Random(7)

            async def worker() -> None:
                while queue:
                    n = queue.pop()
                    await post(rng.randrange(clients), n)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            await asyncio.sleep(1.0)  # the projector's and notifications' share of these POSTs
            await admin.execute("SELECT pg_stat_clear_snapshot()")
            await asyncio.sleep(0.6)
            after = await admin.fetchval("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                         "WHERE datid = $1", oid)
            syncs = await admin.fetchval("SELECT wal_sync FROM pg_stat_wal") - syncs_before
            rows = await admin.fetch("SELECT calls, query FROM pg_stat_statements WHERE dbid = $1 "
                                     "ORDER BY calls DESC", oid)
        total = sum(r["calls"] for r in rows)
        mine = sum(r["calls"] for r in rows if in_request(r["query"]))
        console.print(f"[bold]{posts} POSTs[/], {'with' if keyed else 'without'} Idempotency-Key, "
                      f"concurrency {concurrency}: statements/POST {total / posts:.2f} "
                      f"(the request's own {mine / posts:.2f}, the followers' {(total - mine) / posts:.2f}), "
                      f"transactions/POST {(after - before) / posts:.2f}, WAL flushes/POST {syncs / posts:.2f}")
        width = int(os.environ.get("RT_WIDTH", "120"))
        for r in rows:
            if r["calls"] >= posts * 0.02:
                where = "request " if in_request(r["query"]) else "follower"
                console.print(f"  {r['calls'] / posts:6.2f} {where} {' '.join(r['query'].split())[-width:]}")
        return {"statements": total / posts, "request": mine / posts, "transactions": (after - before) / posts}
    finally:
        await admin.close()
        await drop_bench_database(db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    from alliance.core.logging import configure_logging
    configure_logging(fmt="console", level="warning")
    for keyed in (False, True):
        asyncio.run(count(args.posts, args.clients, keyed, args.concurrency))


if __name__ == "__main__":
    main()
