"""Notification events: a work item ("notification requested"), each delivery attempt, and
each escalation decision, with ids derived from what they are about so a restart never
records one twice.

Streams: ``notification-{notification_id}`` (the request at version 1, then one event per
attempt: attempt n is version n + 1) and ``escalation-{flag_id}`` (one decision). The
subject of every event is the client the notification is about (the tenant when none):
they carry no personal field (no address, no message text), so an erasure has nothing to
scrub here and an export shows who was told about the client's flag, and when.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal
from uuid import UUID

from alliance.core.events.base import EventPayload
from alliance.core.identity import Role

#: Namespace of every id derived here (notification ids, attempt event ids, decision ids).
NOTIFICATION_NAMESPACE = UUID("9a2d6c1e-4b7f-4e0a-8c35-6d1f0b2e7a94")

#: The dispatcher records as this system actor (role ``system``).
DISPATCHER_ACTOR_ID = uuid.uuid5(NOTIFICATION_NAMESPACE, "notification-dispatcher")
DISPATCHER_ROLE = Role.SYSTEM

RecipientKind = Literal["staff", "client"]

#: Kinds of work item this dispatcher composes messages for (``core/notifications/messages.py``).
RISK_FLAG_RAISED = "risk_flag.raised"
RISK_FLAG_ESCALATED = "risk_flag.escalated"


def notification_stream(notification_id: UUID) -> str:
    return f"notification-{notification_id}"


def escalation_stream(flag_id: UUID) -> str:
    return f"escalation-{flag_id}"


def notification_id_for(kind: str, reference_id: UUID, recipient_id: UUID, channel: str) -> UUID:
    """One notification per (kind, thing it is about, recipient, channel), stable across restarts."""
    return uuid.uuid5(NOTIFICATION_NAMESPACE, f"{kind}:{reference_id}:{recipient_id}:{channel}")


def request_event_id(notification_id: UUID) -> UUID:
    return uuid.uuid5(NOTIFICATION_NAMESPACE, f"{notification_id}:requested")


def attempt_event_id(notification_id: UUID, attempt: int) -> UUID:
    """Attempt ``n`` has one id whatever its outcome: it is recorded sent *or* failed, once."""
    return uuid.uuid5(NOTIFICATION_NAMESPACE, f"{notification_id}:attempt:{attempt}")


def escalation_event_id(flag_id: UUID) -> UUID:
    return uuid.uuid5(NOTIFICATION_NAMESPACE, f"{flag_id}:escalation")


class NotificationRequested(EventPayload, tag="notification.requested", kw_only=True, frozen=True):
    """A work item: tell ``recipient_id`` about ``reference_id`` through ``channel``.

    Any process may record one (the risk-flag policy here; reminders later); the dispatcher
    delivers every kind. No address and no text: the address is looked up when sending and
    the text is composed from ``kind``, so neither is ever stored twice or outlives a change.
    """

    notification_id: UUID
    kind: str
    channel: str
    recipient_kind: RecipientKind = "staff"
    recipient_id: UUID
    client_id: UUID | None = None
    reference_id: UUID
    #: Why this recipient (e.g. "care_team", "primary_clinician", "duty_clinician").
    reason: str
    requested_at: datetime


class NotificationSent(EventPayload, tag="notification.sent", kw_only=True, frozen=True):
    notification_id: UUID
    attempt: int
    channel: str
    #: The message id the channel used (the same on every attempt: a receiver can drop repeats).
    message_id: str
    sent_at: datetime


class NotificationFailed(EventPayload, tag="notification.failed", kw_only=True, frozen=True):
    notification_id: UUID
    attempt: int
    channel: str
    #: A failure class (``SMTPConnectError``, ``no_address``, ``no_channel``), never a server's text.
    error: str
    failed_at: datetime
    #: When the next attempt is due; ``None`` with ``final``.
    retry_at: datetime | None = None
    final: bool = False


class EscalationDecided(EventPayload, tag="notification.escalation_decided", kw_only=True, frozen=True):
    """An unacknowledged flag's escalation: who is told and why (the recorded decision)."""

    flag_id: UUID
    client_id: UUID
    recipients: tuple[UUID, ...]
    #: "unacknowledged" (primary + duty), "discharged" or "primary_inactive" (duty only);
    #: "no_duty_clinician" when the clinic named none and its administrators are told.
    reason: str
    interval_hours: float
    raised_at: datetime
    decided_at: datetime


NOTIFICATION_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    NotificationRequested, NotificationSent, NotificationFailed, EscalationDecided)
