"""Reads that tolerate bounded staleness, on a hot standby (``ALLIANCE_REPLICA_URL``).

As-of views, exports, FHIR bundles and the replays of rebuilds and verification may read a
streaming standby of the same database instead of the primary. ``ReplicaRouter.choose()``
answers the store to read from: the standby's (``ReplicaEventStore``) only when

* it answers and is still in recovery (a standby that was *promoted* is no longer a copy of
  the primary: reads go to the primary and the promotion counts as a notification gap — every
  cached key and decrypted copy is dropped, as when LISTEN is lost);
* its lag is within ``max_lag`` seconds (5): 0 when its replay position has reached the
  primary's WAL position sampled just before, else the age of its last replayed commit — but
  never more than the time since a sample it has replayed past, so a primary that was merely
  idle does not count as lag;
* it has replayed past the latest key destruction (the *erasure watermark*): a lagging standby
  still holds a destroyed data key, and a key read there would decrypt erased text.

The erasure watermark. A destruction commits on the primary and announces itself (NOTIFY) in
the same transaction; every process receives it on its primary LISTEN connection and bumps an
epoch here. The next sample reads the primary's WAL *insert* position after that: the
destruction's commit record is below it, so a standby whose ``pg_last_wal_replay_lsn()`` is at
or past it has replayed the destruction. At start-up, and whenever the store is not listening
(a notification gap), the epoch is unknown, so the standby must reach the primary's position
of that moment. Between samples the check uses the last sample (a replay position only grows),
so it is conservative, never optimistic.

A replay position only grows while the standby runs; after a crash it restarts from an earlier
consistent point, so every new connection to it is vetted (``ReplicaRouter.vet``): one that finds
the replay behind the last sample is refused, and the read goes to the primary until a sample has
seen the standby past the watermark again.

Events are immutable, so a lagging standby can only miss events, never show changed ones; the
data keys are what erasure changes. So the check is made twice: in ``choose()`` (the whole read
falls back), and for every key read of the replica store (``StandbyKeys``): a long read that
started while the standby was current (a rebuild) reads a key on the primary from the moment an
erasure is announced until the standby has replayed it.

The never-skip horizon needs nothing: on a hot standby ``pg_current_snapshot()`` is built from
the transactions the standby knows to be running, and replay marks every transaction id below
the newest it has seen as running until its commit or abort is replayed, so an event committed
on the primary behind a running writer stays below the standby's horizon in the same order
(``tests/replica/test_replica.py`` proves it). A read bounded by a checkpoint (``until``) is
sent to the standby only when that checkpoint's transaction is below the standby's horizon, so
a page is never cut short by lag.

LISTEN stays on the primary; so do live views and everything authorization reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from alliance.core.events.crypto import DataKey, PostgresKeyRing
from alliance.core.events.envelope import NewEvent, RecordedEvent
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.events.store import START, AppendResult, StreamAppend, parse_checkpoint
from alliance.core.logging import get_logger

log = get_logger("alliance.replica")

T = TypeVar("T")

#: Why a read that could have gone to the standby went to the primary (the fallback counter's labels).
REASONS = ("lag", "erasure", "unreachable", "promoted")

#: Longest a sample of the standby's position is reused (seconds).
SAMPLE_SECONDS = 1.0
#: While only the erasure watermark keeps reads off the standby, how often it is looked at again (seconds):
#: a standby is usually a few milliseconds behind a destruction, not a whole sample's life.
RESAMPLE_SECONDS = 0.05
#: After a failed sample, how long reads go to the primary before the standby is tried again.
RETRY_SECONDS = 5.0
#: Bound on each sampling statement and on connecting to the standby (seconds).
SAMPLE_TIMEOUT = 2.0

_PRIMARY_SQL = ("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, "
                "pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint")
_STANDBY_SQL = ("SELECT pg_is_in_recovery(), pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint, "
                "extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8")
_COVERS_SQL = "SELECT $1::text::xid8 < pg_snapshot_xmin(pg_current_snapshot())"

#: A standby that stops answering or cancels a statement (a replay conflict) is left for the primary.
_LOST = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, ConnectionError, OSError, TimeoutError,
         asyncpg.CannotConnectNowError)


class StandbyWentBack(ConnectionError):
    """A new connection found the standby's replay behind where it was last seen: it restarted from an
    earlier consistent point (after a crash), so what it shows may predate a destruction it had replayed."""


#: Set while the router samples: its own connections must see the standby as it is, behind or not.
_SAMPLING: contextvars.ContextVar[bool] = contextvars.ContextVar("replica_sampling", default=False)


def _replica_trouble(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, _LOST) or sqlstate == "40001" or sqlstate[:2] in {"08", "57"}


@dataclass(frozen=True)
class Sample:
    taken: float  # monotonic clock, just before the primary was asked
    reason: str | None  # None: a usable standby
    primary_lsn: int = 0  # the primary's WAL write position
    replay_lsn: int = 0  # the standby's replay position, read after ``primary_lsn``
    lag: float = math.inf  # seconds


def staleness(write_lsn: int, replay_lsn: int, replay_age: float | None, previous: Sample | None, *,
              now: float) -> float:
    """How many seconds of the primary's commits the standby may be missing, at most.

    ``write_lsn``: the primary's WAL write position, read before the standby's ``replay_lsn``;
    ``replay_age``: seconds since the last commit the standby replayed (None: none yet).
    """
    if replay_lsn >= write_lsn:
        return 0.0  # everything the primary had written when it was asked is replayed (idle or not)
    # Behind: it lacks at most what was committed since its last replayed commit ...
    bounds = [max(0.0, float(replay_age))] if replay_age is not None else []
    # ... and, when it has passed where the primary was at the previous sample, since that sample
    # (after a long idle spell the last replayed commit is old, yet nothing else is missing).
    if previous is not None and previous.reason is None and replay_lsn >= previous.primary_lsn:
        bounds.append(max(0.0, now - previous.taken))
    return min(bounds) if bounds else math.inf


class ReplicaRouter:
    """Chooses, per read, between the standby and the primary (rules in the module docstring)."""

    def __init__(self, primary: PostgresEventStore, primary_pool: asyncpg.Pool, replica_pool: asyncpg.Pool, *,
                 dsn: str, max_lag: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.primary = primary
        self._primary_pool = primary_pool
        self.pool = replica_pool
        self.max_lag = max_lag
        self._clock = clock
        self.store = ReplicaEventStore(replica_pool, primary, self, dsn=dsn)
        self._sample: Sample | None = None
        self._sampling: asyncio.Task[Sample] | None = None
        # Erasure watermark: the WAL position every destruction announced up to ``_epoch`` is below.
        self._epoch = 0
        self._required_epoch = -1  # unknown at start: the first sample sets the watermark
        self._required_lsn = 0
        self._last_reason: str | None = "start"
        #: Reads sent to the standby, and to the primary by reason (tests and /ready read them).
        self.replica_reads = 0
        self.fallbacks: dict[str, int] = dict.fromkeys(REASONS, 0)
        #: Called with the reason of every read that fell back (api/metrics.py counts them).
        self.on_fallback: Callable[[str], None] | None = None
        primary.on_key_destroyed(self._destroyed)
        primary.on_notification_gap(self._gap)

    # -- what the primary's listener says ---------------------------------------------------------
    def _destroyed(self, _subject: UUID) -> None:
        self._epoch += 1

    def _gap(self) -> None:
        self._epoch += 1

    # -- sampling --------------------------------------------------------------------------------
    @property
    def lag_seconds(self) -> float:
        """The last sample's lag (inf when the standby is not usable, or never sampled)."""
        return self._sample.lag if self._sample is not None and self._sample.reason is None else math.inf

    async def sample(self, *, fresh: bool = False) -> Sample:
        """The standby's position, reused for ``SAMPLE_SECONDS`` (``RETRY_SECONDS`` after a failure)."""
        current = self._sample
        # A destruction announced since the sample needs a new watermark (unless no watermark can be
        # had: while the store is not listening every read falls back anyway).
        settled = self._required_epoch == self._epoch or not self.primary.listening
        if current is not None and not fresh and settled:
            keep = RETRY_SECONDS if current.reason in ("unreachable", "promoted") else SAMPLE_SECONDS
            if self._clock() - current.taken < keep:
                return current
        if self._sampling is None or self._sampling.done():  # one sample in flight, shared by every reader
            self._sampling = asyncio.ensure_future(self._take_sample())
        return await asyncio.shield(self._sampling)

    async def vet(self, conn: asyncpg.Connection) -> None:
        """Every new connection to the standby (the pool's ``init``): refused while the standby's replay
        is behind the last sample's — a replay position only grows while the standby runs, so a lower
        one means it restarted from an earlier point, and the sample that let this read here is void."""
        if _SAMPLING.get():
            return
        seen = self._sample
        if seen is None or seen.reason is not None:
            return
        replay = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint")
        if replay is None or int(replay) < seen.replay_lsn:
            self._sample = None  # the next read samples again before it trusts the standby
            raise StandbyWentBack("the standby's replay went back since the last sample (it restarted)")

    async def _take_sample(self) -> Sample:
        _SAMPLING.set(True)  # this task is the sampler's own (ensure_future copied the context)
        epoch, taken, previous = self._epoch, self._clock(), self._sample
        try:
            async with self._primary_pool.acquire() as conn:
                write_lsn, insert_lsn = await asyncio.wait_for(conn.fetchrow(_PRIMARY_SQL), SAMPLE_TIMEOUT)
        except Exception as exc:  # the primary's own trouble: its reads will say so; the standby is not used
            log.warning("replica_sample_failed", side="primary", error=type(exc).__name__)
            sample = Sample(taken, "unreachable")
            self._sample = sample
            return sample
        if self.primary.listening and self._required_epoch != epoch:
            # Every destruction announced by ``epoch`` committed before this position was read. (Only
            # then does the watermark move: otherwise a standby a moment behind would count as erasing.)
            self._required_lsn = max(self._required_lsn, int(insert_lsn))
            self._required_epoch = epoch
        try:
            async with self.pool.acquire(timeout=SAMPLE_TIMEOUT) as conn:
                in_recovery, replay_lsn, replay_age = await asyncio.wait_for(conn.fetchrow(_STANDBY_SQL),
                                                                             SAMPLE_TIMEOUT)
        except Exception as exc:  # refused, timed out, or not the database it should be: not usable
            log.debug("replica_sample_failed", side="standby", error=type(exc).__name__)
            sample = Sample(taken, "unreachable")
            self._sample = sample
            return sample
        if not in_recovery:
            sample = Sample(taken, "promoted")
            if previous is None or previous.reason != "promoted":
                # No longer a copy of the primary: another node may be taking writes (and destroying
                # keys) that this process's LISTEN does not hear. Drop what was decrypted, as a gap does.
                self.primary.notification_gap("replica_promoted")
            # New connections, so a multi-host URL with target_session_attrs=standby finds whichever
            # node is a standby now (the old primary, once it has rejoined as one).
            await self.pool.expire_connections()
            self._sample = sample
            return sample
        replay = int(replay_lsn or 0)
        lag = staleness(int(write_lsn), replay, replay_age, previous, now=self._clock())
        sample = Sample(taken, None, int(write_lsn), replay, lag)
        self._sample = sample
        return sample

    # -- the erasure watermark -------------------------------------------------------------------
    def keys_safe(self) -> bool:
        """True when a data key read on the standby cannot be one destroyed on the primary (by the
        last sample; no round trip). False whenever in doubt."""
        sample = self._sample
        return (sample is not None and sample.reason is None and self.primary.listening
                and self._required_epoch == self._epoch and sample.replay_lsn >= self._required_lsn)

    # -- choosing ----------------------------------------------------------------------------------
    async def choose(self) -> PostgresEventStore:
        """The store for one read that tolerates ``max_lag`` seconds of staleness."""
        sample = await self.sample()
        reason = self._judge(sample)
        if reason == "erasure" and self.primary.listening and self._clock() - sample.taken >= RESAMPLE_SECONDS:
            sample = await self.sample(fresh=True)  # it may well have replayed the destruction by now
            reason = self._judge(sample)
        if reason is not None:
            self._fell_back(reason)
            return self.primary
        if self._last_reason is not None:
            log.info("replica_in_use", lag_seconds=round(sample.lag, 3), was=self._last_reason)
            self._last_reason = None
        self.replica_reads += 1
        return self.store

    def _judge(self, sample: Sample) -> str | None:
        if sample.reason is not None:
            return sample.reason
        if sample.lag > self.max_lag:
            return "lag"
        return None if self.keys_safe() else "erasure"

    def _fell_back(self, reason: str) -> None:
        self.fallbacks[reason] += 1
        if self.on_fallback is not None:
            self.on_fallback(reason)
        if reason != self._last_reason:  # logged once per change of reason, not once per read
            log.warning("replica_fallback", reason=reason,
                        lag_seconds=None if math.isinf(self.lag_seconds) else round(self.lag_seconds, 3))
            self._last_reason = reason

    async def run(self, work: Callable[[PostgresEventStore], Awaitable[T]]) -> T:
        """``work(store)`` on the chosen store; if the standby fails during it, once more on the primary."""
        store = await self.choose()
        if store is self.primary:
            return await work(store)
        try:
            return await work(store)
        except Exception as exc:
            if not _replica_trouble(exc):
                raise
            self._sample = Sample(self._clock(), "unreachable")
            self._fell_back("unreachable")
            return await work(self.primary)

    async def covers(self, until: str) -> bool:
        """True when every transaction up to checkpoint ``until`` has ended on the standby."""
        tx, _ = parse_checkpoint(until)
        try:
            async with self.pool.acquire(timeout=SAMPLE_TIMEOUT) as conn:
                return bool(await conn.fetchval(_COVERS_SQL, str(tx)))
        except Exception as exc:
            if not _replica_trouble(exc):
                raise
            return False

    async def close(self) -> None:
        if self._sampling is not None and not self._sampling.done():
            self._sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sampling
        await self.pool.close()


class StandbyKeys:
    """The replica store's key ring: the primary's ring (its cache, appends, destruction), with an
    uncached key read on the standby only while ``ReplicaRouter.keys_safe()``."""

    def __init__(self, primary: PostgresKeyRing, standby_pool: asyncpg.Pool, router: ReplicaRouter) -> None:
        self._primary = primary
        self._pool = standby_pool
        self._router = router

    @property
    def trusted(self) -> bool:
        return self._primary.trusted

    async def key_for_read(self, subject_id: UUID, key_id: UUID) -> DataKey:
        pool = self._pool if self._router.keys_safe() else None
        return await self._primary.key_for_read(subject_id, key_id, pool=pool)

    async def key_for_append(self, tenant_id: UUID, subject_id: UUID) -> DataKey:
        return await self._primary.key_for_append(tenant_id, subject_id)

    async def destroy(self, subject_id: UUID) -> bool:
        return await self._primary.destroy(subject_id)

    def forget(self, subject_id: UUID) -> None:
        self._primary.forget(subject_id)

    def forget_all(self) -> None:
        self._primary.forget_all()

    def distrust(self) -> None:
        """The replica store never listens: its closing must not distrust the primary's ring."""

    def trust(self) -> None:
        """Trust follows the primary store's listener."""


class ReplicaEventStore(PostgresEventStore):
    """Reads on the standby; anything that writes or listens is the primary's."""

    def __init__(self, pool: asyncpg.Pool, primary: PostgresEventStore, router: ReplicaRouter, *, dsn: str) -> None:
        super().__init__(pool, primary.codec, StandbyKeys(primary.keys, pool, router), dsn=dsn,  # type: ignore[arg-type]
                         group_commit=False)
        self.primary = primary
        self._router = router
        #: Pages of ``read_all``/``read_subject`` served by each server (a bounded page the standby has
        #: not reached goes to the primary).
        self.pages = {"standby": 0, "primary": 0}

    @property
    def listening(self) -> bool:
        return self.primary.listening

    async def append(self, stream_id: str, events: Sequence[NewEvent], expected_version: int) -> AppendResult:
        return await self.primary.append(stream_id, events, expected_version)

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        return await self.primary.append_many(appends)

    async def listen(self) -> None:
        await self.primary.listen()

    async def notify_key_destroyed(self, subject_id: UUID, *, wait_seconds: float = 2.0) -> bool:
        return await self.primary.notify_key_destroyed(subject_id, wait_seconds=wait_seconds)

    def on_key_destroyed(self, listener: Callable[[UUID], None]) -> None:
        self.primary.on_key_destroyed(listener)

    def on_notification_gap(self, listener: Callable[[], None]) -> None:
        self.primary.on_notification_gap(listener)

    def subscribe(self, *, after: str = START, tenant_id: UUID | None = None, subject_id: UUID | None = None,
                  batch: int = 500, poll_interval: float = 1.0) -> AsyncIterator[RecordedEvent]:
        # Live following is a live view: the primary's.
        return self.primary.subscribe(after=after, tenant_id=tenant_id, subject_id=subject_id, batch=batch,
                                      poll_interval=poll_interval)

    async def read_all(self, *, after: str = START, limit: int = 1000, tenant_id: UUID | None = None,
                       subject_id: UUID | None = None, recorded_until: datetime | None = None,
                       until: str | None = None) -> list[RecordedEvent]:
        kwargs: dict[str, Any] = {"after": after, "limit": limit, "tenant_id": tenant_id, "subject_id": subject_id,
                                  "recorded_until": recorded_until, "until": until}
        if until is not None and not await self._router.covers(until):
            self.pages["primary"] += 1
            return await self.primary.read_all(**kwargs)  # the standby would cut this page short
        self.pages["standby"] += 1
        return await super().read_all(**kwargs)

    async def read_subject(self, subject_id: UUID, *, tenant_id: UUID | None = None,
                           recorded_until: datetime | None = None, until: str | None = None
                           ) -> list[RecordedEvent]:
        if until is not None and not await self._router.covers(until):
            self.pages["primary"] += 1
            return await self.primary.read_subject(subject_id, tenant_id=tenant_id, recorded_until=recorded_until,
                                                   until=until)
        self.pages["standby"] += 1
        return await super().read_subject(subject_id, tenant_id=tenant_id, recorded_until=recorded_until,
                                          until=until)

    async def close(self) -> None:
        # Nothing of its own runs (no listener, no notifier); the router closes the pool.
        return None


async def open_router(primary: PostgresEventStore, primary_pool: asyncpg.Pool, dsn: str, *, max_lag: float,
                      pool_size: int) -> ReplicaRouter:
    """The router with a pool on the standby that connects lazily: a standby that is down at start-up
    only sends reads to the primary until it answers."""
    routers: list[ReplicaRouter] = []

    async def vet(conn: asyncpg.Connection) -> None:
        if routers:
            await routers[0].vet(conn)

    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=pool_size, timeout=SAMPLE_TIMEOUT,
                                     max_inactive_connection_lifetime=60.0, init=vet)
    assert pool is not None
    routers.append(ReplicaRouter(primary, primary_pool, pool, dsn=dsn, max_lag=max_lag))
    return routers[0]
