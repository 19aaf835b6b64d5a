"""A write decides on the cached state without reading the stream first (issue 18: one round
trip fewer per measurement POST), and every guarantee still holds.

Each process learns of every append: its own at once, another's from the NOTIFY payload (the
streams and versions of a burst), and drops cached states that fell behind. That is only a
hint: a state a few milliseconds behind (the notification not yet in) is caught by the
append's expected version, and a refusal or no-op is never answered on a cached state. Two
stores on their own pools stand for two worker processes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from alliance.core.catalog import ALL_EVENT_TYPES
from alliance.core.client import (
    GrantConsent,
    MeasurementRecorded,
    client_stream,
    evolve_client,
    initial_client_state,
)
from alliance.core.consent import ConsentScope
from alliance.core.database import create_app_pool
from alliance.core.events.codec import EventCodec
from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import (
    NOTIFY_PAYLOAD_BYTES,
    PostgresEventStore,
    notify_payloads,
    streams_of_payload,
)
from alliance.core.handling import CommandHandler, load
from tests.database import TEST_KEK
from tests.domain.test_handling import SCORER, World, setup_world


def test_a_burst_is_named_in_payloads_postgres_accepts_and_read_back_whole():
    streams = {f"client-{uuid.uuid4()}": n for n in range(1, 400)}
    payloads = notify_payloads(streams)
    assert len(payloads) > 1
    assert all(0 < len(p.encode()) <= NOTIFY_PAYLOAD_BYTES for p in payloads)
    back: dict[str, int] = {}
    for p in payloads:
        part = streams_of_payload(p)
        assert part is not None
        back.update(part)
    assert back == streams
    assert notify_payloads({}) == [""]
    # An empty or unreadable payload (an older process, say) means anything may have moved.
    assert streams_of_payload("") is None
    assert streams_of_payload("not json") is None


@pytest.fixture
async def two_workers(database: Any) -> AsyncIterator[tuple[PostgresEventStore, PostgresEventStore]]:
    stores, pools = [], []
    for grouped in (True, False):
        pool = await create_app_pool(database.app_dsn, min_size=1, max_size=4)
        store = PostgresEventStore(pool, EventCodec(ALL_EVENT_TYPES), PostgresKeyRing(pool, TEST_KEK),
                                   dsn=database.app_dsn, group_commit=grouped)
        await store.listen()
        stores.append(store)
        pools.append(pool)
    try:
        yield stores[0], stores[1]
    finally:
        for store, pool in zip(stores, pools, strict=True):
            await store.close()
            await pool.close()


async def _until(predicate: Any, seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return bool(predicate())


async def test_another_workers_append_drops_the_cached_state_it_left_behind(two_workers):
    """Given a worker holding a client's state, when another worker appends to that client,
    then the first no longer trusts its copy (the next write reads first)."""
    a, b = two_workers
    w = await setup_world(a)
    stream = client_stream(w.client_id)
    here = w.handler.trusted_client(w.client_id)
    assert here is not None
    other = CommandHandler(b, scorer=SCORER)
    recorded = await other.handle_client(w.client_id, w.measurement(at=w.tick()))
    assert recorded.version == here.version + 1
    assert await _until(lambda: w.handler.trusted(stream) is None)
    # Its own append does not drop what it has just folded: the next write needs no read.
    mine = await w.handler.handle_client(w.client_id, w.measurement(at=w.tick()))
    trusted = w.handler.trusted(stream)
    assert trusted is not None and trusted.version == mine.version == recorded.version + 1


async def test_a_state_left_behind_is_caught_up_by_reading_only_the_newer_events(two_workers):
    """Given a worker whose cached state another worker's append overtook, when it writes to
    that client next, then it reads only the events after its copy and folds them on (seen:
    the copy was dropped, so every write after another worker's read the whole stream again,
    decrypting it all: 10% of a measurement POST's CPU in bench_api's writes phase)."""
    a, b = two_workers
    w = await setup_world(a)
    stream = client_stream(w.client_id)
    here = w.handler.cache.get(stream)
    assert here is not None and here.version > 3
    theirs = await CommandHandler(b, scorer=SCORER).handle_client(w.client_id, w.measurement(at=w.tick()))
    assert await _until(lambda: w.handler.trusted(stream) is None)
    reads: list[tuple[str, int]] = []
    original = a.read_stream

    async def counting(stream_id: str, *, from_version: int = 1, **kwargs: Any) -> Any:
        reads.append((stream_id, from_version))
        return await original(stream_id, from_version=from_version, **kwargs)

    a.read_stream = counting  # type: ignore[method-assign]
    try:
        mine = await w.handler.handle_client(w.client_id, w.measurement(at=w.tick()))
    finally:
        del a.read_stream
    assert reads == [(stream, here.version + 1)]
    assert mine.version == theirs.version + 1
    folded = w.handler.trusted(stream)
    assert folded is not None and folded.version == mine.version
    # The folded state is the one a full read gives.
    full = await load(a, stream, initial_client_state(w.client_id), evolve_client)
    assert (folded.version, folded.state) == (full.version, full.state)


async def test_a_measurement_decided_on_a_state_left_behind_is_recorded_once_after_the_current_one(two_workers):
    """Given a cached state one version behind (the other worker's notification not yet in),
    when a measurement is decided on it, then the append's expected version refuses it, the
    handler reads and decides again, and the measurement follows the other one."""
    a, b = two_workers
    w = await setup_world(a)
    stream = client_stream(w.client_id)
    behind = w.handler.cache.get(stream)
    assert behind is not None
    theirs = await CommandHandler(b, scorer=SCORER).handle_client(w.client_id, w.measurement(at=w.tick()))
    await _until(lambda: w.handler.trusted(stream) is None)
    w.handler.cache.put(behind)  # as if the notification were still on its way
    command = w.measurement(at=w.tick())
    looked_up: list[Any] = []
    original = a.read_event

    async def read_event(event_id: Any) -> Any:
        looked_up.append(event_id)
        return await original(event_id)

    a.read_event = read_event  # type: ignore[method-assign]
    try:
        outcome = await w.handler.handle_client(w.client_id, command, just_loaded=True)
    finally:
        del a.read_event
    assert outcome.version == theirs.version + 1 and not outcome.duplicate
    # The conflict alone says the command was not recorded (the store answers a recorded retry as a
    # duplicate first): nobody looks its events up (seen: one read more per conflicting POST).
    assert looked_up == []
    events = await a.read_stream(stream)
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    assert [e.causation_id for e in events[-2:]] == [theirs.events[0].causation_id, command.command_id]
    assert sum(isinstance(e.payload, MeasurementRecorded) for e in events) == 2


async def test_a_refusal_is_never_answered_on_a_cached_state(two_workers):
    """Given a worker whose cached state predates the client's consent to measurement (granted
    through the other worker a moment ago), when the client records a measurement there,
    then it is recorded: the refusal the cached state implies is decided again on a read."""
    a, b = two_workers
    w: World = await setup_world(a, scopes=(ConsentScope.GOAL_SETTING,))
    stream = client_stream(w.client_id)
    behind = w.handler.cache.get(stream)
    assert behind is not None
    await CommandHandler(b, scorer=SCORER).handle_client(w.client_id, w.cmd(
        GrantConsent, w.client, scope=ConsentScope.MEASUREMENT, text_version="v1", mode="self"))
    await _until(lambda: w.handler.trusted(stream) is None)
    w.handler.cache.put(behind)
    outcome = await w.handler.handle_client(w.client_id, w.measurement(at=w.tick()), just_loaded=True)
    assert any(isinstance(e.payload, MeasurementRecorded) for e in outcome.events)
    assert outcome.version == behind.version + 2


async def test_nothing_is_trusted_while_the_store_is_not_listening(database, two_workers):
    a, _ = two_workers
    w = await setup_world(a)
    assert w.handler.trusted_client(w.client_id) is not None
    await a.close()  # not listening: another worker's appends would go unseen
    assert w.handler.trusted_client(w.client_id) is None


async def test_a_grouped_burst_leaves_the_copies_of_streams_it_did_not_touch(two_workers):
    """Given two workers each holding a client's state, when one writes a burst that its store
    groups into shared commits, then the other still trusts its copy of its own client: a
    group's wake-up never goes out without the streams it moved (seen: an empty payload, which
    means "anything may have moved", emptied every cache at each group; 0.7 reads per POST)."""
    a, b = two_workers
    assert a.group is not None
    worlds = [await setup_world(a) for _ in range(8)]
    handler = worlds[0].handler
    for w in worlds[1:]:
        w.handler = handler  # one worker's handler, so the burst shares its store's group
    theirs = await setup_world(b)
    groups_before = sum(n for size, n in a.group.group_sizes.items() if size > 1)
    for _ in range(3):
        await asyncio.gather(*(handler.handle_client(w.client_id, w.measurement(at=w.tick()))
                               for w in worlds))
    assert sum(n for size, n in a.group.group_sizes.items() if size > 1) > groups_before
    mine = handler.trusted_client(worlds[0].client_id)
    assert mine is not None and mine.version == (await a.stream_version(client_stream(worlds[0].client_id)))
    await asyncio.sleep(0.3)  # every NOTIFY of the burst has reached the other worker
    assert theirs.handler.trusted_client(theirs.client_id) is not None


async def test_a_handler_that_goes_away_takes_its_append_listener_with_it(two_workers) -> None:
    """Each handler registers its cache with the store; held strongly, every handler ever made
    (tests make hundreds) would be called on every NOTIFY for the life of the store."""
    import gc

    store, _ = two_workers
    called: list[Any] = []
    store.on_streams_appended(called.append)  # a plain callable is held as given
    before = len(store._append_listeners)
    handlers = [CommandHandler(store, scorer=SCORER) for _ in range(5)]
    assert len(store._append_listeners) == before + 5
    del handlers
    gc.collect()
    store._tell_appended({"client-x": 1})
    assert len(store._append_listeners) == before
    assert called == [{"client-x": 1}]
    kept = CommandHandler(store, scorer=SCORER)  # still referenced: its listener stays
    gc.collect()
    store._tell_appended(None)
    assert len(store._append_listeners) == before + 1 and called[-1] is None
    assert kept.cache is not None
