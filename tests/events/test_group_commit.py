"""Group commit (core/events/group_commit.py): appends made together share one commit, each
keeps its own check, chains hold, and a lost connection leaves every append of the group
``OutcomeUnknown`` (retrying with the same ids then records each once).

The contract suite (test_store_contract.py) runs every store behaviour with grouping on and off;
these are the properties only grouping has.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from alliance.core.errors import OutcomeUnknown
from alliance.core.events.codec import GENESIS_HASH
from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.events.verify import check_event
from tests.database import TEST_KEK
from tests.events.helpers import new_event, sample_codec
from tests.events.sample_events import Counted, NoteTaken


@pytest.fixture
async def grouped(app_pool, database):
    store = PostgresEventStore(app_pool, sample_codec(), PostgresKeyRing(app_pool, TEST_KEK),
                               dsn=database.app_dsn, group_commit=True)
    await store.listen()
    yield store
    await store.close()


async def _streams(store: PostgresEventStore, count: int, tenant: uuid.UUID, subject: uuid.UUID) -> list[str]:
    streams = [f"group-{uuid.uuid4()}" for _ in range(count)]
    for s in streams:  # personal text: the subject's data key is made now, and cached
        await store.append(s, [new_event(NoteTaken(number=0, text="first"), tenant=tenant, subject=subject)], 0)
    return streams


async def _chain_holds(conn: asyncpg.Connection, stream_id: str) -> bool:
    rows = await conn.fetch("SELECT *, tx_id::text::bigint AS tx FROM events WHERE stream_id = $1 ORDER BY version",
                            stream_id)
    prev = GENESIS_HASH
    for version, row in enumerate(rows, 1):
        if check_event(row, prev, version) is not None:
            return False
        prev = bytes(row["hash"])
    head = await conn.fetchrow("SELECT version, head_hash FROM streams WHERE stream_id = $1", stream_id)
    return (head["version"], bytes(head["head_hash"])) == (len(rows), prev)


async def test_appends_made_together_share_one_commit_and_their_chains_hold(grouped, app_pool):
    tenant, subject = uuid.uuid4(), uuid.uuid4()
    streams = await _streams(grouped, 8, tenant, subject)
    before = sum(grouped.group.group_sizes.values())
    # Personal text too: each event is sealed with the subject's key, in the group as alone.
    results = await asyncio.gather(*(
        grouped.append(s, [new_event(NoteTaken(number=i, text=f"in the group {i}"), tenant=tenant, subject=subject),
                           new_event(Counted(number=i), tenant=tenant, subject=subject)], 1)
        for i, s in enumerate(streams)))
    assert [r.version for r in results] == [3] * 8
    # The first found the store idle and went alone; the seven that came while it was in
    # flight were written by one statement: one transaction, one commit.
    assert sum(grouped.group.group_sizes.values()) - before == 2 and grouped.group.group_sizes[7] >= 1
    txs = [{c.split(".")[0] for c in (e.checkpoint for e in r.events)} for r in results]
    assert all(len(t) == 1 for t in txs), "one append's events were split"
    assert len({t.pop() for t in txs[1:]}) == 1
    async with app_pool.acquire() as conn:
        assert all([await _chain_holds(conn, s) for s in streams])
    for i, (s, r) in enumerate(zip(streams, results, strict=True)):
        read = await grouped.read_stream(s)
        assert read[1:] == list(r.events)
        assert read[1].payload.text == f"in the group {i}"


async def test_a_group_waits_for_no_timer_when_nothing_is_in_flight(grouped):
    tenant, subject = uuid.uuid4(), uuid.uuid4()
    [s] = await _streams(grouped, 1, tenant, subject)
    before = dict(grouped.group.group_sizes)
    for version in range(1, 6):
        await grouped.append(s, [new_event(Counted(number=version), tenant=tenant, subject=subject)], version)
    assert grouped.group.group_sizes[1] - before.get(1, 0) == 5
    assert sum(grouped.group.group_sizes.values()) - sum(before.values()) == 5


async def test_a_lost_connection_leaves_every_append_of_the_group_unknown(grouped, database):
    """The events table is locked by the owner, so the lone append and then the group block; each
    backend is terminated while it waits. Nothing was recorded, and retrying records each once."""
    tenant, subject = uuid.uuid4(), uuid.uuid4()
    streams = await _streams(grouped, 4, tenant, subject)
    events = [[new_event(Counted(number=1), tenant=tenant, subject=subject)] for _ in streams]
    owner = await asyncpg.connect(database.owner_dsn)
    killer = await asyncpg.connect(database.owner_dsn)
    try:
        lock = owner.transaction()
        await lock.start()
        await owner.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        appends = [asyncio.create_task(grouped.append(s, e, 1)) for s, e in zip(streams, events, strict=True)]
        for statement in ("%WITH head AS%", "%WITH RECURSIVE%"):  # the lone append's, then the group's
            for _ in range(500):
                pid = await killer.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = "
                    "'Lock' AND query LIKE $1", statement)
                if pid is not None:
                    break
                await asyncio.sleep(0.01)
            assert pid is not None, f"no append blocked on {statement}"
            await killer.execute("SELECT pg_terminate_backend($1)", pid)
        answers = await asyncio.gather(*appends, return_exceptions=True)
        await lock.rollback()
    finally:
        await owner.close()
        await killer.close()
    assert all(isinstance(a, OutcomeUnknown) for a in answers), answers
    assert [len(await grouped.read_stream(s)) for s in streams] == [1, 1, 1, 1]
    retried = await asyncio.gather(*(grouped.append(s, e, 1) for s, e in zip(streams, events, strict=True)))
    assert [r.version for r in retried] == [2, 2, 2, 2] and not any(r.duplicate for r in retried)
    again = await asyncio.gather(*(grouped.append(s, e, 1) for s, e in zip(streams, events, strict=True)))
    assert all(r.duplicate for r in again)


async def test_an_append_the_group_passes_over_is_refused_with_one_more_statement(grouped, monkeypatch):
    """Given eight appends made together, one of them a version behind its stream, then the other
    seven commit in the group and the eighth is refused with the stream's actual version, by the
    one statement that sorts every case out (``append_events``): the group already found its head
    elsewhere. Seen in bench_api's writes phase: such an append tried the common-case statement
    first (it cannot succeed), and each extra statement of a conflict waited its turn behind 50
    requests, so 2% of POSTs (those that conflicted) made the p99."""
    from alliance.core.errors import ConcurrencyConflict

    tenant, subject = uuid.uuid4(), uuid.uuid4()
    streams = await _streams(grouped, 8, tenant, subject)
    await grouped.append(streams[3], [new_event(Counted(number=0), tenant=tenant, subject=subject)], 1)
    sent: list[str] = []
    fetch = asyncpg.Connection.fetch

    async def counting(self: asyncpg.Connection, query: str, *args: object, **kwargs: object) -> object:
        sent.append(" ".join(query.split())[:40])
        return await fetch(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "fetch", counting)
    results = await asyncio.gather(*(
        grouped.append(s, [new_event(Counted(number=i), tenant=tenant, subject=subject)], 1)
        for i, s in enumerate(streams)), return_exceptions=True)
    refused = results[3]
    assert isinstance(refused, ConcurrencyConflict) and refused.actual == 2
    assert [r.version for i, r in enumerate(results) if i != 3] == [2] * 7  # type: ignore[union-attr]
    # The first went alone (the common case, one statement); the group took the next seven in
    # one statement; the one it passed over took one more: append_events, refusing it.
    assert sorted(sent) == sorted(s[:40] for s in ("WITH head AS ( SELECT s.head_hash FROM streams",
                                                   "WITH RECURSIVE items AS ( SELECT i.g, i.sid",
                                                   "SELECT r_position, r_tx, r_recorded_at, r_hash")), sent
