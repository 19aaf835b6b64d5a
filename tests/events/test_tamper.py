"""Tamper evidence: change each stored field behind the trigger's back; verify names the event."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.events.verify import verify_store
from tests.events.helpers import new_event, sample_codec
from tests.events.sample_events import Counted, NoteTaken

# column → SQL expression giving a different value of the same type
TAMPERING = {
    "event_id": "gen_random_uuid()",
    "type": "'test.renamed'",
    "schema_version": "schema_version + 1",
    "tenant_id": "gen_random_uuid()",
    "subject_id": "gen_random_uuid()",
    "actor_id": "gen_random_uuid()",
    "actor_role": "'admin'",
    "occurred_at": "occurred_at - interval '1 day'",
    "recorded_at": "recorded_at + interval '1 second'",
    "correlation_id": "gen_random_uuid()",
    "causation_id": "gen_random_uuid()",
    "key_id": "gen_random_uuid()",
    "hash_scheme": "hash_scheme + 1",
    "payload": "convert_to('{\"type\":\"test.note_taken\",\"number\":9,\"text\":\"\"}', 'UTF8')",
    "secret": "secret || '\\x00'::bytea",
    "digest": "sha256(digest)",
    "hash": "sha256(hash)",
    "position": "position + 1000000000",
    "tx_id": "'1'::xid8",
    "version": "version + 10",
    "stream_id": "stream_id || '-moved'",
}


@pytest.fixture
async def owner(database):
    conn = await asyncpg.connect(database.owner_dsn)
    yield conn
    await conn.close()


@pytest.mark.parametrize("column", sorted(TAMPERING))
async def test_each_changed_field_is_detected_and_named(app_pool, database, owner, column):
    store = PostgresEventStore(app_pool, sample_codec(), PostgresKeyRing(app_pool, bytes(range(32))),
                               dsn=database.app_dsn)
    tenant, subject = uuid.uuid4(), uuid.uuid4()
    stream = f"tamper-{uuid.uuid4()}"
    events = [new_event(Counted(number=1), tenant=tenant, subject=subject),
              new_event(NoteTaken(number=2, text="words"), tenant=tenant, subject=subject),
              new_event(Counted(number=3), tenant=tenant, subject=subject)]
    await store.append(stream, events, 0)
    assert (await verify_store(owner)).ok
    original = await owner.fetchrow("SELECT * FROM events WHERE stream_id = $1 AND version = 2", stream)
    # behind the trigger's back, as someone holding the database could
    await owner.execute("SET session_replication_role = replica")
    try:
        await owner.execute(f"UPDATE events SET {column} = {TAMPERING[column]} "
                            "WHERE stream_id = $1 AND version = 2", stream)
        report = await verify_store(owner)
        assert not report.ok
        broken = report.first_break
        assert broken is not None
        assert broken.stream_id in {stream, stream + "-moved"}
        assert broken.version in {1, 2, 3, 12}
        assert broken.reason
    finally:
        await owner.execute("DELETE FROM events WHERE event_id = $1 OR stream_id = $2 AND version = 2 "
                            "OR stream_id = $3", original["event_id"], stream, stream + "-moved")
        columns = list(original.keys())
        await owner.execute(
            f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})",
            *original.values())
        await owner.execute("SET session_replication_role = origin")
    assert (await verify_store(owner)).ok
    await store.close()


async def test_a_missing_stream_tail_is_detected_by_the_head(app_pool, database, owner):
    store = PostgresEventStore(app_pool, sample_codec(), PostgresKeyRing(app_pool, bytes(range(32))),
                               dsn=database.app_dsn)
    tenant, subject = uuid.uuid4(), uuid.uuid4()
    stream = f"tamper-{uuid.uuid4()}"
    await store.append(stream, [new_event(Counted(number=i), tenant=tenant, subject=subject) for i in range(3)], 0)
    last = await owner.fetchrow("SELECT * FROM events WHERE stream_id = $1 AND version = 3", stream)
    await owner.execute("SET session_replication_role = replica")
    try:
        await owner.execute("DELETE FROM events WHERE stream_id = $1 AND version = 3", stream)
        report = await verify_store(owner)
        assert report.first_break is not None and report.first_break.stream_id == stream
        assert "head" in report.first_break.reason
    finally:
        columns = list(last.keys())
        await owner.execute(
            f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})",
            *last.values())
        await owner.execute("SET session_replication_role = origin")
    assert (await verify_store(owner)).ok
    await store.close()
