"""Reminder events, the client's reminder settings and the clinic's reminder text.

Streams:

* ``reminders-{client_id}`` (subject: the client): the client's reminder address (sealed, like
  every personal field, under the client's data key: an erasure destroys it), channel opt-outs
  and opt-ins, whether reminders continue after discharge for self-monitoring, and every
  decision of the reminder process (``reminder.scheduled / suppressed / sent / failed``),
  each with an id derived from the reminder id, so a restart never records one twice.
* ``reminders-clinic-{tenant_id}`` (subject: the clinic): the clinic's own reminder text.

A reminder is about one administration (``core/schedules.py``): its id derives from the
administration id, which derives from the goal, the instrument and the due date.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal
from uuid import UUID

import msgspec
from msgspec.structs import replace

from alliance.core.events.base import ERASED, EventPayload, OptionalPersonalStr
from alliance.core.identity import Role

REMINDER_NAMESPACE = UUID("c5a3e0b2-7d14-4f6e-a8b9-3e2d1c0f9a57")

#: The notification kind the dispatcher composes reminders for (``delivery.py``).
REMINDER_KIND = "reminder"

#: The reminder process records as this system actor (role ``system``).
REMINDER_ACTOR_ID = uuid.uuid5(REMINDER_NAMESPACE, "reminder-process")
REMINDER_ROLE = Role.SYSTEM

#: What a reminder says when the clinic has set nothing: no instrument, no clinical word.
DEFAULT_SUBJECT = "A questionnaire is ready"
DEFAULT_BODY = "A questionnaire is ready for you. Open the link below to answer it; it works once."

SuppressionReason = Literal["consent_not_in_force", "discharged", "opted_out"]


def reminders_stream(client_id: UUID) -> str:
    return f"reminders-{client_id}"


def clinic_reminders_stream(tenant_id: UUID) -> str:
    return f"reminders-clinic-{tenant_id}"


def reminder_id_for(administration_id: UUID) -> UUID:
    """One reminder per administration, whatever the channels and however often it is decided."""
    return uuid.uuid5(REMINDER_NAMESPACE, f"{administration_id}:reminder")


def decision_event_id(reminder_id: UUID) -> UUID:
    """Scheduled *or* suppressed: a reminder is decided once, whichever it was."""
    return uuid.uuid5(REMINDER_NAMESPACE, f"{reminder_id}:decision")


def outcome_event_id(reminder_id: UUID, channel: str) -> UUID:
    """Sent *or* failed (given up), once per channel."""
    return uuid.uuid5(REMINDER_NAMESPACE, f"{reminder_id}:{channel}:outcome")


# --- the process's decisions --------------------------------------------------------------

class ReminderScheduled(EventPayload, tag="reminder.scheduled", kw_only=True, frozen=True):
    """A reminder is to go out now through ``channels``, with the one-time link ``link_id``."""

    reminder_id: UUID
    administration_id: UUID
    instrument_id: str
    goal_id: UUID | None = None
    due_on: date
    channels: tuple[str, ...]
    notification_ids: tuple[UUID, ...]
    link_id: UUID
    decided_at: datetime


class ReminderSuppressed(EventPayload, tag="reminder.suppressed", kw_only=True, frozen=True):
    """A reminder that is not sent, and why (consent, discharge, opt-out)."""

    reminder_id: UUID
    administration_id: UUID
    instrument_id: str
    goal_id: UUID | None = None
    due_on: date
    reason: SuppressionReason
    decided_at: datetime


class ReminderSent(EventPayload, tag="reminder.sent", kw_only=True, frozen=True):
    reminder_id: UUID
    notification_id: UUID
    channel: str
    message_id: str
    sent_at: datetime


class ReminderFailed(EventPayload, tag="reminder.failed", kw_only=True, frozen=True):
    """The channel gave up on this reminder (its attempts are on the notification's stream)."""

    reminder_id: UUID
    notification_id: UUID
    channel: str
    error: str
    failed_at: datetime


# --- the client's settings ----------------------------------------------------------------

class ReminderContactSet(EventPayload, tag="reminder.contact_set", kw_only=True, frozen=True):
    """The client's email address for reminders (sealed); ``None`` clears it."""

    email: OptionalPersonalStr = None
    by: UUID
    by_role: Role


class ReminderChannelOptedOut(EventPayload, tag="reminder.channel_opted_out", kw_only=True, frozen=True):
    channel: str
    by: UUID
    by_role: Role


class ReminderChannelOptedIn(EventPayload, tag="reminder.channel_opted_in", kw_only=True, frozen=True):
    channel: str
    by: UUID
    by_role: Role


class SelfMonitoringRemindersSet(EventPayload, tag="reminder.self_monitoring_set", kw_only=True, frozen=True):
    """Whether reminders go on after discharge (the client's own self-monitoring)."""

    after_discharge: bool
    by: UUID
    by_role: Role


class ReminderTextSet(EventPayload, tag="reminder.text_set", kw_only=True, frozen=True):
    """The clinic's reminder subject and text (the link is added below the text)."""

    tenant_id: UUID
    subject: str
    body: str
    by: UUID
    by_role: Role


REMINDER_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    ReminderScheduled, ReminderSuppressed, ReminderSent, ReminderFailed, ReminderContactSet,
    ReminderChannelOptedOut, ReminderChannelOptedIn, SelfMonitoringRemindersSet, ReminderTextSet)


# --- states -------------------------------------------------------------------------------

class ReminderState(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A client's reminder settings and the reminders already decided."""

    client_id: UUID
    email: str | None = None
    opted_out: frozenset[str] = frozenset()
    after_discharge: bool = False
    #: reminder id → "scheduled" | "suppressed"
    decided: dict[UUID, str] = {}
    #: (reminder id, channel) → "sent" | "failed"
    outcomes: dict[tuple[UUID, str], str] = {}

    def address(self) -> str | None:
        return None if self.email is None or self.email == ERASED else self.email


def initial_reminder_state(client_id: UUID) -> ReminderState:
    return ReminderState(client_id=client_id)


def evolve_reminders(state: ReminderState, event: EventPayload) -> ReminderState:
    match event:
        case ReminderScheduled(reminder_id=rid):
            return replace(state, decided={**state.decided, rid: "scheduled"})
        case ReminderSuppressed(reminder_id=rid):
            return replace(state, decided={**state.decided, rid: "suppressed"})
        case ReminderSent(reminder_id=rid, channel=channel):
            return replace(state, outcomes={**state.outcomes, (rid, channel): "sent"})
        case ReminderFailed(reminder_id=rid, channel=channel):
            return replace(state, outcomes={**state.outcomes, (rid, channel): "failed"})
        case ReminderContactSet(email=email):
            return replace(state, email=email)
        case ReminderChannelOptedOut(channel=channel):
            return replace(state, opted_out=state.opted_out | {channel})
        case ReminderChannelOptedIn(channel=channel):
            return replace(state, opted_out=state.opted_out - {channel})
        case SelfMonitoringRemindersSet(after_discharge=after):
            return replace(state, after_discharge=after)
        case _:
            return state


class ClinicReminderState(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    tenant_id: UUID
    subject: str = DEFAULT_SUBJECT
    body: str = DEFAULT_BODY


def initial_clinic_reminder_state(tenant_id: UUID) -> ClinicReminderState:
    return ClinicReminderState(tenant_id=tenant_id)


def evolve_clinic_reminders(state: ClinicReminderState, event: EventPayload) -> ClinicReminderState:
    if isinstance(event, ReminderTextSet):
        return replace(state, subject=event.subject, body=event.body)
    return state
