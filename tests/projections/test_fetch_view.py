"""``fetch_view``: a view and two stream versions in one round trip, following rebuild switches."""

from __future__ import annotations

import asyncpg

from alliance.core.client import client_stream
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.projections.plan import PLAN
from alliance.core.projections.progress import PROGRESS
from alliance.core.projections.queries import fetch_view, read_progress
from alliance.core.projections.rebuild import rebuild
from tests.projections.conftest import wait_projected
from tests.projections.helpers import Client


async def test_fetch_view_answers_document_and_versions_in_tenant(store: PostgresEventStore, app_pool: asyncpg.Pool,
                                                                  runners) -> None:  # type: ignore[no-untyped-def]
    c = Client().typical()
    other = Client().typical()
    await c.flush(store)
    await wait_projected(app_pool, await other.flush(store))
    streams = (client_stream(c.client), f"goal-{c.goals[0]}")
    fetched = await fetch_view(app_pool, PROGRESS, c.client, c.tenant, streams, keys=store.keys)
    assert fetched.versions == (await store.stream_version(streams[0]), await store.stream_version(streams[1]))
    assert fetched.versions[0] > 0
    assert fetched.rows[0][0] == -1 and len(fetched.rows) > 1  # head, then item rows
    assert [r[:2] for r in fetched.rows[1:]] == sorted(r[:2] for r in fetched.rows[1:])
    same = await read_progress(app_pool, c.client, keys=store.keys, tenant_id=c.tenant)
    assert await read_progress(app_pool, c.client, keys=store.keys, tenant_id=c.tenant, fetched=fetched) == same
    # another tenant's id for the client: no document (nor its item rows), versions still answer
    foreign = await fetch_view(app_pool, PROGRESS, c.client, other.tenant, streams, keys=store.keys)
    assert foreign.rows == () and foreign.versions == fetched.versions
    # an unknown stream reads as version 0
    none = ("client-none", "clinic-none")
    assert (await fetch_view(app_pool, PLAN, c.client, c.tenant, none, keys=store.keys)).versions == (0, 0)


async def test_fetch_view_follows_a_rebuild_switch(store: PostgresEventStore, app_pool: asyncpg.Pool,
                                                   database) -> None:  # type: ignore[no-untyped-def]
    c = Client().typical()
    await c.flush(store)
    streams = (client_stream(c.client), "clinic-none")
    await rebuild(app_pool, store, dsn=database.app_dsn, names=["plan"])
    before = await fetch_view(app_pool, PLAN, c.client, c.tenant, streams, keys=store.keys)  # learns the active table
    assert before.rows
    # kept beside the new one (retired): reads must not answer from it
    await rebuild(app_pool, store, dsn=database.app_dsn, names=["plan"], drop_old=False)
    c.relapse_plan()
    await c.flush(store)
    await rebuild(app_pool, store, dsn=database.app_dsn, names=["plan"], drop_old=False)
    after = await fetch_view(app_pool, PLAN, c.client, c.tenant, streams, keys=store.keys)
    assert after.rows and after.rows != before.rows
    assert PLAN.decode(after.rows[0][2]).relapse_plan is not None
    # and dropped: the next read learns the new table
    await rebuild(app_pool, store, dsn=database.app_dsn, names=["plan"])
    again = await fetch_view(app_pool, PLAN, c.client, c.tenant, streams, keys=store.keys)
    assert PLAN.decode(again.rows[0][2]) == PLAN.decode(after.rows[0][2])
