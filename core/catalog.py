"""Every domain event payload type, for the codec (one tagged union, stable type names)."""

from __future__ import annotations

from alliance.core.client import CLIENT_EVENT_TYPES, CLIENT_UPCASTERS
from alliance.core.clinic import CLINIC_EVENT_TYPES
from alliance.core.events.base import EventPayload
from alliance.core.goal import GOAL_EVENT_TYPES, GOAL_UPCASTERS
from alliance.core.identity_links import IDENTITY_EVENT_TYPES
from alliance.core.notifications.events import NOTIFICATION_EVENT_TYPES
from alliance.core.questionnaire_links import LINK_EVENT_TYPES
from alliance.core.reminders.events import REMINDER_EVENT_TYPES

ALL_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    *CLIENT_EVENT_TYPES, *GOAL_EVENT_TYPES, *CLINIC_EVENT_TYPES, *NOTIFICATION_EVENT_TYPES, *IDENTITY_EVENT_TYPES,
    *REMINDER_EVENT_TYPES, *LINK_EVENT_TYPES)

#: Upcasters by (stable type name, schema version they read); the codec chains them.
UPCASTERS = {**CLIENT_UPCASTERS, **GOAL_UPCASTERS}
