from __future__ import annotations

import uuid
from datetime import UTC, datetime
from uuid import UUID

from alliance.core.events.base import EventPayload
from alliance.core.events.codec import EventCodec
from alliance.core.events.envelope import NewEvent
from alliance.core.identity import Role
from tests.events.sample_events import SAMPLE_EVENTS, SAMPLE_UPCASTERS


def sample_codec() -> EventCodec:
    return EventCodec(SAMPLE_EVENTS, SAMPLE_UPCASTERS)


def new_event(payload: EventPayload, *, tenant: UUID, subject: UUID, event_id: UUID | None = None) -> NewEvent:
    return NewEvent(event_id=event_id or uuid.uuid4(), payload=payload, tenant_id=tenant, subject_id=subject,
                    actor_id=subject, actor_role=Role.CLIENT, occurred_at=datetime.now(UTC))


async def read_all_settled(store, count: int, **query) -> list:
    """``read_all`` once ``count`` events are visible.

    Readers of the global order only see below the oldest running transaction
    (never skipping an event), so a write becomes visible there a moment after
    it commits whenever another transaction on the server is still open.
    """
    import asyncio

    events: list = []
    for _ in range(200):
        events = await store.read_all(**query)
        if len(events) >= count:
            return events
        await asyncio.sleep(0.01)
    return events
