"""What the notification dispatcher needs to deliver reminders: the text and the address.

Both are read when sending (never stored with the request): the clinic's current reminder
text (``reminder.text_set``, or the plain default) with the reminder's one-time link below
it, re-derived from the link id, and the client's current reminder address (sealed at rest,
``ERASED`` once their key is destroyed, and then there is none). Nothing here logs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from alliance.core.events.store import EventStore
from alliance.core.handling import StateCache
from alliance.core.notifications.events import NotificationRequested, notification_stream
from alliance.core.notifications.messages import Text
from alliance.core.questionnaire_links import link_id_for_reminder, token_for
from alliance.core.reminders.events import REMINDER_KIND
from alliance.core.reminders.sources import clinic_text, reminder_settings


def link_url(public_url: str, key: bytes, link_id: UUID) -> str:
    return f"{public_url.rstrip('/')}/q/{token_for(key, link_id)}"


class ReminderDelivery:
    """The reminder composer and the client address lookup for one dispatcher."""

    def __init__(self, store: EventStore, key: bytes) -> None:
        self.store = store
        self.key = key
        self._states = StateCache(size=5_000)
        # The cached settings hold decrypted addresses: an erasure anywhere (or a missed
        # notification of one) drops them.
        for hook in ("on_key_destroyed", "on_notification_gap"):
            register = getattr(store, hook, None)
            if register is not None:
                register(lambda *_: self._states.clear())

    async def compose(self, request: NotificationRequested, public_url: str) -> Text:
        # The request's own stream names its clinic (the request carries no tenant field).
        first = await self.store.read_stream(notification_stream(request.notification_id), to_version=1)
        clinic = await clinic_text(self.store, first[0].tenant_id, self._states)
        return Text(subject=clinic.subject, body=clinic.body,
                    link=link_url(public_url, self.key, link_id_for_reminder(request.reference_id)))

    async def address(self, tenant_id: UUID, client_id: UUID, address_kind: str) -> str | None:
        if address_kind != "email":
            return None
        prefs, _ = await reminder_settings(self.store, client_id, self._states)
        return prefs.address()

    def composers(self) -> dict[str, Callable[..., Awaitable[Text]]]:
        return {REMINDER_KIND: self.compose}
