"""An in-memory event store for pure unit tests: the same contract, no database.

Single-process and single-event-loop only; it runs the same validation,
encryption and hash chain as the PostgreSQL store (via ``StoreBase``) so the
contract suite means the same thing for both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from functools import partial
from uuid import UUID

import msgspec

from alliance.core.errors import ConcurrencyConflict, ValidationError
from alliance.core.events.codec import GENESIS_HASH, HASH_SCHEME, EventCodec, chain_hash
from alliance.core.events.crypto import KeyRing, MemoryKeyRing
from alliance.core.events.envelope import NewEvent, RecordedEvent
from alliance.core.events.store import (
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


class _Row(msgspec.Struct, frozen=True):
    prepared: PreparedEvent
    stream_id: str
    position: int
    recorded_at: datetime
    hash: bytes


class MemoryEventStore(StoreBase):
    def __init__(self, codec: EventCodec, keys: KeyRing | None = None) -> None:
        super().__init__(codec, keys or MemoryKeyRing())
        self._rows: list[_Row] = []
        self._streams: dict[str, list[_Row]] = {}
        self._by_id: dict[UUID, _Row] = {}
        self._changed = asyncio.Condition()

    def _check(self, stream_id: str, expected: int, ids: list[UUID]) -> AppendResult | None:
        rows = self._streams.get(stream_id, [])
        if ids and ids[0] in self._by_id:
            existing = [self._by_id.get(i) for i in ids]
            if any(r is None or r.stream_id != stream_id for r in existing):
                raise ValidationError("these event ids were already recorded with other content",
                                      code="event_id_reused", field="events")
            last = existing[-1]
            assert last is not None
            return AppendResult(stream_id=stream_id, version=last.prepared.version,
                                positions=tuple(r.position for r in existing if r),
                                checkpoint=format_checkpoint(last.position, last.position), duplicate=True)
        if len(rows) != expected:
            raise ConcurrencyConflict(f"stream {stream_id} is at version {len(rows)}, not {expected}",
                                      stream_id=stream_id, expected=expected, actual=len(rows))
        if any(i in self._by_id for i in ids):
            raise ValidationError("these event ids were already recorded with other content",
                                  code="event_id_reused", field="events")
        return None

    def _write(self, stream_id: str, prepared: list[PreparedEvent]) -> AppendResult:
        rows = self._streams.setdefault(stream_id, [])
        prev = rows[-1].hash if rows else GENESIS_HASH
        now = datetime.now(UTC)
        for item in prepared:
            position = len(self._rows) + 1
            prev = chain_hash(prev, item.digest, position, position, now)
            row = _Row(item, stream_id, position, now, prev)
            rows.append(row)
            self._rows.append(row)
            self._by_id[item.event.event_id] = row
        written = rows[-len(prepared):]
        return AppendResult(stream_id=stream_id, version=len(rows), positions=tuple(r.position for r in written),
                            checkpoint=format_checkpoint(len(self._rows), len(self._rows)),
                            events=tuple(self._recorded(stream_id, r.prepared, r.position, r.position, r.recorded_at,
                                                        r.hash) for r in written))

    async def append(self, stream_id: str, events: Sequence[NewEvent], expected_version: int) -> AppendResult:
        prepared = await self._prepare(stream_id, events, expected_version)
        done = self._check(stream_id, expected_version, [e.event_id for e in events])
        if done is not None:
            return done
        result = self._write(stream_id, prepared)
        async with self._changed:
            self._changed.notify_all()
        return result

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        if not appends:
            raise ValidationError("nothing to append", code="no_events", field="appends")
        if len({a.stream_id for a in appends}) != len(appends):
            raise ValidationError("a stream appears twice in one append", code="duplicate_stream",
                                  field="appends")
        staged = []
        for item in appends:
            validate_stream_id(item.stream_id)
            validate_expected_version(item.expected_version)
            prepared = await self._prepare(item.stream_id, item.events, item.expected_version) if item.events else []
            staged.append((item, prepared, self._check(item.stream_id, item.expected_version,
                                                       [e.event_id for e in item.events])))
        results = []
        for item, prepared, done in staged:  # every check passed: now write (atomic in one loop step)
            if done is not None:
                results.append(done)
            elif prepared:
                results.append(self._write(item.stream_id, prepared))
            else:
                results.append(AppendResult(stream_id=item.stream_id, version=item.expected_version,
                                            positions=(), checkpoint=None))
        async with self._changed:
            self._changed.notify_all()
        return results

    async def _event(self, row: _Row) -> RecordedEvent:
        p = row.prepared
        e = p.event
        keys = await self._keys_for({(e.subject_id, p.key_id)} if p.key_id is not None else set())
        return self._decode_row(row.position, row.position, e.event_id, row.stream_id, p.version, p.type,
                                p.schema_version, e.tenant_id, e.subject_id, e.actor_id, str(e.actor_role),
                                e.occurred_at, row.recorded_at, e.correlation_id, e.causation_id, p.key_id,
                                HASH_SCHEME, p.payload, p.secret, row.hash, keys)

    async def read_stream(self, stream_id: str, *, from_version: int = 1, to_version: int | None = None,
                          recorded_until: datetime | None = None) -> list[RecordedEvent]:
        validate_stream_id(stream_id)
        return [await self._event(r) for r in self._streams.get(stream_id, [])
                if r.prepared.version >= from_version and (to_version is None or r.prepared.version <= to_version)
                and (recorded_until is None or r.recorded_at <= recorded_until)]

    async def stream_version(self, stream_id: str) -> int:
        return len(self._streams.get(validate_stream_id(stream_id), []))

    async def read_event(self, event_id: UUID) -> RecordedEvent | None:
        row = self._by_id.get(event_id)
        return await self._event(row) if row is not None else None

    async def read_all(self, *, after: str = START, limit: int = 1000, tenant_id: UUID | None = None,
                       subject_id: UUID | None = None, recorded_until: datetime | None = None,
                       until: str | None = None) -> list[RecordedEvent]:
        _, position = parse_checkpoint(after)
        if not isinstance(limit, int) or limit < 1:
            raise ValidationError("limit must be a positive integer", code="invalid_limit", field="limit")
        last = parse_checkpoint(until)[1] if until is not None else None
        found = []
        for row in self._rows[position:]:
            if last is not None and row.position > last:
                break
            if tenant_id is not None and row.prepared.event.tenant_id != tenant_id:
                continue
            if subject_id is not None and row.prepared.event.subject_id != subject_id:
                continue
            if recorded_until is not None and row.recorded_at > recorded_until:
                continue
            found.append(await self._event(row))
            if len(found) == limit:
                break
        return found

    async def read_subject(self, subject_id: UUID, *, tenant_id: UUID | None = None,
                           recorded_until: datetime | None = None, until: str | None = None
                           ) -> list[RecordedEvent]:
        return await self.read_all(limit=max(1, len(self._rows)), subject_id=subject_id, tenant_id=tenant_id,
                                   recorded_until=recorded_until, until=until)

    async def head(self) -> str:
        return format_checkpoint(len(self._rows), len(self._rows)) if self._rows else START

    def _grown_past(self, seen: int) -> bool:
        return len(self._rows) > seen

    async def subscribe(self, *, after: str = START, tenant_id: UUID | None = None,
                        subject_id: UUID | None = None, batch: int = 500) -> AsyncIterator[RecordedEvent]:
        checkpoint = after
        while True:
            seen = len(self._rows)
            events = await self.read_all(after=checkpoint, limit=batch, tenant_id=tenant_id, subject_id=subject_id)
            for event in events:
                yield event
                checkpoint = event.checkpoint
            if len(events) < batch:
                async with self._changed:
                    await self._changed.wait_for(partial(self._grown_past, seen))
