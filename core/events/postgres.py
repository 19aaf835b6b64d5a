"""The PostgreSQL event store (asyncpg).

Never skipping an event (docs/clinical-sources.md §3): a sequence gives each event its global
``position``, but two concurrent transactions can commit out of position order,
so a reader that has seen position 11 may later find 10 appear. We keep writers
concurrent and make readers safe with a *transaction-id watermark*: every event
stores the id of the transaction that wrote it (``tx_id``, a ``xid8``), the
global order is ``(tx_id, position)``, and readers only return events whose
``tx_id`` is below ``pg_snapshot_xmin(pg_current_snapshot())`` — the oldest
transaction still running. Every transaction below that horizon has ended, so
no event can ever appear behind a reader's checkpoint. The price is that a long
open write transaction holds the horizon back: every append is therefore one
short statement (``append_events`` in SQL), so the horizon moves on within
milliseconds. Serialising writers with a table lock (the other known cure)
would cost the concurrency the benchmarks show is worth most.

LISTEN/NOTIFY only wakes subscribers; they always read from the table. The
NOTIFY is sent *after* the append commits, coalesced by a background task, since
a NOTIFY inside the append transaction would serialise all commits. Its payload names
the streams this process appended since the last one, with their new versions (JSON),
so other processes can drop cached states that are behind (``on_streams_appended``);
that is only a hint — a state used without reading is still checked by the append's
expected version — and an empty payload means "anything may have changed".

The same LISTEN connection receives key destructions (``KEYS_CHANNEL``), so it is
kept, not merely opened: a keeper task reconnects with backoff, health-checks it,
and treats every moment it is not listening as a *gap*: the key ring stops caching
(``KeyRing.distrust``) and every ``on_notification_gap`` listener (handler state,
view caches) empties its copies, at the start of the gap and again once LISTEN is
in force, so nothing decrypted with a key destroyed during the gap is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from alliance.core.errors import ConcurrencyConflict, EventDecodeError, OutcomeUnknown, ValidationError
from alliance.core.events.codec import HASH_SCHEME, EventCodec
from alliance.core.events.crypto import KEYS_CHANNEL, KeyRing
from alliance.core.events.envelope import NewEvent, RecordedEvent
from alliance.core.events.group_commit import GROUP_APPEND, GroupCommitter
from alliance.core.events.store import (
    _ROLES,
    START,
    AppendResult,
    PreparedEvent,
    StoreBase,
    StreamAppend,
    format_checkpoint,
    parse_checkpoint,
    validate_expected_version,
    validate_stream_id,
)
from alliance.core.logging import get_logger

log = get_logger("alliance.store")

EVENTS_CHANNEL = "alliance_events"

#: Listener keeper: reconnect backoff (first, longest) and the health-check interval, seconds.
LISTEN_BACKOFF = (0.05, 2.0)
LISTEN_HEALTH_INTERVAL = 2.0

_COLUMNS = ("position, tx_id::text::bigint AS tx, event_id, stream_id, version, type, schema_version, tenant_id, "
            "subject_id, actor_id, actor_role, occurred_at, recorded_at, correlation_id, causation_id, key_id, "
            "hash_scheme, payload, secret, hash")

_APPEND = ("SELECT r_position, r_tx, r_recorded_at, r_hash, r_duplicate FROM append_events("
           "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)")

# The common case, one event onto an existing stream, as one plain statement: lock the
# stream head at the expected version (the optimistic-concurrency check), and only then
# take a position and the transaction id — so the global order (tx, position) follows the
# order in which writers got the stream — insert the event chained to the old head, and
# move the head.
# No row back means "not the common case" (new stream, conflict, or a retry of a
# recorded append): ``append_events`` then sorts it out.
_APPEND_ONE = """
WITH head AS (
  SELECT s.head_hash FROM streams s WHERE s.stream_id = $1 AND s.version = $3 FOR UPDATE),
p AS (
  SELECT nextval('events_position_seq') AS pos, pg_current_xact_id() AS tx, now() AS rec, head.head_hash AS prev
  FROM head),
h AS (
  SELECT p.pos, p.tx, p.rec,
         sha256(p.prev || $16::bytea || int8send(p.pos) || int8send(p.tx::text::bigint)
                || int8send((extract(epoch FROM p.rec) * 1000000)::bigint)) AS hash
  FROM p),
ins AS (
  INSERT INTO events (position, tx_id, event_id, stream_id, version, type, schema_version, tenant_id, subject_id,
                      actor_id, actor_role, occurred_at, recorded_at, correlation_id, causation_id, key_id,
                      hash_scheme, payload, secret, digest, hash)
  SELECT h.pos, h.tx, $4, $1, $3 + 1, $5, $6, $2, $7, $8, $9, $10, h.rec, $11, $12, $13, $14, $15, $17, $16, h.hash
  FROM h
  RETURNING position, tx_id, recorded_at, hash)
UPDATE streams s SET version = $3 + 1, head_hash = ins.hash FROM ins WHERE s.stream_id = $1
RETURNING ins.position, ins.tx_id::text, ins.recorded_at, ins.hash, false"""

_HORIZON = "tx_id < pg_snapshot_xmin(pg_current_snapshot())"

#: Seconds between two wake-up NOTIFYs (subscribers also poll, so nothing waits longer).
NOTIFY_INTERVAL = 0.005
#: Longest NOTIFY payload sent (PostgreSQL refuses 8,000 bytes and more): a burst naming more
#: streams is split over several notifications of one statement.
NOTIFY_PAYLOAD_BYTES = 7_000

_CONNECTION_LOST = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, ConnectionError, OSError)


def notify_payloads(streams: dict[str, int]) -> list[str]:
    """The NOTIFY payloads naming ``streams`` (JSON objects stream id → version), each under
    ``NOTIFY_PAYLOAD_BYTES``; one empty payload for none."""
    if not streams:
        return [""]
    payloads: list[str] = []
    part: dict[str, int] = {}
    size = 2
    for stream_id, version in streams.items():
        entry = len(msgspec.json.encode(stream_id)) + len(str(version)) + 2
        if part and size + entry > NOTIFY_PAYLOAD_BYTES:
            payloads.append(msgspec.json.encode(part).decode())
            part, size = {}, 2
        part[stream_id] = version
        size += entry
    payloads.append(msgspec.json.encode(part).decode())
    return payloads


def streams_of_payload(payload: str) -> dict[str, int] | None:
    """What a NOTIFY on the events channel says moved; None: unknown (anything may have)."""
    if not payload:
        return None
    try:
        return msgspec.json.decode(payload, type=dict[str, int])
    except msgspec.DecodeError:
        return None


def _read_all_sql(*, tenant: bool, subject: bool, recorded_until: bool, until: bool) -> str:
    where = ["(tx_id, position) > ($1::text::xid8, $2)", _HORIZON]
    n = 3
    for flag, clause in ((tenant, "tenant_id"), (subject, "subject_id"), (recorded_until, "recorded_at")):
        if flag:
            n += 1
            where.append(f"{clause} {'<=' if clause == 'recorded_at' else '='} ${n}")
    if until:
        where.append(f"(tx_id, position) <= (${n + 1}::text::xid8, ${n + 2})")
    return f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY events.tx_id, events.position LIMIT $3"


class PostgresEventStore(StoreBase):
    def __init__(self, pool: asyncpg.Pool, codec: EventCodec, keys: KeyRing, *, dsn: str,
                 group_commit: bool = False) -> None:
        super().__init__(codec, keys)
        self._pool = pool
        #: Concurrent appends share one statement and one commit (core/events/group_commit.py).
        self.group: GroupCommitter | None = GroupCommitter(
            self._write_group, lost=_CONNECTION_LOST, translate=lambda exc: self._translate(exc, "", 0),
            on_written=self._signal_appended) if group_commit else None
        self._dsn = dsn  # for the dedicated LISTEN connection
        self._dirty = asyncio.Event()
        self._notifier: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._lost = asyncio.Event()
        self._waiters: set[asyncio.Event] = set()
        self._key_listeners: list[Callable[[UUID], None]] = []
        self._gap_listeners: list[Callable[[], None]] = []
        self._destroyed_seen: dict[UUID, asyncio.Event] = {}
        #: Streams appended by this process since the last NOTIFY, with their new versions.
        self._appended: dict[str, int] = {}
        # Weak where a listener is a bound method: a command handler (and its cache) that goes
        # away takes its listener with it, instead of every NOTIFY calling it for ever.
        self._append_listeners: list[Callable[[], Callable[[dict[str, int] | None], None] | None]] = []
        self.listen_gaps = 0  # how many times the LISTEN connection was lost (for /ready and tests)

    # -- lifecycle -----------------------------------------------------------
    async def close(self) -> None:
        # Not listening from here on, before the keeper is cancelled: its clean-up would otherwise
        # report the shutdown as a notification gap (a warning at every CLI verb's exit).
        self._listening.clear()
        for task in (self._notifier, self._keeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._notifier = self._keeper = None
        self.keys.distrust()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    def _signal_appended(self, streams: dict[str, int] | None = None) -> None:
        if streams:
            for stream_id, version in streams.items():
                if self._appended.get(stream_id, 0) < version:
                    self._appended[stream_id] = version
            self._tell_appended(streams)
        self._dirty.set()
        if self._notifier is None or self._notifier.done():
            self._notifier = asyncio.get_running_loop().create_task(self._notify_loop())

    async def _notify_loop(self) -> None:
        """Send one NOTIFY per burst of appends, after they committed."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not self._appended:
                # A group's rows are in, but its appends have not named their streams yet (they
                # do at once, and set the flag again): an empty payload would tell every
                # process that anything may have moved, and empty their caches.
                continue
            try:
                payloads = notify_payloads(self._appended)
                self._appended = {}
                async with self._pool.acquire() as conn:
                    # A wake-up need not be durable: its transaction commits without waiting for a
                    # WAL flush (SET LOCAL for this one statement), so it takes no flush from appends.
                    await conn.execute("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, p) "
                                       "FROM unnest($2::text[]) AS p", EVENTS_CHANNEL, payloads)
                # At most one wake-up per interval: under load a NOTIFY per append would cost
                # writers a third of their throughput, for no subscriber's benefit.
                await asyncio.sleep(NOTIFY_INTERVAL)
            except Exception as exc:  # subscribers still poll: a lost wake-up only adds latency
                log.warning("notify_failed", error=type(exc).__name__)
                await asyncio.sleep(0.1)

    # -- append --------------------------------------------------------------
    def _args(self, stream_id: str, expected: int, tenant_id: UUID, rows: Sequence[PreparedEvent]) -> tuple[Any, ...]:
        return (
            stream_id, tenant_id, expected,
            [r.event.event_id for r in rows], [r.type for r in rows], [r.schema_version for r in rows],
            [r.event.subject_id for r in rows], [r.event.actor_id for r in rows],
            [str(r.event.actor_role) for r in rows], [r.event.occurred_at for r in rows],
            [r.event.correlation_id for r in rows], [r.event.causation_id for r in rows],
            [r.key_id for r in rows], HASH_SCHEME, [r.payload for r in rows], [r.secret for r in rows],
            [r.digest for r in rows],
        )

    def _result(self, stream_id: str, expected: int, rows: Sequence[PreparedEvent], records: list[asyncpg.Record]
                ) -> AppendResult:
        if not records:
            return AppendResult(stream_id=stream_id, version=expected, positions=(), checkpoint=None)
        last = records[-1]
        duplicate = bool(last[4])
        return AppendResult(stream_id=stream_id, version=expected + len(records),
                            positions=tuple(r[0] for r in records),
                            checkpoint=format_checkpoint(int(last[1]), last[0]), duplicate=duplicate,
                            events=() if duplicate else tuple(
                                self._recorded(stream_id, row, r[0], r[1], r[2], r[3])
                                for row, r in zip(rows, records, strict=True)))

    @staticmethod
    def _translate(exc: Exception, stream_id: str, expected: int) -> Exception:
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if isinstance(exc, _CONNECTION_LOST) or sqlstate[:2] in {"08", "57"}:
            return OutcomeUnknown("the connection dropped during the append; retry with the same event ids "
                                  "to learn whether it was recorded")
        if not isinstance(exc, asyncpg.PostgresError):
            return exc
        if exc.sqlstate == "AL409":
            actual = int(getattr(exc, "detail", None) or 0)
            return ConcurrencyConflict(f"stream {stream_id} is at version {actual}, not {expected}",
                                       stream_id=stream_id, expected=expected, actual=actual)
        if exc.sqlstate == "AL422" or isinstance(exc, asyncpg.UniqueViolationError):
            return ValidationError("these event ids were already recorded with other content",
                                   code="event_id_reused", field="events")
        return exc

    async def _append_single(self, stream_id: str, expected_version: int, rows: Sequence[PreparedEvent], *,
                             common_case: bool = True) -> list[asyncpg.Record]:
        """``common_case=False``: the head is known not to be simply at the expected version (a
        group passed the append over), so ``append_events``, which answers every case, goes first."""
        async with self._pool.acquire() as conn:
            records = []
            if common_case and len(rows) == 1 and expected_version > 0:
                r = rows[0]
                e = r.event
                records = await conn.fetch(
                    _APPEND_ONE, stream_id, e.tenant_id, expected_version, e.event_id, r.type, r.schema_version,
                    e.subject_id, e.actor_id, str(e.actor_role), e.occurred_at, e.correlation_id,
                    e.causation_id, r.key_id, HASH_SCHEME, r.payload, r.digest, r.secret)
            if not records:
                records = await conn.fetch(_APPEND, *self._args(stream_id, expected_version,
                                                                rows[0].event.tenant_id, rows))
        return records

    async def _write_group(self, args: tuple[Any, ...]) -> list[asyncpg.Record]:
        async with self._pool.acquire() as conn:
            return await conn.fetch(GROUP_APPEND, *args)

    async def append(self, stream_id: str, events: Sequence[NewEvent], expected_version: int) -> AppendResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        rows = await self._prepare(stream_id, events, expected_version)
        try:
            if self.group is None:
                records = await self._append_single(stream_id, expected_version, rows)
            else:
                records = await self.group.append(
                    stream_id, expected_version, rows, lambda: self._append_single(stream_id, expected_version, rows),
                    lambda: self._append_single(stream_id, expected_version, rows, common_case=False))
        except (asyncpg.PostgresError, *_CONNECTION_LOST) as exc:
            raise self._translate(exc, stream_id, expected_version) from exc
        result = self._result(stream_id, expected_version, rows, records)
        if not result.duplicate:
            self._signal_appended({stream_id: result.version})
        if log.is_enabled_for(10):  # DEBUG: building the fields costs more than the call when nobody logs them
            log.debug("appended", stream=stream_id, types=[r.type for r in rows], position=result.positions[-1],
                      duplicate=result.duplicate, ms=round((loop.time() - started) * 1000, 2))
        return result

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        if not appends:
            raise ValidationError("nothing to append", code="no_events", field="appends")
        if len({a.stream_id for a in appends}) != len(appends):
            raise ValidationError("a stream appears twice in one append", code="duplicate_stream",
                                  field="appends")
        prepared: list[tuple[StreamAppend, list[PreparedEvent]]] = []
        tenants = {e.tenant_id for a in appends for e in a.events}
        if len(tenants) != 1:
            raise ValidationError("one atomic append belongs to one tenant", code="mixed_tenants", field="events")
        tenant = tenants.pop()
        for item in appends:
            validate_stream_id(item.stream_id)
            validate_expected_version(item.expected_version)
            rows = await self._prepare(item.stream_id, item.events, item.expected_version) if item.events else []
            prepared.append((item, rows))
        results: list[AppendResult] = []
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                # A fixed order (by stream id) so two multi-stream appends cannot deadlock.
                for item, rows in sorted(prepared, key=lambda p: p[0].stream_id):
                    try:
                        records = await conn.fetch(_APPEND, *self._args(item.stream_id, item.expected_version,
                                                                        tenant, rows))
                    except (asyncpg.PostgresError, *_CONNECTION_LOST) as exc:
                        raise self._translate(exc, item.stream_id, item.expected_version) from exc
                    results.append(self._result(item.stream_id, item.expected_version, rows, records))
        except _CONNECTION_LOST as exc:
            raise self._translate(exc, appends[0].stream_id, appends[0].expected_version) from exc
        by_stream = {r.stream_id: r for r in results}
        ordered = [by_stream[a.stream_id] for a in appends]
        written = [r for r in ordered if r.positions]
        if written and all(r.duplicate for r in written) is False:
            self._signal_appended({r.stream_id: r.version for r in written if not r.duplicate})
        return ordered

    # -- read ----------------------------------------------------------------
    async def _rows_to_events(self, rows: list[asyncpg.Record]) -> list[RecordedEvent]:
        # Keys are looked up once per page (one await per subject, not per event), and the page's
        # payloads are decoded by one codec call (``EventCodec.decode_many``).
        keys = await self._keys_for({(r[8], r[15]) for r in rows if r[18] is not None and r[15] is not None})
        stored = []
        for r in rows:
            personal, erased, secret = None, False, r[18]
            if secret is not None and r[15] is not None:
                personal = keys[(r[8], r[15])].decrypt(secret, r[2].bytes)
                erased = personal is None
            stored.append((r[5], r[6], r[17], personal, erased, r[0], r[11]))
        payloads = self.codec.decode_many(stored)
        roles = _ROLES
        out = []
        for r, payload in zip(rows, payloads, strict=True):
            (position, tx, event_id, stream_id, version, type_name, schema_version, tenant_id, subject_id,
             actor_id, actor_role, occurred_at, recorded_at, correlation_id, causation_id, key_id, hash_scheme,
             _payload, _secret, hash_) = r
            role = roles.get(actor_role)
            if role is None:
                raise EventDecodeError(f"unknown actor role at position {position}", position=position,
                                       type_name=type_name)
            out.append(RecordedEvent(
                event_id=event_id, stream_id=stream_id, version=version, position=position, type=type_name,
                schema_version=schema_version, tenant_id=tenant_id, subject_id=subject_id, actor_id=actor_id,
                actor_role=role, occurred_at=occurred_at, recorded_at=recorded_at, correlation_id=correlation_id,
                causation_id=causation_id, key_id=key_id, hash_scheme=hash_scheme, hash=hash_, payload=payload,
                checkpoint=f"{tx}.{position}"))
        return out

    async def read_stream(self, stream_id: str, *, from_version: int = 1, to_version: int | None = None,
                          recorded_until: datetime | None = None) -> list[RecordedEvent]:
        validate_stream_id(stream_id)
        sql = (f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND version >= $2 AND version <= $3"
               + (" AND recorded_at <= $4" if recorded_until is not None else "") + " ORDER BY version")
        args: list[Any] = [stream_id, from_version, to_version if to_version is not None else 2**62]
        if recorded_until is not None:
            args.append(recorded_until)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(sql, *args)
        return await self._rows_to_events(rows)

    async def stream_version(self, stream_id: str) -> int:
        validate_stream_id(stream_id)
        async with self._pool.acquire() as conn:
            version = await conn.fetchval("SELECT version FROM streams WHERE stream_id = $1", stream_id)
        return int(version or 0)

    async def read_event(self, event_id: UUID) -> RecordedEvent | None:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM events WHERE event_id = $1", event_id)
        found = await self._rows_to_events(rows)
        return found[0] if found else None

    async def read_all(self, *, after: str = START, limit: int = 1000, tenant_id: UUID | None = None,
                       subject_id: UUID | None = None, recorded_until: datetime | None = None,
                       until: str | None = None) -> list[RecordedEvent]:
        tx, position = parse_checkpoint(after)
        if not isinstance(limit, int) or limit < 1:
            raise ValidationError("limit must be a positive integer", code="invalid_limit", field="limit")
        sql = _read_all_sql(tenant=tenant_id is not None, subject=subject_id is not None,
                            recorded_until=recorded_until is not None, until=until is not None)
        args: list[Any] = [str(tx), position, limit]
        args += [v for v in (tenant_id, subject_id, recorded_until) if v is not None]
        if until is not None:
            until_tx, until_position = parse_checkpoint(until)
            args += [str(until_tx), until_position]
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(sql, *args)
        return await self._rows_to_events(rows)

    async def read_subject(self, subject_id: UUID, *, tenant_id: UUID | None = None,
                           recorded_until: datetime | None = None, until: str | None = None
                           ) -> list[RecordedEvent]:
        where = ["subject_id = $1"]
        args: list[Any] = [subject_id]
        for clause, value in (("tenant_id = ${}", tenant_id), ("recorded_at <= ${}", recorded_until)):
            if value is not None:
                args.append(value)
                where.append(clause.format(len(args)))
        if until is not None:
            until_tx, until_position = parse_checkpoint(until)
            args += [str(until_tx), until_position]
            where.append(f"(tx_id, position) <= (${len(args) - 1}::text::xid8, ${len(args)})")
        sql = f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY events.tx_id, events.position"
        async with self._pool.acquire() as conn:  # one statement: one snapshot
            rows = await conn.fetch(sql, *args)
        return await self._rows_to_events(rows)

    async def head(self) -> str:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT tx_id::text::bigint AS tx, position FROM events WHERE {_HORIZON} "
                "ORDER BY events.tx_id DESC, events.position DESC LIMIT 1")
        return format_checkpoint(row[0], row[1]) if row else START

    # -- live ----------------------------------------------------------------
    @property
    def listening(self) -> bool:
        """True while this process receives the store's notifications (key destructions included)."""
        return self._listening.is_set()

    async def _ensure_listener(self) -> None:
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.get_running_loop().create_task(self._keep_listening(), name="store-listener")
        if not self._listening.is_set():
            await asyncio.wait_for(self._listening.wait(), 10.0)

    async def _keep_listening(self) -> None:
        """Hold one LISTEN connection for the process's life: reconnect with backoff, check its health."""
        delay = LISTEN_BACKOFF[0]
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncio.wait_for(asyncpg.connect(self._dsn), 10)  # dedicated: LISTEN is session state
                self._lost.clear()
                conn.add_termination_listener(self._on_listener_lost)
                await conn.add_listener(EVENTS_CHANNEL, self._on_events_notified)
                await conn.add_listener(KEYS_CHANNEL, self._on_keys)
                self._listener = conn
                self._end_gap()
                delay = LISTEN_BACKOFF[0]
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._lost.wait(), LISTEN_HEALTH_INTERVAL)
                    if self._lost.is_set():
                        break
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), LISTEN_HEALTH_INTERVAL)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listener_lost", error=type(exc).__name__)
            finally:
                if conn is not None and self._listener is conn:
                    self._listener = None
                self._begin_gap()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, LISTEN_BACKOFF[1])

    def _on_listener_lost(self, _conn: object) -> None:
        # Called by asyncpg as soon as the connection ends: the gap starts now, not at the next health check.
        self._begin_gap()
        self._lost.set()

    def _begin_gap(self) -> None:
        was_listening = self._listening.is_set()
        self._listening.clear()
        self.keys.distrust()
        if was_listening:
            self.listen_gaps += 1
            log.warning("notification_gap", gaps=self.listen_gaps)
        self._run_gap_listeners()
        self._on_events()  # subscribers read the table at once instead of waiting for a wake-up

    def _end_gap(self) -> None:
        # LISTEN is in force: anything destroyed from now on is announced. Whatever was cached or
        # decrypted during the gap goes now, before the cache is trusted again.
        self._run_gap_listeners()
        self.keys.trust()
        self._listening.set()
        self._on_events()

    def _run_gap_listeners(self) -> None:
        for listener in self._gap_listeners:
            try:
                listener()
            except Exception as exc:  # one broken listener must not keep the others from dropping copies
                log.error("gap_listener_failed", error=type(exc).__name__)

    def on_notification_gap(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` when notifications may have been missed (and again when they resume):
        it must drop everything it holds that was decrypted with a data key."""
        self._gap_listeners.append(listener)

    def notification_gap(self, cause: str) -> None:
        """Notifications may have been missed although LISTEN held (the read replica was promoted:
        core/events/replica.py): drop every cached key and decrypted copy, as a lost listener does."""
        self.listen_gaps += 1
        log.warning("notification_gap", gaps=self.listen_gaps, cause=cause)
        self.keys.forget_all()
        self._run_gap_listeners()

    def _on_events(self, *_: object) -> None:
        for waiter in self._waiters:
            waiter.set()

    def _on_events_notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_events()
        if self._append_listeners:
            self._tell_appended(streams_of_payload(payload))

    def _tell_appended(self, streams: dict[str, int] | None) -> None:
        alive = []
        for ref in self._append_listeners:
            listener = ref()
            if listener is None:  # its owner is gone
                continue
            alive.append(ref)
            try:
                listener(streams)
            except Exception as exc:  # a hint only: a broken listener must not stop the others
                log.error("append_listener_failed", error=type(exc).__name__)
        self._append_listeners = alive

    @property
    def follows_appends(self) -> bool:
        """True while every process's appends reach ``on_streams_appended`` listeners (this
        process's at once, others' through their NOTIFY, a few milliseconds after the commit)."""
        return self._listening.is_set()

    def on_streams_appended(self, listener: Callable[[dict[str, int] | None], None]) -> None:
        """Call ``listener({stream_id: version})`` when streams reach new versions (any process);
        ``listener(None)``: any stream may have moved (an empty or unreadable payload).
        A bound method is held weakly: it stops being called once its object is gone."""
        if hasattr(listener, "__self__") and hasattr(listener, "__func__"):
            self._append_listeners.append(weakref.WeakMethod(listener))  # type: ignore[arg-type]
        else:
            self._append_listeners.append(lambda: listener)

    def _on_keys(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            subject = UUID(payload)
            self.keys.forget(subject)
            for listener in self._key_listeners:
                listener(subject)
            seen = self._destroyed_seen.get(subject)
            if seen is not None:
                seen.set()

    async def listen(self) -> None:
        """Follow the store's notifications now (every process must, to drop keys destroyed elsewhere)."""
        await self._ensure_listener()

    def on_key_destroyed(self, listener: Callable[[UUID], None]) -> None:
        """Call ``listener(subject)`` whenever any process destroys a subject's data key."""
        self._key_listeners.append(listener)

    async def subscribe(self, *, after: str = START, tenant_id: UUID | None = None,
                        subject_id: UUID | None = None, batch: int = 500,
                        poll_interval: float = 1.0) -> AsyncIterator[RecordedEvent]:
        """Catch up in batches, then wait for a wake-up (or ``poll_interval``) and read again."""
        if self._keeper is None or self._keeper.done():  # wake-ups are a speed-up: polling never waits for them
            self._keeper = asyncio.get_running_loop().create_task(self._keep_listening(), name="store-listener")
        wake = asyncio.Event()
        self._waiters.add(wake)
        checkpoint = after
        try:
            while True:
                wake.clear()
                events = await self.read_all(after=checkpoint, limit=batch, tenant_id=tenant_id,
                                             subject_id=subject_id)
                for event in events:
                    yield event
                    checkpoint = event.checkpoint
                if len(events) < batch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), poll_interval)
        finally:
            self._waiters.discard(wake)

    async def notify_key_destroyed(self, subject_id: UUID, *, wait_seconds: float = 2.0) -> bool:
        """Tell every process to drop its cached data key for this subject, and wait until this
        process's own listener has received the announcement (PostgreSQL delivers a notification
        to every listening session at once, so the others have it too). ``destroy`` already
        announced it in its transaction; this repeats it for keys destroyed by other means
        (``reapply-erasures`` after a restore). False when it was not seen within ``wait_seconds``."""
        seen = self._destroyed_seen.setdefault(subject_id, asyncio.Event())
        try:
            async with self._pool.acquire() as conn:
                await conn.execute("SELECT pg_notify($1, $2)", KEYS_CHANNEL, str(subject_id))
            if not self._listening.is_set():
                return False
            try:
                await asyncio.wait_for(seen.wait(), wait_seconds)
            except TimeoutError:
                return False
            return True
        finally:
            self._destroyed_seen.pop(subject_id, None)
