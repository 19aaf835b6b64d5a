"""The envelope: everything recorded about an event besides its payload.

``NewEvent`` is what a caller appends; ``RecordedEvent`` is what the store hands
back, with the fields only the database can assign (version, global position,
transaction id, recorded-at from the database clock, hash chain).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

import msgspec

from alliance.core.events.base import EventPayload
from alliance.core.identity import Role

#: Namespace for event ids derived from a command id (uuid5), so that a retried
#: command produces the very same event ids and the store records it once.
EVENT_ID_NAMESPACE = UUID("6f1c3f0e-2f7b-4a36-9d55-2a4f0c1d9b11")

MAX_STREAM_ID_LENGTH = 200


def derive_event_id(command_id: UUID, index: int) -> UUID:
    """The id of the ``index``-th event a command produces (stable across retries)."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{command_id}:{index}")


class NewEvent(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    event_id: UUID
    payload: EventPayload
    tenant_id: UUID
    subject_id: UUID
    actor_id: UUID
    actor_role: Role
    occurred_at: datetime
    correlation_id: UUID | None = None
    causation_id: UUID | None = None

    @property
    def type(self) -> str:
        return type(self.payload).type_name()


class RecordedEvent(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    event_id: UUID
    stream_id: str
    version: int
    position: int
    type: str
    schema_version: int
    tenant_id: UUID
    subject_id: UUID
    actor_id: UUID
    actor_role: Role
    occurred_at: datetime
    recorded_at: datetime
    correlation_id: UUID | None
    causation_id: UUID | None
    key_id: UUID | None
    hash_scheme: int
    hash: bytes
    payload: EventPayload
    #: Opaque, ordered position in the global log: ``"<txid>.<position>"``.
    checkpoint: str = ""
