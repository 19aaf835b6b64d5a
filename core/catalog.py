"""Every domain event payload type, for the codec (one tagged union, stable type names)."""

from __future__ import annotations

from core.client import CLIENT_EVENT_TYPES, CLIENT_UPCASTERS
from core.clinic import CLINIC_EVENT_TYPES
from core.events.base import EventPayload
from core.goal import GOAL_EVENT_TYPES
from core.notifications.events import NOTIFICATION_EVENT_TYPES

ALL_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    *CLIENT_EVENT_TYPES, *GOAL_EVENT_TYPES, *CLINIC_EVENT_TYPES, *NOTIFICATION_EVENT_TYPES)

#: Upcasters by (stable type name, schema version they read); the codec chains them.
UPCASTERS = {**CLIENT_UPCASTERS}
