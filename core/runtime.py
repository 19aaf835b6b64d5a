"""Everything a process needs to talk to the store, opened once and closed once.

The CLI verbs and the HTTP app's lifespan both use ``open_runtime``: resolve the
database (``DATABASE_URL`` or embedded), apply pending migrations as the owner,
then connect as the least-privileged app role.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from alliance.core.database import DatabaseTarget, create_app_pool, resolve_target, with_user
from alliance.core.events.base import EventPayload
from alliance.core.events.codec import EventCodec
from alliance.core.events.crypto import PostgresKeyRing, open_key_ring
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.events.replica import ReplicaRouter, open_router
from alliance.core.migrations import apply_migrations
from alliance.core.settings import Settings

T = TypeVar("T")


def domain_codec() -> EventCodec:
    from alliance.core import catalog

    return EventCodec(catalog.ALL_EVENT_TYPES, getattr(catalog, "UPCASTERS", {}))


@dataclass
class Runtime:
    settings: Settings
    target: DatabaseTarget
    pool: asyncpg.Pool
    store: PostgresEventStore
    keys: PostgresKeyRing
    codec: EventCodec
    #: The hot standby for reads that tolerate bounded staleness (``ALLIANCE_REPLICA_URL``), or None.
    replica: ReplicaRouter | None = None

    async def stale_store(self) -> PostgresEventStore:
        """The store for a read that tolerates ``ALLIANCE_REPLICA_MAX_LAG_SECONDS`` of staleness (as-of
        views, exports, replays): the standby's when it is current enough, else the primary's."""
        return self.store if self.replica is None else await self.replica.choose()

    async def read_stale(self, work: Callable[[PostgresEventStore], Awaitable[T]]) -> T:
        """``work(store)`` on ``stale_store()``, again on the primary if the standby fails meanwhile."""
        return await work(self.store) if self.replica is None else await self.replica.run(work)


@asynccontextmanager
async def open_runtime(settings: Settings, *, migrate: bool = True, pool_size: int = 10,
                       event_types: Iterable[type[EventPayload]] | None = None) -> AsyncIterator[Runtime]:
    target = await resolve_target(settings)
    if migrate:
        await apply_migrations(target.owner_dsn, app_role=settings.app_role,
                               app_role_password=settings.app_role_password)
    pool = await create_app_pool(target.app_dsn, min_size=min(2, pool_size), max_size=pool_size)
    codec = EventCodec(event_types) if event_types is not None else domain_codec()
    try:
        keys = await open_key_ring(pool, path=settings.kek_path, inline=settings.kek)
    except BaseException:
        await pool.close()
        raise
    store = PostgresEventStore(pool, codec, keys, dsn=target.app_dsn, group_commit=settings.group_commit)
    # Every process follows key destruction, so no cached data key outlives an erasure elsewhere.
    await store.listen()
    replica = None
    try:
        if settings.replica_url:
            # As the app role, as on the primary: the standby has the same roles (it is a copy).
            dsn = with_user(settings.replica_url, settings.app_role, settings.app_role_password)
            replica = await open_router(store, pool, dsn, max_lag=settings.replica_max_lag_seconds,
                                        pool_size=max(2, pool_size // 2))
        yield Runtime(settings, target, pool, store, keys, codec, replica)
    finally:
        if replica is not None:
            await replica.close()
        await store.close()
        await pool.close()
