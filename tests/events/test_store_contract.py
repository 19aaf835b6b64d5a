"""The store contract: one suite, run against every implementation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from alliance.core.errors import ConcurrencyConflict, EventDecodeError, ValidationError
from alliance.core.events.base import ERASED
from alliance.core.events.crypto import MemoryKeyRing, PostgresKeyRing
from alliance.core.events.memory import MemoryEventStore
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.events.store import START, StreamAppend
from tests.events.helpers import new_event, read_all_settled, sample_codec
from tests.events.sample_events import Counted, NoteTaken, Renamed


@pytest.fixture(params=["memory", "postgres", "postgres-grouped"])
async def store(request, app_pool, database) -> AsyncIterator:
    codec = sample_codec()
    if request.param == "memory":
        yield MemoryEventStore(codec, MemoryKeyRing())
    else:
        pg = PostgresEventStore(app_pool, codec, PostgresKeyRing(app_pool, bytes(range(32))),
                                dsn=database.app_dsn, group_commit=request.param == "postgres-grouped")
        yield pg
        await pg.close()


@pytest.fixture
def ids():
    return uuid.uuid4(), uuid.uuid4()  # tenant, subject


def stream() -> str:
    return f"test-{uuid.uuid4()}"


async def test_append_then_read_back_in_order(store, ids):
    tenant, subject = ids
    s = stream()
    events = [new_event(Counted(number=i), tenant=tenant, subject=subject) for i in range(3)]
    result = await store.append(s, events, 0)
    assert result.version == 3 and len(result.positions) == 3 and not result.duplicate
    read = await store.read_stream(s)
    assert [e.payload.number for e in read] == [0, 1, 2]
    assert [e.version for e in read] == [1, 2, 3]
    assert [e.event_id for e in read] == [e.event_id for e in events]
    assert read[0].recorded_at.tzinfo is not None and read[0].tenant_id == tenant
    assert await store.stream_version(s) == 3
    assert [e.version for e in await store.read_stream(s, from_version=2, to_version=2)] == [2]


async def test_append_answers_the_events_as_read_back(store, ids):
    """What an append answers is exactly what reading the stream gives (personal fields included)."""
    tenant, subject = ids
    s = stream()
    note = NoteTaken(number=7, text="I want to walk my dog", remark="plain", tags=("dog",), answers={"why": "air"})
    one = await store.append(s, [new_event(note, tenant=tenant, subject=subject)], 0)
    two = await store.append(s, [new_event(Counted(number=1), tenant=tenant, subject=subject)], 1)
    three = await store.append(s, [new_event(Counted(number=i), tenant=tenant, subject=subject) for i in range(2)], 2)
    many = await store.append_many([StreamAppend(stream_id=s, expected_version=4, events=[
        new_event(Counted(number=9), tenant=tenant, subject=subject)])])
    answered = [*one.events, *two.events, *three.events, *many[0].events]
    assert answered == await store.read_stream(s)
    assert [e.checkpoint for e in answered] == [e.checkpoint for e in await store.read_stream(s)]
    first = new_event(Counted(number=5), tenant=tenant, subject=subject)
    assert len((await store.append(s, [first], 5)).events) == 1
    retried = await store.append(s, [first], 5)
    assert retried.duplicate and retried.events == ()  # a retry records (and answers) nothing new


async def test_conflict_carries_actual_version_and_writes_nothing(store, ids):
    tenant, subject = ids
    s = stream()
    await store.append(s, [new_event(Counted(number=1), tenant=tenant, subject=subject)], 0)
    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append(s, [new_event(Counted(number=2), tenant=tenant, subject=subject) for _ in range(2)], 0)
    assert caught.value.actual == 1 and caught.value.expected == 0
    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append(s, [new_event(Counted(number=2), tenant=tenant, subject=subject)], 5)
    assert caught.value.actual == 1
    assert len(await store.read_stream(s)) == 1


async def test_concurrent_appends_keep_each_its_own_check(store, ids):
    """Appends made at once (grouped into one commit where the store groups) are judged one by one:
    the one that expected the wrong version is refused alone, with the actual version."""
    tenant, subject = ids
    streams = [stream() for _ in range(8)]
    for s in streams:
        await store.append(s, [new_event(Counted(number=0), tenant=tenant, subject=subject)], 0)
    expected = [1] * 8
    expected[5] = 4  # wrong: that stream is at 1
    answers = await asyncio.gather(*(
        store.append(s, [new_event(Counted(number=1), tenant=tenant, subject=subject)], v)
        for s, v in zip(streams, expected, strict=True)), return_exceptions=True)
    refused = answers.pop(5)
    assert isinstance(refused, ConcurrencyConflict) and refused.actual == 1 and refused.expected == 4
    assert [a.version for a in answers] == [2] * 7
    assert [len(await store.read_stream(s)) for s in streams] == [2, 2, 2, 2, 2, 1, 2, 2]
    again = await store.read_stream(streams[0])
    assert again[1].hash == answers[0].events[0].hash and again[1].position == answers[0].positions[0]


async def test_concurrent_appends_keep_each_appends_events_together(store, ids):
    """Several events of one append (one command's: a measurement and its flag) are never split,
    and a retry of a recorded append made alongside new ones is answered as a duplicate."""
    tenant, subject = ids
    streams = [stream() for _ in range(6)]
    firsts = [[new_event(Counted(number=0), tenant=tenant, subject=subject)] for _ in streams]
    for s, events in zip(streams, firsts, strict=True):
        await store.append(s, events, 0)
    batches = [[new_event(Counted(number=i), tenant=tenant, subject=subject) for i in range(1, 4)]
               for _ in streams]
    calls = [store.append(s, b, 1) for s, b in zip(streams, batches, strict=True)]
    calls.append(store.append(streams[0], firsts[0], 0))  # a retry, in the same burst
    *results, retry = await asyncio.gather(*calls)
    assert retry.duplicate
    for s, result, batch in zip(streams, results, batches, strict=True):
        assert result.version == 4 and not result.duplicate
        read = await store.read_stream(s)
        assert [e.event_id for e in read[1:]] == [e.event_id for e in batch]
        assert [e.position for e in read] == sorted(e.position for e in read)


async def test_same_event_ids_are_recorded_once(store, ids):
    tenant, subject = ids
    s = stream()
    events = [new_event(Counted(number=i), tenant=tenant, subject=subject) for i in range(2)]
    first = await store.append(s, events, 0)
    again = await store.append(s, events, 0)
    assert again.duplicate and again.positions == first.positions
    assert len(await store.read_stream(s)) == 2


async def test_event_id_reused_for_other_stream_is_refused(store, ids):
    tenant, subject = ids
    event = new_event(Counted(number=1), tenant=tenant, subject=subject)
    await store.append(stream(), [event], 0)
    with pytest.raises(ValidationError) as caught:
        await store.append(stream(), [event], 0)
    assert caught.value.code == "event_id_reused"


async def test_multi_stream_append_is_all_or_nothing(store, ids):
    tenant, subject = ids
    a, b = stream(), stream()
    await store.append(b, [new_event(Counted(number=1), tenant=tenant, subject=subject)], 0)
    with pytest.raises(ConcurrencyConflict):
        await store.append_many([
            StreamAppend(stream_id=a, expected_version=0,
                         events=[new_event(Counted(number=2), tenant=tenant, subject=subject)]),
            StreamAppend(stream_id=b, expected_version=0,  # wrong: b is at 1
                         events=[new_event(Counted(number=3), tenant=tenant, subject=subject)]),
        ])
    assert await store.read_stream(a) == [] and len(await store.read_stream(b)) == 1
    results = await store.append_many([
        StreamAppend(stream_id=a, expected_version=0,
                     events=[new_event(Counted(number=2), tenant=tenant, subject=subject)]),
        StreamAppend(stream_id=b, expected_version=1),  # assertion only
    ])
    assert [r.version for r in results] == [1, 1]
    assert len(await store.read_stream(a)) == 1 and len(await store.read_stream(b)) == 1


@pytest.mark.parametrize(("stream_id", "expected", "code"), [
    ("", 0, "invalid_stream_id"), ("   ", 0, "invalid_stream_id"), ("x" * 201, 0, "invalid_stream_id"),
    ("ok", -1, "invalid_expected_version"), ("ok", True, "invalid_expected_version"),
])
async def test_bad_append_arguments_name_the_field(store, ids, stream_id, expected, code):
    tenant, subject = ids
    with pytest.raises(ValidationError) as caught:
        await store.append(stream_id, [new_event(Counted(number=1), tenant=tenant, subject=subject)], expected)
    assert caught.value.code == code and caught.value.field in {"stream_id", "expected_version"}


async def test_event_not_matching_its_schema_is_refused_before_writing(store, ids):
    tenant, subject = ids
    s = stream()
    with pytest.raises(ValidationError) as caught:
        await store.append(s, [new_event(Counted(number=1), tenant=tenant, subject=subject),
                               new_event(Counted(number=-5), tenant=tenant, subject=subject)], 0)
    assert caught.value.code == "invalid_event" and caught.value.field == "number"
    assert await store.stream_version(s) == 0


async def test_unknown_event_type_is_refused(store, ids):
    from alliance.core.events.base import EventPayload

    class Stranger(EventPayload, tag="test.stranger"):
        x: int = 1

    tenant, subject = ids
    with pytest.raises(ValidationError) as caught:
        await store.append(stream(), [new_event(Stranger(), tenant=tenant, subject=subject)], 0)
    assert caught.value.code == "unknown_event_type"


async def test_personal_fields_round_trip_and_read_as_erased_after_key_destroyed(store, ids):
    tenant, subject = ids
    s = stream()
    note = NoteTaken(number=7, text="I want to walk my dog", remark="plain", tags=("dog", "walks"),
                     answers={"why": "to feel alive"})
    await store.append(s, [new_event(note, tenant=tenant, subject=subject)], 0)
    [read] = await store.read_stream(s)
    assert read.payload == note and read.key_id is not None
    assert await store.keys.destroy(subject)
    store.keys.forget(subject)
    [erased] = await store.read_stream(s)
    assert erased.payload.number == 7  # structure stays
    assert erased.payload.text == ERASED and erased.payload.remark == ERASED
    assert erased.payload.tags == () and erased.payload.answers == {}


async def test_read_all_is_global_order_and_filters(store):
    tenant_a, tenant_b, subject = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    start = await store.head()
    s1, s2 = stream(), stream()
    await store.append(s1, [new_event(Counted(number=1), tenant=tenant_a, subject=subject)], 0)
    await store.append(s2, [new_event(Counted(number=2), tenant=tenant_b, subject=subject)], 0)
    await store.append(s1, [new_event(Counted(number=3), tenant=tenant_a, subject=subject)], 1)
    by_subject = await read_all_settled(store, 3, after=start, subject_id=subject)
    assert [e.payload.number for e in by_subject] == [1, 2, 3]
    everything = await store.read_all(after=start, limit=10_000)
    numbered = [e.payload.number for e in everything if e.subject_id == subject]
    assert numbered == [1, 2, 3]
    only_a = await store.read_all(after=start, tenant_id=tenant_a)
    assert [e.payload.number for e in only_a] == [1, 3]
    page = await store.read_all(after=start, limit=1, subject_id=subject)
    rest = await store.read_all(after=page[0].checkpoint, subject_id=subject)
    assert [e.payload.number for e in page + rest] == [1, 2, 3]
    with pytest.raises(ValidationError):
        await store.read_all(after="not-a-checkpoint")


async def test_read_subject_is_one_subjects_events_in_global_order(store):
    tenant_a, tenant_b, subject, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    s1, s2 = stream(), stream()
    await store.append(s1, [new_event(Counted(number=1), tenant=tenant_a, subject=subject)], 0)
    await store.append(s2, [new_event(Counted(number=2), tenant=tenant_b, subject=subject)], 0)
    await store.append(stream(), [new_event(Counted(number=9), tenant=tenant_a, subject=other)], 0)
    third = await store.append(s1, [new_event(Counted(number=3), tenant=tenant_a, subject=subject)], 1)
    assert [e.payload.number for e in await store.read_subject(subject)] == [1, 2, 3]
    assert [e.payload.number for e in await store.read_subject(subject, tenant_id=tenant_a)] == [1, 3]
    read = await store.read_subject(subject)
    assert [e.payload.number for e in await store.read_subject(subject, until=read[1].checkpoint)] == [1, 2]
    bounded = await store.read_subject(subject, recorded_until=read[0].recorded_at)
    assert bounded[0].payload.number == 1 and all(e.recorded_at <= read[0].recorded_at for e in bounded)
    assert len(bounded) == sum(e.recorded_at <= read[0].recorded_at for e in read)
    assert read[-1].checkpoint == third.events[0].checkpoint


async def test_read_subject_is_not_held_back_by_the_read_horizon(app_pool, database):
    """A one-off read of what is committed: a long transaction elsewhere hides nothing from it
    (``read_all``, a cursor that must never skip, waits for that transaction to end)."""
    import asyncpg

    pg = PostgresEventStore(app_pool, sample_codec(), PostgresKeyRing(app_pool, bytes(range(32))),
                            dsn=database.app_dsn)
    tenant, subject = uuid.uuid4(), uuid.uuid4()
    other = await asyncpg.connect(database.app_dsn)
    try:
        await pg.append(stream(), [new_event(Counted(number=1), tenant=tenant, subject=subject)], 0)
        long = other.transaction()
        await long.start()
        await other.fetchval("SELECT pg_current_xact_id()")  # holds an xid: the horizon stops here
        await pg.append(stream(), [new_event(Counted(number=2), tenant=tenant, subject=subject)], 0)
        assert [e.payload.number for e in await pg.read_all(subject_id=subject)] == [1]
        assert [e.payload.number for e in await pg.read_subject(subject)] == [1, 2]
        await long.rollback()
        assert [e.payload.number for e in await pg.read_all(subject_id=subject)] == [1, 2]
    finally:
        await other.close()
        await pg.close()


async def test_subscribe_catches_up_then_follows_live(store, ids):
    tenant, subject = ids
    s = stream()
    await store.append(s, [new_event(Counted(number=1), tenant=tenant, subject=subject)], 0)
    seen: list[int] = []

    async def follow() -> None:
        async for event in store.subscribe(after=START, subject_id=subject):
            seen.append(event.payload.number)
            if len(seen) == 3:
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    await store.append(s, [new_event(Counted(number=2), tenant=tenant, subject=subject)], 1)
    await store.append(s, [new_event(Counted(number=3), tenant=tenant, subject=subject)], 2)
    await asyncio.wait_for(task, 5)
    assert seen == [1, 2, 3]


async def test_upcasters_apply_on_read(store, ids, app_pool):
    # Write a v1 document as an old version of the code would have, then read it as v2.
    tenant, subject = ids
    s = stream()
    codec = store.codec
    original = codec.encode
    from alliance.core.events.codec import EncodedPayload

    def old_encode(payload):
        if isinstance(payload, Renamed):
            return EncodedPayload("test.renamed", 1, b'{"type":"test.renamed","name":"Walk daily"}', None)
        return original(payload)

    codec.encode = old_encode
    try:
        await store.append(s, [new_event(Renamed(title="ignored"), tenant=tenant, subject=subject)], 0)
    finally:
        codec.encode = original
    [event] = await store.read_stream(s)
    assert event.schema_version == 1 and event.payload == Renamed(title="Walk daily", lang="en")


async def test_unknown_type_on_read_names_position_and_type(store, ids):
    tenant, subject = ids
    s = stream()
    await store.append(s, [new_event(Counted(number=1), tenant=tenant, subject=subject)], 0)
    store.codec.types.pop("test.counted")
    try:
        with pytest.raises(EventDecodeError) as caught:
            await store.read_stream(s)
    finally:
        store.codec.types["test.counted"] = Counted
    assert caught.value.type_name == "test.counted" and caught.value.position >= 1
    assert "test.counted" in str(caught.value)
