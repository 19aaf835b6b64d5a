"""The store API every implementation honours, and the work they share.

``PostgresEventStore`` (``core/events/postgres.py``) is the system of record;
``MemoryEventStore`` (``core/events/memory.py``) serves pure unit tests. One
contract suite (``tests/events/test_store_contract.py``) runs against both.

Shared here: validating an append before anything is touched, sealing personal
fields, computing content digests (``_prepare``), and turning a stored row back
into a typed ``RecordedEvent`` (``_decode_row``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

import msgspec

from alliance.core.errors import EventDecodeError, ValidationError
from alliance.core.events.codec import HASH_SCHEME, EventCodec, content_digest
from alliance.core.events.crypto import DataKey, KeyRing, seal
from alliance.core.events.envelope import MAX_STREAM_ID_LENGTH, NewEvent, RecordedEvent
from alliance.core.identity import Role

#: The checkpoint before the first event.
START = "0.0"

_ROLES = {str(role): role for role in Role}


def parse_checkpoint(checkpoint: str) -> tuple[int, int]:
    """``"<tx>.<position>"`` → (tx, position). Raises ValidationError when malformed."""
    try:
        tx, position = checkpoint.split(".", 1)
        parsed = int(tx), int(position)
    except (ValueError, AttributeError):
        raise ValidationError("checkpoint not understood", code="invalid_checkpoint", field="after") from None
    if parsed[0] < 0 or parsed[1] < 0:
        raise ValidationError("checkpoint not understood", code="invalid_checkpoint", field="after")
    return parsed


def format_checkpoint(tx: int, position: int) -> str:
    return f"{tx}.{position}"


class StreamAppend(msgspec.Struct, frozen=True, kw_only=True):
    """One stream's part of an atomic multi-stream append.

    ``events`` may be empty: the append then only asserts that the stream is
    still at ``expected_version`` when the others are written (a rule spanning
    streams, e.g. "the clinician is still on the care team").
    """

    stream_id: str
    expected_version: int
    events: Sequence[NewEvent] = ()


class AppendResult(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    #: The stream's version after the append (unchanged for an assertion).
    version: int
    positions: tuple[int, ...]
    checkpoint: str | None
    #: True when these event ids were already recorded: a retry, nothing new written.
    duplicate: bool = False
    #: The events as recorded by this append (what ``read_stream`` would answer for them);
    #: empty for a duplicate or an assertion.
    events: tuple[RecordedEvent, ...] = ()


class EventStore(Protocol):
    async def append(self, stream_id: str, events: Sequence[NewEvent], expected_version: int) -> AppendResult:
        """Append atomically if the stream is at ``expected_version`` (0: new stream).

        Raises ``ConcurrencyConflict`` (carrying the actual version, nothing written)
        or ``ValidationError``; re-appending the same event ids is accepted once and
        answered with ``duplicate=True``.
        """
        ...

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams in one transaction, each at its expected version."""
        ...

    async def read_stream(self, stream_id: str, *, from_version: int = 1, to_version: int | None = None,
                          recorded_until: datetime | None = None) -> list[RecordedEvent]: ...

    async def stream_version(self, stream_id: str) -> int: ...

    async def read_event(self, event_id: UUID) -> RecordedEvent | None:
        """One event by id (to tell whether a retried command was already recorded)."""
        ...

    async def read_all(self, *, after: str = START, limit: int = 1000, tenant_id: UUID | None = None,
                       subject_id: UUID | None = None, recorded_until: datetime | None = None,
                       until: str | None = None) -> list[RecordedEvent]:
        """Events in global order after ``after`` (a checkpoint), never skipping one."""
        ...

    async def read_subject(self, subject_id: UUID, *, tenant_id: UUID | None = None,
                           recorded_until: datetime | None = None, until: str | None = None
                           ) -> list[RecordedEvent]:
        """Every committed event of one subject (a client), in global order, from one snapshot.

        Unlike ``read_all`` this does not wait for the read horizon: it is a one-off read of
        what is committed now (as-of views, exports), not a cursor that must never skip.
        ``recorded_until`` and ``until`` (a checkpoint) bound it as in ``read_all``.
        """
        ...

    def subscribe(self, *, after: str = START, tenant_id: UUID | None = None,
                  subject_id: UUID | None = None, batch: int = 500) -> AsyncIterator[RecordedEvent]:
        """Catch up from ``after``, then follow the store live, forever."""
        ...

    async def head(self) -> str:
        """The checkpoint of the last event readers can see now."""
        ...


class PreparedEvent(msgspec.Struct, frozen=True):
    """An event ready to store: validated, personal fields sealed, digest computed."""

    event: NewEvent
    type: str
    schema_version: int
    version: int
    key_id: UUID | None
    payload: bytes
    secret: bytes | None
    digest: bytes


def validate_stream_id(stream_id: object) -> str:
    if not isinstance(stream_id, str) or not stream_id.strip():
        raise ValidationError("stream id must be a non-empty string", code="invalid_stream_id", field="stream_id")
    if len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise ValidationError(f"stream id is longer than {MAX_STREAM_ID_LENGTH} characters",
                              code="invalid_stream_id", field="stream_id")
    return stream_id


def validate_expected_version(expected: object) -> int:
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise ValidationError("expected version must be an integer ≥ 0", code="invalid_expected_version",
                              field="expected_version")
    return expected


class StoreBase:
    """Append preparation and row materialisation shared by the implementations."""

    def __init__(self, codec: EventCodec, keys: KeyRing) -> None:
        self.codec = codec
        self.keys = keys

    async def _prepare(self, stream_id: str, events: Sequence[NewEvent], expected: int) -> list[PreparedEvent]:
        validate_stream_id(stream_id)
        validate_expected_version(expected)
        if not events:
            raise ValidationError("an append needs at least one event", code="no_events", field="events")
        tenants = {e.tenant_id for e in events}
        if len(tenants) != 1:
            raise ValidationError("all events of one append belong to one tenant", code="mixed_tenants",
                                  field="events")
        if len({e.event_id for e in events}) != len(events):
            raise ValidationError("event ids repeat within one append", code="duplicate_event_id",
                                  field="events")
        prepared = []
        # One key lookup per subject per append, not per event (a measurement and its flag share one).
        keys: dict[tuple[UUID, UUID], DataKey] = {}
        for index, event in enumerate(events):
            if not isinstance(event, NewEvent):
                raise ValidationError("events must be NewEvent values", code="invalid_event", field="events")
            if not isinstance(event.actor_role, Role):
                raise ValidationError("unknown actor role", code="invalid_event", field="actor_role")
            if event.occurred_at.tzinfo is None:
                raise ValidationError("occurred_at needs a time-zone offset", code="invalid_event",
                                      field="occurred_at")
            encoded = self.codec.encode(event.payload)
            key_id = None
            secret = None
            if encoded.personal is not None:
                key = keys.get((event.tenant_id, event.subject_id))
                if key is None:
                    key = keys[(event.tenant_id, event.subject_id)] = await self.keys.key_for_append(
                        event.tenant_id, event.subject_id)
                assert key.cipher is not None
                key_id = key.key_id
                secret = seal(key.cipher, encoded.personal, event.event_id.bytes)
            version = expected + index + 1
            digest = content_digest(
                event_id=event.event_id, stream_id=stream_id, version=version, type_name=encoded.type,
                schema_version=encoded.schema_version, tenant_id=event.tenant_id,
                subject_id=event.subject_id, actor_id=event.actor_id, actor_role=str(event.actor_role),
                occurred_at=event.occurred_at, correlation_id=event.correlation_id,
                causation_id=event.causation_id, key_id=key_id, hash_scheme=HASH_SCHEME,
                payload=encoded.data, secret=secret)
            prepared.append(PreparedEvent(event, encoded.type, encoded.schema_version, version, key_id,
                                          encoded.data, secret, digest))
        return prepared

    @staticmethod
    def _recorded(stream_id: str, prepared: PreparedEvent, position: int, tx: int | str, recorded_at: datetime,
                  hash_: bytes) -> RecordedEvent:
        """An event just appended, as ``read_stream`` answers it, without reading it back: the
        typed payload is the one the stored bytes were encoded from."""
        e = prepared.event
        return RecordedEvent(
            event_id=e.event_id, stream_id=stream_id, version=prepared.version, position=position,
            type=prepared.type, schema_version=prepared.schema_version, tenant_id=e.tenant_id,
            subject_id=e.subject_id, actor_id=e.actor_id, actor_role=e.actor_role, occurred_at=e.occurred_at,
            recorded_at=recorded_at, correlation_id=e.correlation_id, causation_id=e.causation_id,
            key_id=prepared.key_id, hash_scheme=HASH_SCHEME, hash=hash_, payload=e.payload,
            checkpoint=f"{tx}.{position}")

    async def _keys_for(self, wanted: set[tuple[UUID, UUID]]) -> dict[tuple[UUID, UUID], DataKey]:
        return {(subject, key_id): await self.keys.key_for_read(subject, key_id) for subject, key_id in wanted}

    def _decode_row(self, position: int, tx: int, event_id: UUID, stream_id: str, version: int, type_name: str,
                    schema_version: int, tenant_id: UUID, subject_id: UUID, actor_id: UUID, actor_role: str,
                    occurred_at: datetime, recorded_at: datetime, correlation_id: UUID | None,
                    causation_id: UUID | None, key_id: UUID | None, hash_scheme: int, payload: bytes,
                    secret: bytes | None, hash_: bytes,
                    keys: dict[tuple[UUID, UUID], DataKey]) -> RecordedEvent:
        """A stored row as a typed event (keys for its subject already looked up)."""
        personal = None
        erased = False
        if secret is not None and key_id is not None:
            personal = keys[(subject_id, key_id)].decrypt(secret, event_id.bytes)
            erased = personal is None
        role = _ROLES.get(actor_role)
        if role is None:
            raise EventDecodeError(f"unknown actor role at position {position}", position=position,
                                   type_name=type_name)
        return RecordedEvent(
            event_id=event_id, stream_id=stream_id, version=version, position=position, type=type_name,
            schema_version=schema_version, tenant_id=tenant_id, subject_id=subject_id, actor_id=actor_id,
            actor_role=role, occurred_at=occurred_at, recorded_at=recorded_at,
            correlation_id=correlation_id, causation_id=causation_id, key_id=key_id,
            hash_scheme=hash_scheme, hash=hash_,
            payload=self.codec.decode(type_name, schema_version, payload, personal, erased=erased,
                                      position=position, occurred_at=occurred_at),
            checkpoint=f"{tx}.{position}")
