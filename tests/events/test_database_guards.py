"""What the database itself enforces: least privilege, immutability, encryption at rest,
migrations that are idempotent and safe to run concurrently, and "outcome unknown"."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from alliance.core.errors import ConfigurationError, OutcomeUnknown
from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.migrations import apply_migrations
from alliance.core.migrations.runner import load_migrations
from tests.database import APP_ROLE, create_test_database, drop_test_database
from tests.events.helpers import new_event, sample_codec
from tests.events.sample_events import Counted, NoteTaken


@pytest.fixture
async def store(app_pool, database):
    pg = PostgresEventStore(app_pool, sample_codec(), PostgresKeyRing(app_pool, bytes(range(32))),
                            dsn=database.app_dsn)
    yield pg
    await pg.close()


@pytest.fixture
async def app_conn(database):
    conn = await asyncpg.connect(database.app_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def owner_conn(database):
    conn = await asyncpg.connect(database.owner_dsn)
    yield conn
    await conn.close()


async def _one_event(store) -> str:
    stream = f"guard-{uuid.uuid4()}"
    await store.append(stream, [new_event(Counted(number=1), tenant=uuid.uuid4(), subject=uuid.uuid4())], 0)
    return stream


@pytest.mark.parametrize("statement", [
    "UPDATE events SET type = 'x' WHERE stream_id = $1",
    "DELETE FROM events WHERE stream_id = $1",
])
async def test_app_role_cannot_change_events(store, app_conn, statement):
    stream = await _one_event(store)
    assert await app_conn.fetchval("SELECT current_user") == APP_ROLE
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute(statement, stream)
    assert await app_conn.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", stream) == 1


@pytest.mark.parametrize("statement", [
    "TRUNCATE events",
    "ALTER TABLE events DISABLE TRIGGER ALL",
    "ALTER TABLE events DISABLE TRIGGER events_no_update",
    "SET session_replication_role = replica",
    "DROP TRIGGER events_no_update ON events",
    "DELETE FROM data_keys",
])
async def test_app_role_cannot_get_around_the_guards(app_conn, statement):
    with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.PostgresError)) as caught:
        await app_conn.execute(statement)
    assert caught.value.sqlstate in {"42501"}, caught.value  # insufficient_privilege / must be owner


@pytest.mark.parametrize("statement", [
    "UPDATE events SET type = 'x' WHERE stream_id = $1",
    "DELETE FROM events WHERE stream_id = $1",
])
async def test_even_the_owner_is_refused_by_the_trigger(store, owner_conn, statement):
    stream = await _one_event(store)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="immutable"):
        await owner_conn.execute(statement, stream)


async def test_owner_truncate_is_refused_by_the_trigger(owner_conn):
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="immutable"):
        await owner_conn.execute("TRUNCATE events")


async def test_personal_text_is_nowhere_in_the_database_in_clear(store, owner_conn):
    canary = f"CANARY-{uuid.uuid4().hex}"
    await store.append(f"guard-{uuid.uuid4()}", [new_event(
        NoteTaken(number=1, text=canary, remark=canary, tags=(canary,), answers={"a": canary}),
        tenant=uuid.uuid4(), subject=uuid.uuid4())], 0)
    tables = [r["tablename"] for r in await owner_conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert "events" in tables and "data_keys" in tables
    for table in tables:
        hits = await owner_conn.fetchval(
            f'SELECT count(*) FROM "{table}" t WHERE position($1 in encode(convert_to(t::text, \'UTF8\'), '
            "'escape')) > 0", canary)
        assert hits == 0, f"{table} holds personal text in clear"
    raw = await owner_conn.fetch("SELECT payload, secret FROM events")
    assert not any(canary.encode() in bytes(r["payload"]) or canary.encode() in bytes(r["secret"] or b"")
                   for r in raw)


async def test_connection_lost_mid_append_is_outcome_unknown_and_retry_tells(store, owner_conn, app_pool):
    stream = await _one_event(store)
    event = new_event(Counted(number=2), tenant=uuid.uuid4(), subject=uuid.uuid4())
    blocker = owner_conn.transaction()
    await blocker.start()
    await owner_conn.execute("SELECT 1 FROM streams WHERE stream_id = $1 FOR UPDATE", stream)
    append = asyncio.create_task(store.append(stream, [event], 1))
    for _ in range(100):
        pid = await owner_conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE '%UPDATE streams%' AND wait_event_type = 'Lock' "
            "AND pid <> pg_backend_pid() LIMIT 1")
        if pid:
            break
        await asyncio.sleep(0.02)
    assert pid, "the append never blocked"
    await owner_conn.execute("SELECT pg_terminate_backend($1)", pid)
    with pytest.raises(OutcomeUnknown):
        await append
    await blocker.rollback()
    retry = await store.append(stream, [event], 1)
    assert not retry.duplicate  # the first attempt had not committed: recorded now, once
    again = await store.append(stream, [event], 1)
    assert again.duplicate
    assert len(await store.read_stream(stream)) == 2


async def test_migrations_are_idempotent_and_safe_concurrently():
    admin, owner, _ = await create_test_database("alliance_migrate")
    try:
        assert await apply_migrations(owner, app_role=APP_ROLE) == []
    finally:
        await drop_test_database(admin, owner)
    # a fresh database migrated by three processes at once: applied exactly once
    from alliance.core.database import ensure_database, with_database
    name = f"alliance_migrate_{uuid.uuid4().hex[:10]}"
    await ensure_database(admin, name)
    fresh = with_database(admin, name)
    try:
        results = await asyncio.gather(*(apply_migrations(fresh, app_role=APP_ROLE) for _ in range(3)))
        applied = [name for names in results for name in names]
        expected = [f"{m.version:04d}_{m.name}" for m in load_migrations()]
        assert sorted(applied) == expected  # each file applied exactly once, whoever applied it
        conn = await asyncpg.connect(fresh)
        try:
            count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
            await conn.execute("UPDATE schema_migrations SET checksum = 'changed' WHERE version = 1")
        finally:
            await conn.close()
        assert count == len(expected)
        with pytest.raises(ConfigurationError, match="changed after it was applied"):
            await apply_migrations(fresh, app_role=APP_ROLE)
    finally:
        await drop_test_database(admin, fresh)
