"""Operations on projections: rebuild without downtime, verify, status and lag.

``rebuild`` builds the next generation of each named projection beside the live one
(state ``building``: readers and the feed do not see it) in short transactions,
reading the store once for all of them: up to the head as it was at the start in
memory, writing each document once (``core.projections.bulk``), then what was appended
meanwhile as the live runner does. When it has caught up it switches readers
in one transaction per projection: it locks the active and the new version rows
(the live runner's next batch waits on that lock, then finds its version retired
and follows the new one), catches the new one up to the head, records change-feed
entries for every client whose events the new version folded beyond the old one's
checkpoint (so followers miss nothing across the switch), flips the states, and
then drops the old table.

These are plain async functions taking a pool, a store and the app DSN (for the
dedicated connection that holds the advisory lock), with an optional progress
callback, for the CLI (``alliance projections rebuild|verify|status``) to wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from alliance.core.errors import AllianceError
from alliance.core.events.envelope import RecordedEvent
from alliance.core.events.store import START, EventStore, parse_checkpoint
from alliance.core.logging import get_logger
from alliance.core.projections.base import Projection, fold
from alliance.core.projections.bulk import WRITE_ROWS, Build, Endings, Part, collector_paused
from alliance.core.projections.registry import PROJECTIONS, get_projection
from alliance.core.projections.runner import (
    CHANGES_CHANNEL,
    Target,
    apply_batch,
    catch_up,
    create_version,
    drop_tables,
    emit_changes,
    lock_key,
)
from alliance.core.projections.sealing import HEAD, keys_of, open_rows

log = get_logger("alliance.projections")


class RebuildRunning(AllianceError):
    code = "rebuild_running"
    status = 409


@dataclass
class RebuildProgress:
    name: str
    phase: str  # "building" | "switching" | "done"
    events_read: int
    checkpoint: str
    head: str
    elapsed: float


ProgressCallback = Callable[[RebuildProgress], None]


@dataclass
class RebuildResult:
    name: str
    version: int
    previous_version: int | None
    events_read: int
    checkpoint: str
    seconds: float


def _projections(names: Sequence[str] | None) -> list[Projection[Any]]:
    return [get_projection(n) for n in names] if names else list(PROJECTIONS)


async def rebuild(pool: asyncpg.Pool, store: EventStore, names: Sequence[str] | None = None, *, dsn: str,
                  batch_size: int = 4000, write_size: int = 1000, write_rows: int = WRITE_ROWS,
                  progress: ProgressCallback | None = None, drop_old: bool = True,
                  bulk_store: EventStore | None = None, passes: int = 1) -> list[RebuildResult]:
    """Build the next generation of each projection in ``names`` (all when None) and switch to it.

    The store is read once for all projections, ``batch_size`` events at a time, the next page
    being read while the current one is folded. Up to the head as it was when the rebuild
    started, documents are folded in memory and written once (``core.projections.bulk``,
    about ``write_rows`` rows per transaction); what was appended meanwhile is then folded
    as the live runner does, ``write_size`` events per transaction. A write transaction holds
    back every reader's horizon while it is open, so the live runners' latency depends on
    these being short.

    ``passes`` > 1 folds the clients in that many parts, one pass over the store each: memory
    for about 1/passes of the documents, at the cost of reading the store ``passes`` times.

    ``bulk_store`` (a hot standby's, core/events/replica.py) serves the long reads up to the switch;
    the switch itself catches up on ``store``, the primary's, so the new version starts exactly there.
    """
    if passes < 1:
        raise ValueError("passes must be at least 1")
    projections = _projections(names)
    reader = bulk_store or store
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    writers: list[asyncpg.Connection] = []
    try:
        for p in projections:
            await _take_rebuild_lock(conn, p.name)
            await _drop_unfinished(conn, p.name)
        targets = [await create_version(conn, p, state="building") for p in projections]
        writers += [await asyncpg.connect(dsn) for _ in targets]
        for target in targets:
            target.cache_size = 50_000
        head = await store.head()

        def report(read: int, checkpoint: str) -> None:
            if progress is not None:
                for target in targets:
                    progress(RebuildProgress(target.projection.name, "building", read, checkpoint, head,
                                             time.perf_counter() - started))

        with collector_paused():
            read = await _bulk(conn, reader, writers, targets, until=head, batch_size=batch_size, write_size=write_size,
                               write_rows=write_rows, report=report, passes=passes)
            read += await _follow(reader, writers, targets, batch_size=batch_size, write_size=write_size,
                                  report=lambda n, cp: report(read + n, cp))
        for target in targets:
            await _analyze(conn, target)
        results = []
        for target in targets:
            previous = await _switch(conn, store, target, batch_size=batch_size, drop_old=drop_old)
            results.append(RebuildResult(target.projection.name, target.version, previous, read,
                                         target.checkpoint, time.perf_counter() - started))
            if progress is not None:
                progress(RebuildProgress(target.projection.name, "done", read, target.checkpoint,
                                         await store.head(), time.perf_counter() - started))
            log.info("projection_rebuilt", projection=target.projection.name, version=target.version,
                     previous=previous, events=read, seconds=round(time.perf_counter() - started, 2))
        return results
    finally:
        for writer in writers:
            await writer.close()
        # Release the rebuild locks before closing: the server drops a closed session's locks
        # only when its backend has exited, which another process could otherwise race.
        with contextlib.suppress(Exception):
            await conn.execute("SELECT pg_advisory_unlock_all()")
        await conn.close()


async def _pages(store: EventStore, after: str, *, batch_size: int, until: str | None = None
                 ) -> AsyncIterator[list[RecordedEvent]]:
    """The store's events after ``after`` (up to ``until``), a page at a time, the next one read ahead."""
    pending = asyncio.ensure_future(store.read_all(after=after, until=until, limit=batch_size))
    try:
        while True:
            events = await pending
            if not events:
                return
            full = len(events) == batch_size
            if full:  # read ahead while this page is folded and written
                pending = asyncio.ensure_future(store.read_all(after=events[-1].checkpoint, until=until,
                                                               limit=batch_size))
            yield events
            if not full:
                return
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending


async def _bulk(conn: asyncpg.Connection, store: EventStore, writers: list[asyncpg.Connection],
                targets: list[Target], *, until: str, batch_size: int, write_size: int, write_rows: int,
                report: Callable[[int, str], None], passes: int = 1) -> int:
    """Fold every event up to ``until`` in memory, writing each document once it is final, in
    ``passes`` passes over the store (each for a part of the clients: :class:`~bulk.Part`); the events read."""
    endings = Endings(conn, until)
    read = 0
    builds: list[Build] = []
    try:
        for index in range(passes):
            part = Part(index, passes)
            builds = [Build(target, writer, store, rows=write_rows, part=part)
                      for target, writer in zip(targets, writers, strict=True)]
            if until != START:
                async for events in _pages(store, START, batch_size=batch_size, until=until):
                    for lo in range(0, len(events), write_size):
                        chunk = events[lo:lo + write_size]
                        for build in builds:
                            await build.fold(store, chunk)
                            await asyncio.sleep(0)  # let the process's other tasks (and our writes) run
                        final = endings.passed(chunk)
                        for build in builds:
                            build.complete(final)
                            await build.flush()
                    read += len(events)
                    report(read, events[-1].checkpoint)
            for build in builds:
                await build.finish(until)
    finally:
        await endings.close()
        for build in builds:
            await build.abandon()
    return read


async def _follow(store: EventStore, writers: list[asyncpg.Connection], targets: list[Target], *,
                  batch_size: int, write_size: int, report: Callable[[int, str], None]) -> int:
    """Fold what was appended since the targets' (common) checkpoint as the runner does; the events read."""
    read = 0
    async for events in _pages(store, targets[0].checkpoint, batch_size=batch_size):
        for lo in range(0, len(events), write_size):
            chunk = events[lo:lo + write_size]
            # One connection per projection: while one waits on its write, another folds.
            await asyncio.gather(*(apply_batch(writer, store, target, chunk, emit=False)
                                   for writer, target in zip(writers, targets, strict=True)))
            await asyncio.sleep(0)  # let the process's other tasks run between chunks
        read += len(events)
        report(read, events[-1].checkpoint)
    return read


#: Seconds a rebuild waits for another holder of its lock before it reports one running.
LOCK_PATIENCE = 5.0


async def _take_rebuild_lock(conn: asyncpg.Connection, name: str) -> None:
    """The rebuild lock of ``name``, waiting a little: a live runner takes it for a moment when it
    re-targets (to drop abandoned builds); a holder still there after ``LOCK_PATIENCE`` is a rebuild."""
    deadline = time.monotonic() + LOCK_PATIENCE
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key("rebuild", name)):
        if time.monotonic() >= deadline:
            raise RebuildRunning(f"A rebuild of '{name}' is already running.")
        await asyncio.sleep(0.05)


async def _analyze(conn: asyncpg.Connection, target: Target) -> None:
    """Give the planner the new tables' statistics before readers switch to them.

    A table filled in bulk has none until autovacuum comes by; until then the planner guesses
    and a progress read took ~100 ms instead of ~1 ms (measured by bench/bench_decade.py at 3M
    events, right after its rebuild).
    """
    await conn.execute(f"ANALYZE {target.qualified}")
    if target.projection.layout:
        await conn.execute(f"ANALYZE {target.qualified_items}")


async def _switch(conn: asyncpg.Connection, store: EventStore, target: Target, *, batch_size: int,
                  drop_old: bool) -> int | None:
    name = target.projection.name
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT version, state, checkpoint, table_name FROM projections.projection_versions "
            "WHERE name = $1 AND (state = 'active' OR version = $2) ORDER BY version FOR UPDATE",
            name, target.version)
        old = next((r for r in rows if r["state"] == "active" and r["version"] != target.version), None)
        # Caught up inside the switch: the live runner cannot commit meanwhile (row locked).
        await catch_up(conn, store, target, batch_size=batch_size, emit=False)
        if old is not None and target.projection.feed_kind \
                and parse_checkpoint(target.checkpoint) > parse_checkpoint(old["checkpoint"]):
            clients: dict[UUID, UUID] = {}
            after = old["checkpoint"]
            while True:
                events = await store.read_all(after=after, until=target.checkpoint, limit=batch_size)
                clients.update((e.subject_id, e.tenant_id) for e in events if target.projection.wants(e))
                if len(events) < batch_size:
                    break
                after = events[-1].checkpoint
            await emit_changes(conn, target.projection.feed_kind, clients)
        if old is not None:
            await conn.execute("UPDATE projections.projection_versions SET state = 'retired', updated_at = now() "
                               "WHERE name = $1 AND version = $2", name, old["version"])
        await conn.execute("UPDATE projections.projection_versions SET state = 'active', activated_at = now(), "
                           "updated_at = now() WHERE name = $1 AND version = $2", name, target.version)
        # Every process's view cache holds documents of the old version: drop them all at commit.
        await conn.execute("SELECT pg_notify($1, '*')", CHANGES_CHANNEL)
    if old is not None and drop_old:
        await drop_version(conn, name, old["version"], old["table_name"])
    return old["version"] if old is not None else None


async def _drop_unfinished(conn: asyncpg.Connection, name: str) -> None:
    """Builds left by an interrupted rebuild (we hold the rebuild lock, so nobody is on them)."""
    for version, table in await conn.fetch("SELECT version, table_name FROM projections.projection_versions "
                                           "WHERE name = $1 AND state IN ('building', 'retired')", name):
        await drop_version(conn, name, version, table)


async def drop_version(conn: asyncpg.Connection, name: str, version: int, table: str) -> None:
    async with conn.transaction():
        await drop_tables(conn, table)
        await conn.execute("DELETE FROM projections.projection_versions WHERE name = $1 AND version = $2 "
                           "AND state <> 'active'", name, version)


# --- verify -------------------------------------------------------------------------------

@dataclass
class VerifyResult:
    name: str
    version: int
    checkpoint: str
    clients: int
    events: int
    mismatched: list[UUID] = field(default_factory=list)
    missing: list[UUID] = field(default_factory=list)  # replayed, not in the table
    extra: list[UUID] = field(default_factory=list)  # in the table, not replayed

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.extra)


async def verify(pool: asyncpg.Pool, store: EventStore, names: Sequence[str] | None = None, *,
                 batch_size: int = 5000, progress: Callable[[str, int], None] | None = None
                 ) -> list[VerifyResult]:
    """Compare a fresh in-memory replay with each active table, at the table's own checkpoint."""
    results = []
    for projection in _projections(names):
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow("SELECT version, checkpoint, table_name FROM projections.projection_versions "
                                      "WHERE name = $1 AND state = 'active'", projection.name)
            if row is None:
                continue
            live = {r[0]: r[1] for r in await conn.fetch(f'SELECT client_id, doc FROM projections."{row[2]}"')}
            items: dict[UUID, list[tuple[int, int, bytes]]] = {}
            if projection.layout:
                for r in await conn.fetch(f'SELECT client_id, part, ord, data FROM projections."{row[2]}_items" '
                                          "ORDER BY client_id, part, ord"):
                    items.setdefault(r[0], []).append((r[1], r[2], r[3]))
        checkpoint = row[1]
        docs: dict[UUID, Any] = {}
        after = START
        events_read = 0
        while checkpoint != START:
            events = await store.read_all(after=after, until=checkpoint, limit=batch_size)
            fold(projection, events, documents=docs)
            events_read += len(events)
            if progress is not None:
                progress(projection.name, events_read)
            if len(events) < batch_size:
                break
            after = events[-1].checkpoint
        result = VerifyResult(projection.name, row[0], checkpoint, len(docs), events_read)
        for client, doc in docs.items():
            stored = live.get(client)
            if stored is None:
                result.missing.append(client)
                continue
            opened = await open_rows(keys_of(store), projection.name, client,
                                     [(HEAD, 0, stored), *items.get(client, ())])
            # Sealed with a destroyed key: not the erased document the replay gives (the runner re-folds it).
            if opened is None or projection.layout.assemble(projection.decode(opened[0][2]), opened[1:])[0] \
                    != projection.decode(projection.encode(doc)):
                result.mismatched.append(client)
        result.extra = [c for c in live if c not in docs]
        results.append(result)
    return results


# --- status and lag -----------------------------------------------------------------------

@dataclass
class ProjectionStatus:
    name: str
    version: int
    fold_version: int
    state: str
    checkpoint: str
    events_applied: int
    events_behind: int
    seconds_behind: float
    updated_at: datetime | None
    #: The code folds differently from what built this version: rebuild it.
    stale: bool


_LAG = ("SELECT count(*), min(recorded_at) FROM (SELECT recorded_at FROM events "
        "WHERE (tx_id, position) > ($1::text::xid8, $2) AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) "
        "ORDER BY tx_id, position LIMIT $3) behind")


async def status(pool: asyncpg.Pool, *, count_limit: int = 10_000_000) -> list[ProjectionStatus]:
    """Every projection version: generation, checkpoint, events and seconds behind the head."""
    code = {p.name: p.version for p in PROJECTIONS}
    out = []
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT name, version, fold_version, state, checkpoint, events_applied, updated_at "
                                "FROM projections.projection_versions ORDER BY name, version")
        for r in rows:
            tx, pos = parse_checkpoint(r["checkpoint"])
            behind, oldest = await conn.fetchrow(_LAG, str(tx), pos, count_limit)
            seconds = 0.0
            if oldest is not None:
                seconds = max(0.0, (await conn.fetchval("SELECT now()") - oldest).total_seconds())
            out.append(ProjectionStatus(r["name"], r["version"], r["fold_version"], r["state"], r["checkpoint"],
                                        r["events_applied"], behind, seconds, r["updated_at"],
                                        stale=code.get(r["name"], r["fold_version"]) != r["fold_version"]))
    return out


async def lag(pool: asyncpg.Pool, name: str | None = None) -> dict[str, tuple[int, float]]:
    """``{name: (events_behind, seconds_behind)}`` of the active versions (for ``/ready``).

    A projection that has never run is reported as behind by everything in the store.
    """
    result: dict[str, tuple[int, float]] = {}
    active = {s.name: s for s in await status(pool) if s.state == "active"}
    for p in PROJECTIONS:
        if name is not None and p.name != name:
            continue
        s = active.get(p.name)
        if s is None:
            async with pool.acquire() as conn:
                behind, oldest = await conn.fetchrow(_LAG, "0", 0, 10_000_000)
                seconds = 0.0 if oldest is None else \
                    (await conn.fetchval("SELECT now()") - oldest).total_seconds()
            result[p.name] = (behind, seconds)
        else:
            result[p.name] = (s.events_behind, s.seconds_behind)
    return result
