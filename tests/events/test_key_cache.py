"""Erasure is final in every process, through any gap in the key-destroyed notifications.

Issue 12, observed failure 1: after a lost LISTEN connection (a PostgreSQL restart), a worker
kept serving an erased client's text, because its cached data key outlived the destruction
announced while it was not listening. Each test stands for another process by a second store
on its own pool, and makes the gap happen the way PostgreSQL does: by ending the listening
backend.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from alliance.core.database import create_app_pool, database_name
from alliance.core.events.base import ERASED
from alliance.core.events.crypto import KEY_CACHE_SECONDS, PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from tests.database import TEST_KEK
from tests.events.helpers import new_event, sample_codec
from tests.events.sample_events import NoteTaken

CANARY = "canary-key-cache-7f3a"
#: A destruction nobody announces (no NOTIFY): what a missed notification looks like to a worker.
DESTROY_QUIETLY = "UPDATE data_keys SET wrapped_key = NULL, destroyed_at = now() WHERE subject_id = $1"


async def _store(dsn: str, **keyring: object) -> tuple[PostgresEventStore, asyncpg.Pool]:
    pool = await create_app_pool(dsn, min_size=1, max_size=4)
    store = PostgresEventStore(pool, sample_codec(), PostgresKeyRing(pool, TEST_KEK, **keyring), dsn=dsn)
    return store, pool


async def _wait_for(predicate, seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


async def _note(store: PostgresEventStore) -> tuple[str, uuid.UUID]:
    tenant, subject = uuid.uuid4(), uuid.uuid4()
    stream = f"client-{subject}"
    note = NoteTaken(number=1, text=f"words {CANARY}")
    await store.append(stream, [new_event(note, tenant=tenant, subject=subject)], 0)
    return stream, subject


async def _end_listeners(admin_dsn: str, app_dsn: str) -> int:
    """Terminate every backend of the app's database that is LISTENing: what a restart does to them."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        return len(await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
            database_name(app_dsn)))  # the embedded DSN's query (?host=/socket/dir) has slashes too
    finally:
        await conn.close()


async def test_a_destruction_during_a_listener_gap_is_never_decrypted_with_the_cached_key(database):
    """Given a worker that has read (and cached the key of) a client's note,
    when its LISTEN connection ends and another worker erases the client at once,
    then the first worker reads the note as erased, and listens again by itself."""
    reader, reader_pool = await _store(database.app_dsn)
    eraser, eraser_pool = await _store(database.app_dsn)
    try:
        await reader.listen()
        await eraser.listen()
        stream, subject = await _note(eraser)
        assert CANARY in (await reader.read_stream(stream))[0].payload.text  # key now cached by the reader

        assert await _end_listeners(database.admin_dsn, database.app_dsn) >= 1
        await eraser.keys.destroy(subject)  # announced while the reader may not be listening

        for _ in range(32):
            assert (await reader.read_stream(stream))[0].payload.text == ERASED
        assert await _wait_for(lambda: reader.listening), "the listener reconnects by itself"
        assert reader.listen_gaps >= 1
        assert (await reader.read_stream(stream))[0].payload.text == ERASED
    finally:
        for store, pool in ((reader, reader_pool), (eraser, eraser_pool)):
            await store.close()
            await pool.close()


async def test_while_not_listening_no_key_is_cached(database):
    """Given a worker whose listener is gone, when it reads, then every key comes from the database:
    a destruction that nobody announced (no NOTIFY at all) is seen by the very next read."""
    store, pool = await _store(database.app_dsn)
    try:
        await store.listen()
        stream, subject = await _note(store)
        await store.read_stream(stream)
        await store.close()  # no listener now (the pool stays)
        assert not store.listening and not store.keys.trusted
        assert CANARY in (await store.read_stream(stream))[0].payload.text
        # destroyed behind the store's back: no notification anywhere
        await pool.execute(DESTROY_QUIETLY, subject)
        assert (await store.read_stream(stream))[0].payload.text == ERASED
    finally:
        await pool.close()


async def test_a_cached_key_lives_at_most_a_minute(database):
    """Given a listening worker that cached a key, when the key is destroyed without any
    notification reaching it, then after KEY_CACHE_SECONDS the cached key is no longer used."""
    now = [1000.0]
    store, pool = await _store(database.app_dsn, clock=lambda: now[0])
    try:
        await store.listen()
        stream, subject = await _note(store)
        assert CANARY in (await store.read_stream(stream))[0].payload.text
        await pool.execute(DESTROY_QUIETLY, subject)
        now[0] += KEY_CACHE_SECONDS - 1
        assert CANARY in (await store.read_stream(stream))[0].payload.text  # still within the bound
        now[0] += 2
        assert (await store.read_stream(stream))[0].payload.text == ERASED
        assert KEY_CACHE_SECONDS <= 60
    finally:
        await store.close()
        await pool.close()


async def test_a_load_racing_a_destruction_does_not_cache_the_old_key(database):
    """A key read from the database just before its destruction commits must not be cached
    after the destruction was announced: the announcement bumps the epoch, the load does not store."""
    store, pool = await _store(database.app_dsn)
    try:
        await store.listen()
        _, subject = await _note(store)
        keys = store.keys
        keys.forget_all()
        epoch_before = keys._epoch  # type: ignore[attr-defined]
        row = await pool.fetchrow("SELECT key_id, wrapped_key FROM data_keys WHERE subject_id = $1", subject)
        loaded = keys._unwrap(subject, row["key_id"], row["wrapped_key"])  # type: ignore[attr-defined]
        keys.forget(subject)  # the destruction is announced while the load is in flight
        keys._remember(subject, loaded, epoch_before)  # type: ignore[attr-defined]
        assert keys._cached(subject) is None  # type: ignore[attr-defined]
    finally:
        await store.close()
        await pool.close()


async def test_the_eraser_waits_until_the_announcement_is_delivered(database):
    store, pool = await _store(database.app_dsn)
    try:
        await store.listen()
        _, subject = await _note(store)
        assert await store.keys.destroy(subject)
        assert await store.notify_key_destroyed(subject) is True
    finally:
        await store.close()
        await pool.close()
