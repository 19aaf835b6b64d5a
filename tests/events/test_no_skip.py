"""Readers of the global order never miss an event committed late by a concurrent writer.

Eight writers append to their own streams for several seconds while a ninth holds
its append transaction open (so its event takes an *earlier* position but commits
*later*). A subscriber stops and resumes from its checkpoint several times. Every
event must be seen exactly once, each stream in version order. In the same run a
naive ``position > checkpoint`` reader is shown to skip the late event, so this
test would fail if the store read that way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import asyncpg
import pytest

from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import _APPEND, PostgresEventStore
from tests.database import TEST_KEK
from tests.events.helpers import new_event, sample_codec
from tests.events.sample_events import Counted

WRITERS = 8
SECONDS = 4.0


@pytest.mark.parametrize("group_commit", [False, True], ids=["single", "grouped"])
async def test_concurrent_writers_and_a_late_commit_are_never_skipped(app_pool, database, group_commit):
    codec = sample_codec()
    store = PostgresEventStore(app_pool, codec, PostgresKeyRing(app_pool, TEST_KEK), dsn=database.app_dsn,
                               group_commit=group_commit)
    tenant, subject = uuid.uuid4(), uuid.uuid4()  # the subject filter isolates this run from other tests
    start = await store.head()
    stop = asyncio.Event()
    appended: list[uuid.UUID] = []

    async def writer(n: int) -> None:
        stream, version = f"noskip-{n}-{uuid.uuid4()}", 0
        while not stop.is_set():
            event = new_event(Counted(number=version), tenant=tenant, subject=subject)
            await store.append(stream, [event], version)
            appended.append(event.event_id)
            version += 1

    late = new_event(Counted(number=0), tenant=tenant, subject=subject)
    late_committed = asyncio.Event()

    async def late_writer() -> None:
        conn = await asyncpg.connect(database.app_dsn)
        try:
            late_stream = f"noskip-late-{uuid.uuid4()}"
            rows = await store._prepare(late_stream, [late], 0)
            tx = conn.transaction()
            await tx.start()
            await conn.fetch(_APPEND, *store._args(late_stream, 0, tenant, rows))
            await asyncio.sleep(SECONDS / 2)  # later writers commit meanwhile, with higher positions
            await tx.commit()
            appended.append(late.event_id)
            late_committed.set()
        finally:
            await conn.close()

    naive_seen: set[uuid.UUID] = set()

    async def naive_reader() -> None:
        conn = await asyncpg.connect(database.app_dsn)
        checkpoint = 0
        try:
            while not stop.is_set():
                rows = await conn.fetch("SELECT position, event_id FROM events WHERE position > $1 "
                                        "AND subject_id = $2 ORDER BY position", checkpoint, subject)
                for row in rows:
                    naive_seen.add(row["event_id"])
                    checkpoint = row["position"]
                await asyncio.sleep(0.01)
            for row in await conn.fetch("SELECT position, event_id FROM events WHERE position > $1 "
                                        "AND subject_id = $2 ORDER BY position", checkpoint, subject):
                naive_seen.add(row["event_id"])
        finally:
            await conn.close()

    seen: list = []
    end_marker = new_event(Counted(number=999_999), tenant=tenant, subject=subject)

    async def subscriber() -> None:
        checkpoint = start
        sessions = 0
        while True:
            sessions += 1
            taken = 0
            async for event in store.subscribe(after=checkpoint, subject_id=subject, batch=50):
                checkpoint = event.checkpoint
                if event.event_id == end_marker.event_id:
                    assert sessions >= 3, "the subscriber should have resumed several times"
                    return
                seen.append(event)
                taken += 1
                if taken >= 300:
                    break  # stop and resume from the checkpoint, as a restarted process would

    tasks = [asyncio.create_task(writer(n)) for n in range(WRITERS)]
    late_task = asyncio.create_task(late_writer())
    reader = asyncio.create_task(naive_reader())
    follow = asyncio.create_task(subscriber())
    await asyncio.sleep(SECONDS)
    stop.set()
    await asyncio.gather(*tasks, late_task, reader)
    await store.append(f"noskip-end-{uuid.uuid4()}", [end_marker], 0)
    await asyncio.wait_for(follow, 30)
    await store.close()

    ids = [e.event_id for e in seen]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert set(ids) == set(appended), "an event was skipped"
    assert len(appended) > 500, "the writers should have produced a few thousand events"
    if group_commit:
        assert max(size for size, count in store.group.group_sizes.items() if count) > 1, "nothing was grouped"
    versions = defaultdict(list)
    for event in seen:
        versions[event.stream_id].append(event.version)
    assert all(v == sorted(v) and v == list(range(1, len(v) + 1)) for v in versions.values())
    # The hazard is real: the naive reader skipped the late event.
    assert late_committed.is_set()
    assert late.event_id not in naive_seen
    late_position = next(e.position for e in seen if e.event_id == late.event_id)
    assert any(e.position > late_position for e in seen if e.event_id != late.event_id)
