"""The runner against the real database: erasure, change feed across processes, leadership,
kill-and-resume, rebuild, verify and status."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid

import asyncpg

from alliance.core.database import create_app_pool
from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.projections.feed import ChangeFeed, decode_cursor
from alliance.core.projections.plan import PLAN
from alliance.core.projections.queries import history_document, plan_document, progress_document, read_plan
from alliance.core.projections.rebuild import lag, rebuild, status, verify
from alliance.core.projections.registry import PROJECTIONS
from alliance.core.projections.runner import ProjectionRunner
from tests.projections.conftest import wait_projected
from tests.projections.helpers import Client, domain_codec


async def _scan(pool: asyncpg.Pool, needle: str) -> list[str]:
    """Every (table, column) in schema projections whose value contains ``needle``."""
    found = []
    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'projections'")
    for (table,) in tables:
        for row in await pool.fetch(f'SELECT * FROM projections."{table}"'):
            for column, value in row.items():
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                if needle in text:
                    found.append(f"{table}.{column}")
    return found


async def test_erasure_leaves_no_personal_data_in_any_projection(store: PostgresEventStore, app_pool: asyncpg.Pool,
                                                                 database, kek: bytes, runners) -> None:  # type: ignore[no-untyped-def]
    canary = f"canary-{uuid.uuid4().hex}"
    c = Client(canary=canary).typical()
    gid = c.goal()
    c.measure(25, goal=gid, risk=True)
    c.review(gid)
    await wait_projected(app_pool, await c.flush(store))
    assert await _scan(app_pool, canary) == []  # sealed with the client's key (tests/projections/test_sealing.py)
    assert canary in str(await read_plan(app_pool, c.client, keys=store.keys))  # yet the view reads the words
    # Another process erases: its own key ring (our runners' key cache still holds the key).
    eraser = PostgresEventStore(app_pool, domain_codec(), PostgresKeyRing(app_pool, kek), dsn=database.app_dsn)
    await store.read_all(subject_id=c.client, limit=5)  # make sure the runners' key ring has the key cached
    assert await eraser.keys.destroy(c.client)
    c.erase()
    await wait_projected(app_pool, await c.flush(eraser))
    assert await _scan(app_pool, canary) == []
    plan = await read_plan(app_pool, c.client, keys=store.keys)
    assert plan is not None and plan["erased"] is True
    assert plan["goals"][0]["client_words"] == "[erased]"
    progress = await progress_document(app_pool, c.client, keys=store.keys)
    assert progress is not None and progress.points  # scores and structure stay
    [result] = await verify(app_pool, store, ["history"])
    assert result.ok, result


async def test_feed_resumes_across_processes(store: PostgresEventStore, app_pool: asyncpg.Pool, database,
                                             runners) -> None:  # type: ignore[no-untyped-def]
    c = Client().enrol()
    gid = c.goal()
    await wait_projected(app_pool, await c.flush(store))
    # "Process B": its own pool and feed; the runners project in "process A".
    pool_b = await create_app_pool(database.app_dsn, min_size=1, max_size=3)
    feed = ChangeFeed(pool_b, dsn=database.app_dsn, keys=store.keys, poll_interval=2.0)
    try:
        start = await feed.head(c.client)
        follower = feed.follow(c.client, start)
        c.measure(14, goal=gid)
        await c.flush(store)
        seen = []
        async with asyncio.timeout(10):
            async for change in follower:
                seen.append(change)
                if change.kind == "progress":
                    break
        await follower.aclose()
        progress_change = seen[-1]
        assert progress_change.view is not None
        assert progress_change.view["measures"][0]["latest"] == 14
        assert decode_cursor(progress_change.cursor) > decode_cursor(start)
        assert "." not in progress_change.cursor  # no global position inside
        cursor = progress_change.cursor
    finally:
        await feed.close()
        await pool_b.close()
    # Disconnected: two more measurements and a plan change happen meanwhile.
    c.measure(12, goal=gid)
    c.measure(10, goal=gid)
    c.relapse_plan()
    await wait_projected(app_pool, await c.flush(store))
    pool_c = await create_app_pool(database.app_dsn, min_size=1, max_size=3)
    feed_c = ChangeFeed(pool_c, dsn=database.app_dsn, keys=store.keys, poll_interval=2.0)
    try:
        pending = await feed_c.changes_after(c.client, cursor)
        seqs = [decode_cursor(x) for x, _ in pending]
        assert seqs == list(range(decode_cursor(cursor) + 1, decode_cursor(cursor) + 1 + len(seqs)))  # gap-free
        assert {k for _, k in pending} == {"plan", "progress"}
        got = []
        async with asyncio.timeout(10):
            async for change in feed_c.follow(c.client, cursor):
                got.append(change)
                if change.cursor == pending[-1][0]:
                    break
        kinds = {g.kind for g in got}
        assert kinds == {"plan", "progress"}
        latest_progress = [g for g in got if g.kind == "progress"][-1]
        assert latest_progress.view is not None and latest_progress.view["measures"][0]["latest"] == 10
    finally:
        await feed_c.close()
        await pool_c.close()


async def test_advisory_lock_takeover(store: PostgresEventStore, app_pool: asyncpg.Pool, database) -> None:  # type: ignore[no-untyped-def]
    a = ProjectionRunner(PLAN, store, dsn=database.app_dsn, poll_interval=0.2, standby_interval=0.05)
    b = ProjectionRunner(PLAN, store, dsn=database.app_dsn, poll_interval=0.2, standby_interval=0.05)
    ta = asyncio.create_task(a.run())
    await a.wait_caught_up(10)
    tb = asyncio.create_task(b.run())
    try:
        await asyncio.sleep(0.3)
        assert a.leading and not b.leading
        c = Client().enrol()
        await wait_projected(app_pool, await c.flush(store), ("plan",))
        # The holder's session dies (crash, network): the standby takes over.
        admin = await asyncpg.connect(database.admin_dsn)
        assert a._conn is not None
        await admin.execute("SELECT pg_terminate_backend($1)", a._conn.get_server_pid())
        await admin.close()
        async with asyncio.timeout(10):
            while not b.leading:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        c.relapse_plan()
        await wait_projected(app_pool, await c.flush(store), ("plan",))
        doc = await plan_document(app_pool, c.client, keys=store.keys)
        assert doc is not None and doc.relapse_plan is not None
        await asyncio.sleep(0.3)
        assert not (a.leading and b.leading)
    finally:
        for t in (ta, tb):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def test_kill_and_resume_then_rebuild_equals_live(store: PostgresEventStore, app_pool: asyncpg.Pool,
                                                        database) -> None:  # type: ignore[no-untyped-def]
    clients = [Client().enrol() for _ in range(6)]
    for c in clients:
        c.goal()
    for c in clients:
        await c.flush(store)
    stop = asyncio.Event()
    last: dict[str, str] = {}

    async def writer(c: Client) -> None:
        rng = random.Random(str(c.client))
        while not stop.is_set():
            c.measure(rng.randint(0, 27), goal=c.goals[0])
            if rng.random() < 0.2:
                c.feedback()
            last[str(c.client)] = await c.flush(store)
            await asyncio.sleep(rng.random() * 0.01)

    def start() -> list[tuple[ProjectionRunner, asyncio.Task[None]]]:
        out = []
        for p in PROJECTIONS:
            r = ProjectionRunner(p, store, dsn=database.app_dsn, batch_size=7, poll_interval=0.2,
                                 standby_interval=0.05)
            out.append((r, asyncio.create_task(r.run())))
        return out

    writers = [asyncio.create_task(writer(c)) for c in clients]
    try:
        for _ in range(3):  # kill mid-batch three times while the writers keep appending
            running = start()
            await asyncio.sleep(random.uniform(0.15, 0.4))
            for _, task in running:
                task.cancel()
            for _, task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        running = start()
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*writers)
    try:
        await wait_projected(app_pool, max(last.values(), key=lambda x: tuple(map(int, x.split(".")))), timeout=30)
        results = await verify(app_pool, store)
        assert all(r.ok for r in results), results
        before = {c.client: (await plan_document(app_pool, c.client, keys=store.keys),
                             await progress_document(app_pool, c.client, keys=store.keys),
                             await history_document(app_pool, c.client, keys=store.keys)) for c in clients}
        assert all(len(h.entries) > 5 for _, _, h in before.values() if h is not None)
        versions = {s.name: s.version for s in await status(app_pool) if s.state == "active"}
        seen: list[str] = []
        rebuilt = await rebuild(app_pool, store, dsn=database.app_dsn, batch_size=500,
                                progress=lambda p: seen.append(p.phase))
        assert {r.name: r.version for r in rebuilt} == {n: v + 1 for n, v in versions.items()}
        assert "done" in seen
        after = {c.client: (await plan_document(app_pool, c.client, keys=store.keys),
                            await progress_document(app_pool, c.client, keys=store.keys),
                            await history_document(app_pool, c.client, keys=store.keys)) for c in clients}
        assert after == before
        # The live runners followed the switch: new events land in the new versions.
        c = clients[0]
        c.relapse_plan()
        await wait_projected(app_pool, await c.flush(store))
        doc = await plan_document(app_pool, c.client, keys=store.keys)
        assert doc is not None and doc.relapse_plan is not None
        st = await status(app_pool)
        assert sorted(s.name for s in st) == ["history", "plan", "progress"]  # old versions dropped
        assert all(s.state == "active" and not s.stale for s in st)
        lags = await lag(app_pool)
        assert set(lags) == {"plan", "progress", "history"}
    finally:
        for _, task in running:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
