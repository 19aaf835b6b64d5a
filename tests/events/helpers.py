from __future__ import annotations

import uuid
from datetime import UTC, datetime
from uuid import UUID

from core.events.base import EventPayload
from core.events.codec import EventCodec
from core.events.envelope import NewEvent
from core.identity import Role
from tests.events.sample_events import SAMPLE_EVENTS, SAMPLE_UPCASTERS


def sample_codec() -> EventCodec:
    return EventCodec(SAMPLE_EVENTS, SAMPLE_UPCASTERS)


def new_event(payload: EventPayload, *, tenant: UUID, subject: UUID, event_id: UUID | None = None) -> NewEvent:
    return NewEvent(event_id=event_id or uuid.uuid4(), payload=payload, tenant_id=tenant, subject_id=subject,
                    actor_id=subject, actor_role=Role.CLIENT, occurred_at=datetime.now(UTC))
