"""What a notification channel plugin implements, and the message it is handed.

A channel is returned by the ``register_notification_channels`` hook (sync, declarative);
its ``send`` is a coroutine the app's dispatcher awaits, one message at a time. A channel
raises to say the attempt failed (``DeliveryFailed`` with ``permanent=True`` when retrying
cannot help); the dispatcher records the attempt, retries with backoff, and logs only ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from uuid import UUID

#: A channel's name: lower-case, short, stable (it is recorded in every attempt event).
CHANNEL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to one recipient. ``to``, ``subject`` and ``body`` stay out of ``repr`` so
    that a traceback or a debug print never writes an address or the text into a log."""

    #: Stable across attempts (derived from the notification id): receivers can drop repeats.
    message_id: str
    notification_id: UUID
    tenant_id: UUID
    kind: str
    recipient_id: UUID
    #: The recipient's address for this channel's ``address_kind`` (None when it needs none).
    to: str | None = field(repr=False)
    subject: str = field(repr=False)
    body: str = field(repr=False)
    #: Where the recipient acts on it (staff app link), or None.
    link: str | None = field(default=None, repr=False)


class DeliveryFailed(Exception):
    """A channel's failed attempt. ``code`` is recorded (no server text: it can echo an address)."""

    def __init__(self, code: str, *, permanent: bool = False) -> None:
        super().__init__(code)
        self.code = code
        self.permanent = permanent


@runtime_checkable
class NotificationChannel(Protocol):
    #: Unique among the installed channels (a duplicate stops start-up).
    name: str
    #: The kind of address the channel needs from the recipient ("email"), or None (a channel
    #: that posts to one clinic-wide endpoint).
    address_kind: str | None

    async def send(self, message: OutgoingMessage) -> None:
        """Deliver ``message`` or raise. Must not log ``to``, ``subject`` or ``body``."""
        ...
