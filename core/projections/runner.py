"""The projection runner: checkpointed, exactly once, one leader per projection.

Each batch is one transaction on the runner's *dedicated* connection that
(1) locks the projection version's row and checks its checkpoint is the one this
runner last wrote, (2) upserts the changed documents, (3) advances the checkpoint
and (4), when the version is the active one, bumps each changed client's change
counter, records the change rows and NOTIFYs (delivered by PostgreSQL only on
commit). Rows and checkpoint commit together or not at all: a runner killed
mid-batch resumes from the last committed checkpoint and folds the same events
again into the same documents. Each document row also carries the checkpoint of
the last event folded into it, and events at or below it are skipped, so
re-applying a batch is harmless even where the version checkpoint lags.

Leadership: ``pg_try_advisory_lock`` on the same dedicated connection that writes
(never a pooled one: the pool skips its reset, so a lock would leak to the next
borrower). Writing on the lock's own connection fences a deposed leader: if its
connection died, so did its lock, and its next commit fails. A standby retries
the lock every ``standby_interval`` and takes over when the holder's session ends.

Every row is sealed with its client's data key (``sealing``). A client whose key is found
destroyed when its rows are to be written is re-folded from the store first (its personal
fields then read erased) and stored unsealed: never a document folded while the key lived.

Documents of the clients a leader touched are cached between batches (only the
leader writes its table, so the cache is coherent while the lock is held; it is
dropped whenever leadership or the target version changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from alliance.core.events.crypto import SubjectErased
from alliance.core.events.envelope import RecordedEvent
from alliance.core.events.postgres import EVENTS_CHANNEL
from alliance.core.events.store import START, EventStore, parse_checkpoint
from alliance.core.leader import hold_leadership
from alliance.core.logging import get_logger
from alliance.core.projections.base import ERASURE_EVENT, Projection
from alliance.core.projections.sealing import HEAD, RowSealer, keys_of, open_rows, sealer, sealer_after_refold

log = get_logger("alliance.projections")

#: NOTIFY channel of the change feed (payload: changed client ids, comma-separated, or "*" for all).
CHANGES_CHANNEL = "alliance_projection_changes"
#: A part of that payload naming a clinic whose own stream changed (``clinic:<tenant id>``).
CLINIC_CHANGE_PREFIX = "clinic:"
CLINIC_STREAM_PREFIX = "clinic-"
_NOTIFY_MAX = 7000
#: After a wake-up that found nothing readable: look again after these pauses (seconds).
_RETRY_DELAYS = (0.001, 0.002, *(0.004,) * 15)  # ≈ 60 ms in all; never more than 4 ms late


def lock_key(purpose: str, name: str) -> int:
    """A stable signed 64-bit advisory lock key for (purpose, projection name)."""
    digest = hashlib.blake2b(f"alliance.projection.{purpose}.{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class VersionMoved(Exception):
    """The version row is no longer what this runner wrote last (retired, switched, or another writer)."""


def _cp(checkpoint: str) -> tuple[int, int]:
    return parse_checkpoint(checkpoint)


#: A held document: (document, checkpoint of the last event folded into it, parts meta).
Held = tuple[Any, tuple[int, int], tuple[Any, ...]]


@dataclass
class Target:
    """One version (generation) of a projection that a runner writes."""

    projection: Projection[Any]
    version: int
    table: str
    checkpoint: str = START
    fold_version: int = 1
    cache_size: int = 20_000
    cache: OrderedDict[UUID, Held] = field(default_factory=OrderedDict)

    @property
    def qualified(self) -> str:
        return f'projections."{self.table}"'

    @property
    def qualified_items(self) -> str:
        return f'projections."{self.table}_items"'

    def remember(self, client_id: UUID, entry: Held) -> None:
        self.cache[client_id] = entry
        self.cache.move_to_end(client_id)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)


# --- versions and tables ------------------------------------------------------------------

async def create_table(conn: asyncpg.Connection, table: str, *, items: bool = False) -> None:
    """A version's head table (one row per client) and, with ``items``, its item rows table."""
    await conn.execute(
        f'CREATE TABLE IF NOT EXISTS projections."{table}" ('
        "client_id uuid PRIMARY KEY, tenant_id uuid NOT NULL, doc bytea NOT NULL, "
        "cp_tx bigint NOT NULL, cp_pos bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())")
    if items:
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS projections."{table}_items" ('
            "client_id uuid NOT NULL, part smallint NOT NULL, ord bigint NOT NULL, data bytea NOT NULL, "
            "PRIMARY KEY (client_id, part, ord))")


async def drop_tables(conn: asyncpg.Connection, table: str) -> None:
    await conn.execute(f'DROP TABLE IF EXISTS projections."{table}", projections."{table}_items"')


async def create_version(conn: asyncpg.Connection, projection: Projection[Any], *, state: str) -> Target:
    """Register the next generation of ``projection`` (``state`` active or building) and create its table."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key("versions", projection.name))
        if state == "active":
            row = await conn.fetchrow(
                "SELECT version, table_name, checkpoint, fold_version FROM projections.projection_versions "
                "WHERE name = $1 AND state = 'active'", projection.name)
            if row is not None:
                return Target(projection, row[0], row[1], row[2], row[3])
        version = await conn.fetchval(
            "SELECT coalesce(max(version), 0) + 1 FROM projections.projection_versions WHERE name = $1",
            projection.name)
        table = projection.table(version)
        await create_table(conn, table, items=bool(projection.layout))
        await conn.execute(
            "INSERT INTO projections.projection_versions (name, version, fold_version, state, table_name, "
            "activated_at) VALUES ($1, $2, $3, $4, $5, CASE WHEN $4 = 'active' THEN now() END)",
            projection.name, version, projection.version, state, table)
    return Target(projection, version, table, START, projection.version)


async def drop_abandoned_builds(conn: asyncpg.Connection, name: str) -> int:
    """Drop ``building`` versions nobody is building (no process holds the rebuild lock).

    An abandoned build would no longer fold erasures, so it must not linger.
    """
    key = lock_key("rebuild", name)
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
        return 0
    try:
        rows = await conn.fetch("SELECT version, table_name FROM projections.projection_versions "
                                "WHERE name = $1 AND state IN ('building', 'retired')", name)
        for version, table in rows:
            async with conn.transaction():
                await drop_tables(conn, table)
                await conn.execute("DELETE FROM projections.projection_versions WHERE name = $1 AND version = $2",
                                   name, version)
        return len(rows)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def active_target(conn: asyncpg.Connection, projection: Projection[Any]) -> Target:
    """The active version of ``projection``; created (empty, from the start) when there is none."""
    await drop_abandoned_builds(conn, projection.name)
    target = await create_version(conn, projection, state="active")
    if target.fold_version != projection.version:
        log.warning("projection_fold_version_differs", projection=projection.name, version=target.version,
                    built_with=target.fold_version, code=projection.version,
                    hint="run `alliance projections rebuild`")
    return target


# --- one batch ----------------------------------------------------------------------------

async def refold_client(store: EventStore, projection: Projection[Any], client_id: UUID, *, until: str,
                        version: int) -> tuple[Any, UUID | None]:
    """Fold one client from the store up to ``until`` (used after erasure: personal fields now read erased).

    Returns the document (None: no event) and the data key the client's events name (None: no
    event carried personal fields), which says how to store the document (``sealing``).
    """
    forget = getattr(getattr(store, "keys", None), "forget", None)
    if forget is not None:
        forget(client_id)  # a cached data key must not outlive its destruction in this process
    doc = None
    key_id = None
    after = START
    ctx = projection.context(version)
    while True:
        events = await store.read_all(after=after, subject_id=client_id, until=until, limit=1000)
        for event in events:
            if event.key_id is not None:
                key_id = event.key_id
            if projection.wants(event):
                if doc is None:
                    doc = projection.initial(client_id, event.tenant_id)
                doc = projection.apply(doc, event, ctx)
        if len(events) < 1000:
            return doc, key_id
        after = events[-1].checkpoint


_UPSERT = (
    "INSERT INTO {table} (client_id, tenant_id, doc, cp_tx, cp_pos) "
    "SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bytea[], $4::int8[], $5::int8[]) "
    "ON CONFLICT (client_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, doc = EXCLUDED.doc, "
    "cp_tx = EXCLUDED.cp_tx, cp_pos = EXCLUDED.cp_pos, updated_at = now()")

_CLEAR = ("DELETE FROM {items} i USING unnest($1::uuid[], $2::int2[]) AS u(client_id, part) "
          "WHERE i.client_id = u.client_id AND i.part = u.part")
_DELETE = ("DELETE FROM {items} i USING unnest($1::uuid[], $2::int2[], $3::int8[]) AS u(client_id, part, ord) "
           "WHERE i.client_id = u.client_id AND i.part = u.part AND i.ord = u.ord")
_PUT = ("INSERT INTO {items} (client_id, part, ord, data) "
        "SELECT * FROM unnest($1::uuid[], $2::int2[], $3::int8[], $4::bytea[]) "
        "ON CONFLICT (client_id, part, ord) DO UPDATE SET data = EXCLUDED.data")
#: From this many new item rows on, they are sent with COPY (a rebuild's batches).
COPY_MIN = 300

# The version check and the checkpoint advance in one statement: no row back means the
# version was retired, switched or written by someone else (the row lock it takes is held
# until commit, so a switch waits for this batch or this batch for the switch).
ADVANCE = (
    "UPDATE projections.projection_versions SET checkpoint = $4, events_applied = events_applied + $5, "
    "last_recorded_at = coalesce($6, last_recorded_at), updated_at = now() "
    "WHERE name = $1 AND version = $2 AND checkpoint = $3 AND state <> 'retired' RETURNING state")

_BUMP = (
    "WITH bumped AS ("
    " INSERT INTO projections.client_changes AS c (client_id, tenant_id, seq)"
    " SELECT u.client_id, u.tenant_id, 1 FROM unnest($1::uuid[], $2::uuid[]) AS u(client_id, tenant_id)"
    " ORDER BY u.client_id"
    " ON CONFLICT (client_id) DO UPDATE SET seq = c.seq + 1"
    " RETURNING c.client_id, c.seq), "
    "recorded AS (INSERT INTO projections.changes (client_id, seq, kind) SELECT client_id, seq, $3 FROM bumped) "
    "SELECT pg_notify($4, $5)")


async def emit_changes(conn: asyncpg.Connection, kind: str, clients: dict[UUID, UUID]) -> None:
    """Record one change of ``kind`` per client (client → tenant) and NOTIFY, inside the caller's tx."""
    if not clients:
        return
    ids = sorted(clients)
    payload = ",".join(str(c) for c in ids)
    await conn.execute(_BUMP, ids, [clients[c] for c in ids], kind, CHANGES_CHANNEL,
                       payload if len(payload) <= _NOTIFY_MAX else "*")


async def load_documents(conn: asyncpg.Connection, store: EventStore, target: Target, clients: Sequence[UUID]
                         ) -> tuple[dict[UUID, Held], set[UUID]]:
    """The stored documents (head and items opened and reassembled) of ``clients``, with checkpoint
    and meta; and the clients whose rows are sealed with a destroyed key (to re-fold from the store)."""
    projection = target.projection
    layout = projection.layout
    rows = await conn.fetch(f"SELECT client_id, doc, cp_tx, cp_pos FROM {target.qualified} "
                            "WHERE client_id = ANY($1::uuid[])", clients)
    items: dict[UUID, list[tuple[int, int, bytes]]] = {}
    if layout and rows:
        for r in await conn.fetch(f"SELECT client_id, part, ord, data FROM {target.qualified_items} "
                                  "WHERE client_id = ANY($1::uuid[]) ORDER BY client_id, part, ord",
                                  [r[0] for r in rows]):
            items.setdefault(r[0], []).append((r[1], r[2], r[3]))
    out: dict[UUID, Held] = {}
    unreadable: set[UUID] = set()
    for r in rows:
        opened = await open_rows(keys_of(store), projection.name, r[0], [(HEAD, 0, r[1]), *items.get(r[0], ())])
        if opened is None:
            unreadable.add(r[0])
            continue
        doc, meta = layout.assemble(projection.decode(opened[0][2]), opened[1:])
        out[r[0]] = (doc, (r[2], r[3]), meta)
    return out, unreadable


async def apply_batch(conn: asyncpg.Connection, store: EventStore, target: Target,
                      events: Sequence[RecordedEvent], *, emit: bool = True) -> int:
    """Fold ``events`` (the next ones after ``target.checkpoint``) into ``target`` in one transaction.

    Returns the number of events folded. Raises ``VersionMoved`` when the version row is not at
    the checkpoint this runner last wrote, or is retired (nothing is written then).
    """
    if not events:
        return 0
    projection = target.projection
    layout = projection.layout
    ctx = projection.context(target.fold_version)
    wants = projection.wants
    relevant = [e for e in events if wants(e)]
    new_checkpoint = events[-1].checkpoint
    tenants: dict[UUID, UUID] = {}
    # Folding happens before the transaction opens: a write transaction holds back the store's
    # read horizon (core/events/postgres.py) for every reader, so it must stay short. Safe because
    # only the lock holder writes this version's rows; the version check below catches anyone else.
    clients = list(dict.fromkeys(e.subject_id for e in relevant))
    cache = target.cache
    docs: dict[UUID, Held] = {c: cache[c] for c in clients if c in cache}
    missing = [c for c in clients if c not in docs]
    # Re-folded from the store in this batch (an erasure, rows or a key found destroyed): client ->
    # the data key its events name. Such a document is stored as ``sealer_after_refold`` says.
    refolded: dict[UUID, UUID | None] = {}
    unreadable: set[UUID] = set()
    if missing:
        loaded, unreadable = await load_documents(conn, store, target, missing)
        docs.update(loaded)
    before: dict[UUID, Held | None] = {}
    rewrite: set[UUID] = set()
    last: dict[UUID, str] = {}
    apply = projection.apply
    initial = projection.initial
    for event in relevant:
        client = event.subject_id
        current = docs.get(client)
        at = _cp(event.checkpoint)
        if current is not None and at <= current[1]:
            continue  # already folded into this document
        if client not in before:
            before[client] = current
        if event.type == ERASURE_EVENT:
            doc, refolded[client] = await refold_client(store, projection, client, until=event.checkpoint,
                                                        version=target.fold_version)
            if doc is None:
                doc = initial(client, event.tenant_id)
            rewrite.add(client)
        else:
            doc = apply(current[0] if current is not None else initial(client, event.tenant_id), event, ctx)
        docs[client] = (doc, at, ())
        tenants[client] = event.tenant_id
        last[client] = event.checkpoint
    # Each client's rows are sealed with its data key. When that key is destroyed (or the stored rows
    # were sealed with a destroyed one), what this runner holds may have been folded with it: the
    # client is re-folded from the store, where the personal fields now read erased, and that is stored.
    keys = keys_of(store)
    sealers: dict[UUID, RowSealer] = {}
    for client in before:
        if client in unreadable and client not in refolded:
            sealers[client] = await _refold_for_storage(store, target, client, last[client], tenants[client],
                                                        docs, rewrite)
        elif client in refolded:
            sealers[client] = await sealer_after_refold(keys, projection.name, client, refolded[client])
        else:
            try:
                sealers[client] = await sealer(keys, projection.name, tenants[client], client)
            except SubjectErased:
                sealers[client] = await _refold_for_storage(store, target, client, last[client], tenants[client],
                                                            docs, rewrite)
    staged: dict[UUID, Held] = {}
    heads: list[bytes] = []
    clear: list[tuple[UUID, int]] = []
    delete: list[tuple[UUID, int, int]] = []
    insert: list[tuple[UUID, int, int, bytes]] = []
    update: list[tuple[UUID, int, int, bytes]] = []
    for client, old in before.items():
        doc, at, _ = docs[client]
        meta: tuple[Any, ...] = ()
        if layout:
            changes, meta = layout.diff(old[0] if old else None, old[2] if old else None, doc,
                                        rewrite=client in rewrite)
            seal = sealers[client].seal
            clear += [(client, p) for p in changes.clear]
            delete += [(client, p, o) for p, o in changes.delete]
            insert += [(client, p, o, seal(p, o, d)) for p, o, d in changes.insert]
            update += [(client, p, o, seal(p, o, d)) for p, o, d in changes.update]
        staged[client] = (doc, at, meta)
        heads.append(sealers[client].head(projection.encode(layout.head(doc))))
    ids = list(staged)
    items = target.qualified_items
    async with conn.transaction():
        state = await conn.fetchval(ADVANCE, projection.name, target.version, target.checkpoint, new_checkpoint,
                                    len(relevant), events[-1].recorded_at)
        if state is None:
            raise VersionMoved(f"{projection.name} v{target.version} moved")
        if staged:
            await conn.execute(
                _UPSERT.format(table=target.qualified), ids, [tenants[c] for c in ids], heads,
                [staged[c][1][0] for c in ids], [staged[c][1][1] for c in ids])
        if clear:
            await conn.execute(_CLEAR.format(items=items), [c for c, _ in clear], [p for _, p in clear])
        if delete:
            await conn.execute(_DELETE.format(items=items), *map(list, zip(*delete, strict=True)))
        if len(insert) >= COPY_MIN:
            await conn.copy_records_to_table(f"{target.table}_items", schema_name="projections", records=insert,
                                             columns=("client_id", "part", "ord", "data"))
        else:
            update = insert + update
        if update:
            await conn.execute(_PUT.format(items=items), *map(list, zip(*update, strict=True)))
        if emit and state == "active" and projection.feed_kind:
            if staged:
                await emit_changes(conn, projection.feed_kind, tenants)
            # A clinic's change (its crisis text, say) shows in its clients' views: say so too,
            # in order with the rest, so processes drop views they hold (see view_cache.py).
            clinics = sorted({str(e.tenant_id) for e in events if e.stream_id.startswith(CLINIC_STREAM_PREFIX)})
            if clinics:
                await conn.execute("SELECT pg_notify($1, $2)", CHANGES_CHANNEL,
                                   ",".join(CLINIC_CHANGE_PREFIX + t for t in clinics))
    target.checkpoint = new_checkpoint
    for client, entry in staged.items():
        target.remember(client, entry)
    return len(relevant)


async def _refold_for_storage(store: EventStore, target: Target, client: UUID, until: str, tenant: UUID,
                              docs: dict[UUID, Held], rewrite: set[UUID]) -> RowSealer:
    """Replace what is held for ``client`` by a re-fold from the store up to ``until`` (its key is
    destroyed: the personal fields read erased now) to be rewritten in full; how to store it."""
    projection = target.projection
    doc, key_id = await refold_client(store, projection, client, until=until, version=target.fold_version)
    docs[client] = (doc if doc is not None else projection.initial(client, tenant), docs[client][1], ())
    rewrite.add(client)
    return await sealer_after_refold(keys_of(store), projection.name, client, key_id)


# --- the live runner ----------------------------------------------------------------------

BatchCallback = Callable[[str, int, str], Awaitable[None] | None]


class ProjectionRunner:
    """Runs projections live: standby until it holds their locks, then catch up and follow.

    Given several projections (the app runs all of them in one runner), it reads each page
    of events once and applies it to every projection in turn, each in its own short
    transaction. Run side by side, separate runners would each decode the same events and
    keep write transactions open at the same moments, each holding back the others' read
    horizon (core/events/postgres.py); in turn, the horizon is held by one at a time.

    ``await runner.run()`` runs until cancelled (reconnecting and re-electing on errors).
    """

    def __init__(self, projections: Projection[Any] | Sequence[Projection[Any]], store: EventStore, *, dsn: str,
                 batch_size: int = 500, poll_interval: float = 1.0, standby_interval: float = 1.0,
                 cache_size: int = 20_000, on_batch: BatchCallback | None = None) -> None:
        self.projections = [projections] if isinstance(projections, Projection) else list(projections)
        if not self.projections:
            raise ValueError("a runner needs at least one projection")
        self.store = store
        self.dsn = dsn
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.standby_interval = standby_interval
        self.cache_size = cache_size
        self.on_batch = on_batch
        self.leading = False
        self.targets: list[Target] = []
        self._conn: asyncpg.Connection | None = None
        self._caught_up = asyncio.Event()

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.projections)

    @property
    def checkpoint(self) -> str | None:
        """The least advanced checkpoint of this runner's projections (None before it leads)."""
        return min((t.checkpoint for t in self.targets), key=_cp) if self.targets else None

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost, server restart, …: re-elect after a pause
                log.warning("projection_runner_error", projection=self.name,
                            error=type(exc).__name__, detail=str(exc)[:200])
            finally:
                self.leading = False
                self._caught_up.clear()
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.terminate()
                    self._conn = None
            await asyncio.sleep(self.standby_interval)

    async def wait_caught_up(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until this runner leads and has caught up with the store once."""
        await asyncio.wait_for(self._caught_up.wait(), timeout)

    async def _lead(self, conn: asyncpg.Connection) -> None:
        """Hold every projection's run lock (all or none, so two runners never split a group)."""
        await hold_leadership(conn, [lock_key("run", p.name) for p in self.projections],
                              standby_interval=self.standby_interval)

    async def _session(self) -> None:
        conn = self._conn = await asyncpg.connect(self.dsn)
        await self._lead(conn)
        self.leading = True
        wake = asyncio.Event()
        await conn.add_listener(EVENTS_CHANNEL, lambda *_: wake.set())
        self.targets = [await self._new_target(conn, p) for p in self.projections]
        for target in self.targets:
            log.info("projection_leading", projection=target.projection.name, version=target.version,
                     checkpoint=target.checkpoint)
        retry = 0
        while True:
            wake.clear()
            after = self.checkpoint
            assert after is not None
            events = await self.store.read_all(after=after, limit=self.batch_size)
            if events:
                retry = 0
                await self._apply(conn, events)
            if len(events) < self.batch_size:
                self._caught_up.set()
                if not events and retry < len(_RETRY_DELAYS):
                    # Woken but nothing readable yet: the append's transaction is below the
                    # store's read horizon only once every older transaction in the cluster has
                    # ended (often within a millisecond). Look again shortly rather than
                    # waiting for the next wake-up or the poll interval.
                    await asyncio.sleep(_RETRY_DELAYS[retry])
                    retry += 1
                    continue
                try:
                    # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation
                    # that races with the wake-up, and the runner would never stop.
                    async with asyncio.timeout(self.poll_interval):
                        await wake.wait()
                    retry = 0
                except TimeoutError:
                    retry = len(_RETRY_DELAYS)
                    await conn.execute("SELECT 1")  # notice a lost session (and lock) while idle

    async def _apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        """Apply a page to every projection not already past it (after a re-target, one may lag)."""
        for i, target in enumerate(self.targets):
            at = _cp(target.checkpoint)
            page = [e for e in events if _cp(e.checkpoint) > at] if at > _cp(events[0].checkpoint) else events
            if not page:
                continue
            try:
                folded = await apply_batch(conn, self.store, target, page)
            except VersionMoved:  # switched by a rebuild: follow the new version from its checkpoint
                self.targets[i] = await self._new_target(conn, target.projection)
                continue
            if self.on_batch is not None:
                result = self.on_batch(target.projection.name, folded, target.checkpoint)
                if asyncio.iscoroutine(result):
                    await result

    async def _new_target(self, conn: asyncpg.Connection, projection: Projection[Any]) -> Target:
        target = await active_target(conn, projection)
        target.cache_size = self.cache_size
        return target


async def catch_up(conn: asyncpg.Connection, store: EventStore, target: Target, *, batch_size: int = 500,
                   emit: bool = True, until_head: str | None = None,
                   progress: Callable[[int, str], None] | None = None) -> int:
    """Fold batches into ``target`` until the store has nothing more (or ``until_head`` is reached)."""
    total = 0
    while True:
        events = await store.read_all(after=target.checkpoint, limit=batch_size, until=until_head)
        if not events:
            return total
        total += await apply_batch(conn, store, target, events, emit=emit)
        if progress is not None:
            progress(len(events), target.checkpoint)
        if len(events) < batch_size:
            return total
