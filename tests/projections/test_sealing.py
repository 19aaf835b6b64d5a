"""No personal text at rest in the read models: every row is sealed with its client's data key.

The scans read every row of every table in schemas ``public`` and ``projections`` as a
superuser would (``pg_dump`` sees the same), as text, with bytea as hex: a canary in a
client's words must not appear there, in clear or as bytes, before or after an erasure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import asyncpg
import pytest

from alliance.core.consent import ConsentScope
from alliance.core.database import create_app_pool, database_name, with_database
from alliance.core.errors import ConfigurationError
from alliance.core.events.crypto import MemoryKeyRing, PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.projections.plan import PLAN
from alliance.core.projections.queries import fetch_view, read_history, read_plan, read_progress
from alliance.core.projections.registry import PROJECTIONS
from alliance.core.projections.runner import ProjectionRunner
from alliance.core.projections.sealing import HEAD, SEALED, UNSEALED, RowSealer, open_rows, sealer
from tests.projections.conftest import wait_projected
from tests.projections.helpers import Client, domain_codec

MIGRATION = Path(__file__).resolve().parents[2] / "core" / "migrations" / "0005_sealed_read_models.sql"


async def scan(database, needle: str) -> list[str]:  # type: ignore[no-untyped-def]
    """``schema.table`` of every table in public and projections holding ``needle`` in any row
    (as text, or as the hex of a bytea holding its bytes), read as the superuser."""
    conn = await asyncpg.connect(with_database(database.admin_dsn, database_name(database.owner_dsn)))
    try:
        tables = await conn.fetch("SELECT schemaname, tablename FROM pg_tables "
                                  "WHERE schemaname IN ('public', 'projections') ORDER BY 1, 2")
        assert any(t["tablename"] == "events" for t in tables)  # the scan sees the store itself
        found = []
        for schema, table in tables:
            hits = await conn.fetchval(f'SELECT count(*) FROM "{schema}"."{table}" t '
                                       "WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0",
                                       needle, needle.encode().hex())
            if hits:
                found.append(f"{schema}.{table}")
        return found
    finally:
        await conn.close()


def with_words(c: Client) -> Client:
    """A client whose words are in every projection: goal statement, facets, review, feedback, notes."""
    c.typical()
    gid = c.goal()
    c.measure(25, goal=gid, risk=True)
    c.review(gid)
    c.feedback()
    c.relapse_plan()
    return c


async def views(store: PostgresEventStore, pool: asyncpg.Pool, c: Client) -> str:
    plan = await read_plan(pool, c.client, keys=store.keys, tenant_id=c.tenant)
    progress = await read_progress(pool, c.client, keys=store.keys, tenant_id=c.tenant)
    history = await read_history(pool, c.client, keys=store.keys, tenant_id=c.tenant)
    assert plan is not None and progress is not None and history is not None
    return json.dumps([plan, progress, history], default=str)


async def active_rows(pool: asyncpg.Pool, name: str, client: uuid.UUID) -> list[bytes]:
    table = await pool.fetchval("SELECT table_name FROM projections.projection_versions "
                                "WHERE name = $1 AND state = 'active'", name)
    rows = [await pool.fetchval(f'SELECT doc FROM projections."{table}" WHERE client_id = $1', client)]
    if await pool.fetchval("SELECT to_regclass($1)", f'projections."{table}_items"'):
        rows += [r[0] for r in await pool.fetch(f'SELECT data FROM projections."{table}_items" '
                                                "WHERE client_id = $1", client)]
    return rows


async def test_no_personal_text_at_rest_in_any_table_before_or_after_erasure(
        store: PostgresEventStore, app_pool: asyncpg.Pool, database, kek: bytes, runners) -> None:  # type: ignore[no-untyped-def]
    canary = f"canary-{uuid.uuid4().hex}"
    c = with_words(Client(canary=canary))
    await wait_projected(app_pool, await c.flush(store))
    assert await scan(database, canary) == []
    # Every row of the client is sealed; the views still read the words.
    for projection in PROJECTIONS:
        rows = await active_rows(app_pool, projection.name, c.client)
        assert rows and all(r[0] == SEALED for r in rows), projection.name
    shown = await views(store, app_pool, c)
    assert shown.count(canary) >= 5, shown  # goal words, facets, review, feedback, relapse plan

    eraser = PostgresEventStore(app_pool, domain_codec(), PostgresKeyRing(app_pool, kek), dsn=database.app_dsn)
    assert await eraser.keys.destroy(c.client)
    c.erase()
    await wait_projected(app_pool, await c.flush(eraser))
    shown = await views(store, app_pool, c)
    assert canary not in shown and "[erased]" in shown
    plan = await read_plan(app_pool, c.client, keys=store.keys)
    assert plan is not None and plan["erased"] is True
    assert await scan(database, canary) == []
    # Re-folded after the key was destroyed: stored unsealed, there being no key to seal with.
    for projection in PROJECTIONS:
        rows = await active_rows(app_pool, projection.name, c.client)
        assert rows and all(r[0] == UNSEALED for r in rows), projection.name


@pytest.mark.parametrize("held", [True, False], ids=["held-in-memory", "loaded-from-its-rows"])
async def test_a_key_destroyed_under_a_held_document_refolds_the_client_never_stores_the_held_one(
        store: PostgresEventStore, app_pool: asyncpg.Pool, database, kek: bytes, runners,  # type: ignore[no-untyped-def]
        held: bool) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    c = with_words(Client(canary=canary))
    await wait_projected(app_pool, await c.flush(store))
    assert all(c.client in t.cache for t in runners[0].targets)  # the runner holds the folded documents
    if not held:  # as after a restart: the next batch reads rows sealed with a key that is gone by then
        for target in runners[0].targets:
            target.cache.clear()
    # Another process destroys the key; no erasure event yet, and then an event with no personal field.
    eraser = PostgresEventStore(app_pool, domain_codec(), PostgresKeyRing(app_pool, kek), dsn=database.app_dsn)
    assert await eraser.keys.destroy(c.client)
    store.keys.forget(c.client)  # as the key-destroyed notification does
    c.withdraw(ConsentScope.MEASUREMENT)
    await wait_projected(app_pool, await c.flush(eraser))
    rows = await active_rows(app_pool, PLAN.name, c.client)
    assert all(r[0] == UNSEALED for r in rows)  # re-folded from the store, with nothing left to seal
    assert await scan(database, canary) == []
    plan = await read_plan(app_pool, c.client, keys=store.keys)
    assert plan is not None and plan["goals"][0]["client_words"] == "[erased]"
    assert not any(cs["scope"] == ConsentScope.MEASUREMENT for cs in plan["consents_in_force"])


async def test_rows_sealed_with_a_destroyed_key_read_as_nothing_stored_not_an_error(
        store: PostgresEventStore, app_pool: asyncpg.Pool, database, kek: bytes, runners) -> None:  # type: ignore[no-untyped-def]
    c = with_words(Client(canary="words"))
    await wait_projected(app_pool, await c.flush(store))
    assert (await fetch_view(app_pool, PLAN, c.client, c.tenant, keys=store.keys)).rows
    eraser = PostgresKeyRing(app_pool, kek)
    assert await eraser.destroy(c.client)  # and the erasure event not folded yet
    store.keys.forget(c.client)
    fetched = await fetch_view(app_pool, PLAN, c.client, c.tenant, keys=store.keys)
    assert fetched.rows == () and fetched.erased  # the caller answers from the store (words erased)
    assert await read_plan(app_pool, c.client, keys=store.keys) is None
    assert await read_progress(app_pool, c.client, keys=store.keys) is None
    assert await read_history(app_pool, c.client, keys=store.keys) is None


async def test_concurrent_reads_never_hold_a_connection_while_the_key_ring_waits_for_one(
        store: PostgresEventStore, database, kek: bytes, runners, app_pool: asyncpg.Pool) -> None:  # type: ignore[no-untyped-def]
    clients = [with_words(Client(canary="words")) for _ in range(3)]
    for c in clients:
        await wait_projected(app_pool, await c.flush(store))
    small = await create_app_pool(database.app_dsn, min_size=1, max_size=2)
    try:
        keys = PostgresKeyRing(small, kek)  # not listening: it caches nothing, every read loads the key
        async with asyncio.timeout(20):  # a read that opened its rows while holding its connection deadlocked here
            fetched = await asyncio.gather(*(fetch_view(small, PLAN, c.client, c.tenant, keys=keys)
                                             for _ in range(8) for c in clients))
        assert all(f.rows and not f.erased for f in fetched)
    finally:
        await small.close()


async def test_a_sealed_row_opens_only_in_its_own_place() -> None:
    keys = MemoryKeyRing()
    tenant, client, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    rows = await sealer(keys, "progress", tenant, client)
    data = rows.seal(0, 3, b'{"words":"mine"}')
    head = rows.head(b'{"client":1}')
    again = rows.seal(0, 3, b'{"words":"mine"}')
    assert data[0] == SEALED and b"mine" not in data and again != data  # a random nonce per row
    assert await open_rows(keys, "progress", client, [(HEAD, 0, head), (0, 3, data)]) == \
        [(HEAD, 0, b'{"client":1}'), (0, 3, b'{"words":"mine"}')]
    for name, part, ord_ in (("progress", 0, 4), ("progress", 1, 3), ("history", 0, 3)):
        with pytest.raises(ConfigurationError):  # moved to another item or read model: refused
            await open_rows(keys, name, client, [(part, ord_, data)])
    await sealer(keys, "progress", tenant, other)  # another client, with a key of their own
    # moved to them: the key it names is not theirs, so it opens to nothing (never to the words)
    assert await open_rows(keys, "progress", other, [(0, 3, data)]) is None
    plain = RowSealer("progress", client, None).seal(0, 3, b"{}")
    assert plain == bytes((UNSEALED,)) + b"{}"
    assert await open_rows(keys, "progress", client, [(0, 3, plain)]) == [(0, 3, b"{}")]
    with pytest.raises(ValueError, match="unknown format"):
        await open_rows(keys, "progress", client, [(0, 3, b'{"legacy": "plain"}')])
    assert await keys.destroy(client)
    assert await open_rows(keys, "progress", client, [(0, 3, data)]) is None


async def test_the_upgrade_drops_plain_read_models_and_the_runner_projects_them_again_sealed(
        store: PostgresEventStore, app_pool: asyncpg.Pool, database) -> None:  # type: ignore[no-untyped-def]
    canary = f"canary-{uuid.uuid4().hex}"
    c = with_words(Client(canary=canary))
    checkpoint = await c.flush(store)

    async def project_for_a_while() -> None:
        runner = ProjectionRunner(PROJECTIONS, store, dsn=database.app_dsn, poll_interval=0.2,
                                  standby_interval=0.05)
        task = asyncio.create_task(runner.run())
        try:
            await wait_projected(app_pool, checkpoint)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    await project_for_a_while()
    # What the previous code left: documents stored as plain JSON.
    table = await app_pool.fetchval("SELECT table_name FROM projections.projection_versions "
                                    "WHERE name = 'plan' AND state = 'active'")
    legacy = json.dumps({"client_words": canary}).encode()
    await app_pool.execute(f'UPDATE projections."{table}" SET doc = $2 WHERE client_id = $1', c.client, legacy)
    assert await scan(database, canary) == ["projections." + table]
    owner = await asyncpg.connect(database.owner_dsn)
    try:
        await owner.execute(MIGRATION.read_text())
    finally:
        await owner.close()
    assert await scan(database, canary) == []
    assert await app_pool.fetchval("SELECT count(*) FROM projections.projection_versions") == 0
    assert await app_pool.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'projections' "
                                   "AND tablename ~ '_v[0-9]+'") == 0
    await project_for_a_while()  # the new code's runner: every client again, from the store, sealed
    assert canary in await views(store, app_pool, c)
    assert await scan(database, canary) == []
