"""The view cache: what it keeps, what drops it (changes, clinic changes, rebuilds, a lost LISTEN
connection, age), and that a read racing a change never stores the older result."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from alliance.core.clinic import CrisisInformationSet, clinic_stream
from alliance.core.events.envelope import NewEvent
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.identity import Role
from alliance.core.projections.feed import ChangeFeed
from alliance.core.projections.rebuild import rebuild
from alliance.core.projections.view_cache import ViewCache
from tests.projections.conftest import wait_projected
from tests.projections.helpers import Client


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def listening_cache(max_age: float = 10.0, size: int = 100) -> tuple[ViewCache[str], Clock]:
    clock = Clock()
    cache: ViewCache[str] = ViewCache(max_age=max_age, size=size, clock=clock)
    cache.listening(True)
    return cache, clock


A, B, T = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def test_keeps_a_view_per_view_client_and_tenant() -> None:
    cache, _ = listening_cache()
    assert cache.put("plan", A, T, "plan of A", fetched_at=cache.generation)
    assert cache.get("plan", A, T) == "plan of A"
    assert cache.get("progress", A, T) is None
    assert cache.get("plan", A, uuid.uuid4()) is None
    assert cache.get("plan", B, T) is None
    assert (cache.hits, cache.misses) == (1, 3)


def test_nothing_is_kept_or_served_while_not_listening_or_disabled() -> None:
    clock = Clock()
    cache: ViewCache[str] = ViewCache(max_age=10.0, clock=clock)
    assert not cache.put("plan", A, T, "v", fetched_at=cache.generation)  # never listened
    cache.listening(True)
    assert cache.put("plan", A, T, "v", fetched_at=cache.generation)
    cache.listening(False)  # connection lost: everything held goes
    assert cache.get("plan", A, T) is None and len(cache) == 0
    off: ViewCache[str] = ViewCache(max_age=0, clock=clock)
    off.listening(True)
    assert not off.put("plan", A, T, "v", fetched_at=off.generation)


def test_a_fetch_started_before_listening_resumed_is_not_kept() -> None:
    cache, _ = listening_cache()
    cache.listening(False)
    started = cache.generation  # fetched while no change could be heard
    cache.listening(True)
    assert not cache.put("plan", A, T, "maybe stale", fetched_at=started)
    assert cache.put("plan", A, T, "fresh", fetched_at=cache.generation)


def test_a_change_drops_only_that_clients_views() -> None:
    cache, _ = listening_cache()
    for view in ("plan", "progress"):
        cache.put(view, A, T, f"{view} A", fetched_at=cache.generation)
        cache.put(view, B, T, f"{view} B", fetched_at=cache.generation)
    cache.invalidate([A])
    assert cache.get("plan", A, T) is None and cache.get("progress", A, T) is None
    assert cache.get("plan", B, T) == "plan B" and cache.get("progress", B, T) == "progress B"


def test_a_read_racing_a_change_never_stores_the_older_result() -> None:
    cache, _ = listening_cache()
    started = cache.generation  # the read begins...
    cache.invalidate([A])  # ...a change of A is announced while it is in flight...
    assert not cache.put("plan", A, T, "older", fetched_at=started)  # ...so its result is not kept
    assert cache.put("plan", B, T, "B did not change", fetched_at=started)
    assert cache.put("plan", A, T, "newer", fetched_at=cache.generation)  # a read begun after it is
    assert cache.get("plan", A, T) == "newer"


def test_a_full_clear_refuses_every_read_begun_before_it() -> None:
    cache, _ = listening_cache()
    started = cache.generation
    cache.clear()
    assert not cache.put("plan", B, T, "older", fetched_at=started)
    assert cache.put("plan", B, T, "newer", fetched_at=cache.generation)


def test_forgotten_change_records_make_older_reads_refused_for_everyone() -> None:
    cache, _ = listening_cache(size=3)
    started = cache.generation
    cache.invalidate([A])
    for _ in range(3):  # three more clients change: A's record is forgotten
        cache.invalidate([uuid.uuid4()])
    assert not cache.put("plan", A, T, "older than A's change", fetched_at=started)
    assert not cache.put("plan", B, T, "refused too: whom the forgotten change concerned is unknown",
                         fetched_at=started)
    assert cache.put("plan", A, T, "newer", fetched_at=cache.generation)


def test_an_entry_is_never_served_past_its_age() -> None:
    cache, clock = listening_cache(max_age=2.0)
    cache.put("plan", A, T, "v", fetched_at=cache.generation)
    clock.now = 2.0
    assert cache.get("plan", A, T) == "v"
    clock.now = 2.01
    assert cache.get("plan", A, T) is None


def test_holds_at_most_size_clients_least_recently_read_go_first() -> None:
    cache, _ = listening_cache(size=2)
    c1, c2, c3 = (uuid.uuid4() for _ in range(3))
    cache.put("plan", c1, T, "1", fetched_at=cache.generation)
    cache.put("plan", c2, T, "2", fetched_at=cache.generation)
    assert cache.get("plan", c1, T) == "1"  # c2 is now the least recently read
    cache.put("plan", c3, T, "3", fetched_at=cache.generation)
    assert cache.get("plan", c2, T) is None
    assert cache.get("plan", c1, T) == "1" and cache.get("plan", c3, T) == "3"


def test_held_views_are_bounded_by_weight_too_least_recently_read_going_first() -> None:
    clock = Clock()
    cache: ViewCache[str] = ViewCache(max_age=10.0, max_weight=10, weigh=len, clock=clock)
    cache.listening(True)
    c1, c2, c3 = (uuid.uuid4() for _ in range(3))
    assert cache.put("plan", c1, T, "aaaa", fetched_at=cache.generation)
    assert cache.put("plan", c2, T, "bbbb", fetched_at=cache.generation)
    assert cache.get("plan", c1, T) == "aaaa"  # c2 is now the least recently read
    assert cache.put("plan", c3, T, "cccc", fetched_at=cache.generation)  # 12 > 10: c2 goes
    assert cache.get("plan", c2, T) is None and cache.weight == 8
    assert cache.put("plan", c1, T, "a", fetched_at=cache.generation)  # replacing re-weighs
    assert cache.weight == 5
    assert not cache.put("plan", c2, T, "x" * 11, fetched_at=cache.generation)  # never fits: not kept
    cache.invalidate([c1])
    assert cache.weight == 4 and len(cache) == 1


# --- with the change feed on PostgreSQL ----------------------------------------------------------

@pytest.fixture
async def listening(app_pool: asyncpg.Pool, database, store: PostgresEventStore  # type: ignore[no-untyped-def]
                    ) -> AsyncIterator[tuple[ViewCache[str], ChangeFeed]]:
    views: ViewCache[str] = ViewCache(max_age=60.0)
    feed = ChangeFeed(app_pool, dsn=database.app_dsn, keys=store.keys, views=views, probe_interval=0.2)
    feed.start()
    await until(lambda: views.enabled)
    try:
        yield views, feed
    finally:
        await feed.close()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> float:  # noqa: ASYNC109
    """Seconds until ``condition()`` held (fails the test after ``timeout``)."""
    start = asyncio.get_running_loop().time()
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (a condition on plain state, polled)
            await asyncio.sleep(0.01)
    return asyncio.get_running_loop().time() - start


def hold(views: ViewCache[str], *clients: uuid.UUID) -> None:
    for client in clients:
        assert views.put("progress", client, None, f"held {client}", fetched_at=views.generation)


async def test_a_projected_change_drops_the_clients_views_at_once(
        store: PostgresEventStore, app_pool: asyncpg.Pool, listening, runners) -> None:  # type: ignore[no-untyped-def]
    views, _ = listening
    changed, other = Client().enrol(), Client().enrol()
    await wait_projected(app_pool, await changed.flush(store))
    await wait_projected(app_pool, await other.flush(store))
    hold(views, changed.client, other.client)
    changed.measure(12)
    await changed.flush(store)
    took = await until(lambda: views.get("progress", changed.client, None) is None)
    assert took < 5.0  # announced by the runner, not aged out (max_age is 60 s)
    assert views.get("progress", other.client, None) == f"held {other.client}"


async def test_a_clinic_change_drops_every_held_view(store: PostgresEventStore, app_pool: asyncpg.Pool, listening,
                                                     runners) -> None:  # type: ignore[no-untyped-def]
    views, _ = listening
    c = Client().enrol()
    await wait_projected(app_pool, await c.flush(store))
    hold(views, c.client, uuid.uuid4())
    tenant, admin = c.tenant, uuid.uuid4()
    result = await store.append(clinic_stream(tenant), [NewEvent(
        event_id=uuid.uuid4(), payload=CrisisInformationSet(tenant_id=tenant, text="Call the clinic line",
                                                            by=admin, by_role=Role.ADMIN),
        tenant_id=tenant, subject_id=tenant, actor_id=admin, actor_role=Role.ADMIN,
        occurred_at=datetime.now(UTC))], 0)
    await wait_projected(app_pool, result.checkpoint)
    await until(lambda: len(views) == 0)


async def test_a_rebuild_switch_drops_every_held_view(store: PostgresEventStore, app_pool: asyncpg.Pool, database,
                                                      listening) -> None:  # type: ignore[no-untyped-def]
    views, _ = listening
    c = Client().enrol()
    await c.flush(store)
    hold(views, c.client, uuid.uuid4())  # a client without changes: only the switch drops it
    await rebuild(app_pool, store, names=["progress"], dsn=database.app_dsn)
    await until(lambda: len(views) == 0)


async def test_a_lost_listener_serves_nothing_until_it_listens_again(app_pool: asyncpg.Pool, listening) -> None:  # type: ignore[no-untyped-def]
    views, feed = listening
    hold(views, uuid.uuid4())
    pid = feed._listener.get_server_pid()  # type: ignore[union-attr]
    assert await app_pool.fetchval("SELECT pg_terminate_backend($1)", pid)
    await until(lambda: len(views) == 0)  # dropped when the connection went
    await until(lambda: views.enabled and feed._listener is not None)  # reconnected by the feed's keeper
    assert feed._listener is not None and feed._listener.get_server_pid() != pid
    hold(views, uuid.uuid4())
    assert len(views) == 1
