"""One runner for several projections: reads each page once, leads all of them or none."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from alliance.core.events.postgres import PostgresEventStore
from alliance.core.projections.plan import PLAN
from alliance.core.projections.queries import plan_document, progress_document
from alliance.core.projections.registry import PROJECTIONS
from alliance.core.projections.runner import ProjectionRunner
from tests.projections.conftest import wait_projected
from tests.projections.helpers import Client


async def test_group_runner_leads_all_or_none_and_projects_every_view(
        store: PostgresEventStore, app_pool: asyncpg.Pool, database) -> None:  # type: ignore[no-untyped-def]
    single = ProjectionRunner(PLAN, store, dsn=database.app_dsn, poll_interval=0.2, standby_interval=0.05)
    group = ProjectionRunner(PROJECTIONS, store, dsn=database.app_dsn, poll_interval=0.2, standby_interval=0.05)
    ts = asyncio.create_task(single.run())
    await single.wait_caught_up(10)
    tg = asyncio.create_task(group.run())
    try:
        await asyncio.sleep(0.3)
        # the group cannot have plan: it leads none of its projections (no split leadership)
        assert single.leading and not group.leading
        ts.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ts
        await group.wait_caught_up(10)
        assert group.leading
        c = Client().typical()
        await wait_projected(app_pool, await c.flush(store))
        plan = await plan_document(app_pool, c.client, keys=store.keys)
        progress = await progress_document(app_pool, c.client, keys=store.keys)
        assert plan is not None and plan.goals and progress is not None
        assert group.checkpoint is not None
        names = {r["name"] for r in await app_pool.fetch(
            "SELECT name FROM projections.projection_versions WHERE state = 'active' AND checkpoint = $1",
            group.checkpoint)}
        assert names == {p.name for p in PROJECTIONS}  # one page, applied to each
    finally:
        for t in (ts, tg):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def test_group_runner_follows_each_projection_across_a_rebuild_switch(
        store: PostgresEventStore, app_pool: asyncpg.Pool, database, runners) -> None:  # type: ignore[no-untyped-def]
    from alliance.core.projections.rebuild import rebuild, status, verify

    c = Client().typical()
    await wait_projected(app_pool, await c.flush(store))
    before = {s.name: s.version for s in await status(app_pool) if s.state == "active"}
    await rebuild(app_pool, store, names=["plan"], dsn=database.app_dsn)  # only one of the group moves
    after = {s.name: s.version for s in await status(app_pool) if s.state == "active"}
    assert after == {**before, "plan": before["plan"] + 1}
    c.relapse_plan()
    c.measure(5, goal=c.goals[0])
    await wait_projected(app_pool, await c.flush(store))
    plan = await plan_document(app_pool, c.client, keys=store.keys)
    assert plan is not None and plan.relapse_plan is not None  # the new plan version is followed
    assert all(r.ok for r in await verify(app_pool, store)), "replay equals live across the switch"
