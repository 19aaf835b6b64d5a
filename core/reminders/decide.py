"""The reminder process's decision for one client at one moment (pure: time, states, channels
and the link key are passed in; ``runner.py`` does every read and write).

For each measure attached to the episode, or to a goal that still makes measures due, the administration open today
(``core/schedules.py``) gets one reminder once its reminder time has come, if it is due or
overdue and not answered: ``reminder.scheduled`` with a one-time link and one notification
request per channel that can reach the client, or ``reminder.suppressed`` with the reason:

1. consent for measurement is not in force (``consent_not_in_force``);
2. the client is discharged and has not asked for reminders to continue for their own
   self-monitoring (``discharged``);
3. every channel that could reach them is one they opted out of (``opted_out``).

With no channel able to reach the client at all (no address given yet, no clinic-wide channel)
nothing is decided: the reminder waits for an address (giving one wakes the client's decision
again) rather than being written off, since the address often follows the schedule by minutes.

A reminder already decided is never decided again (its id derives from the administration),
so the same call after a crash, or on another leader, decides nothing new. ``next_at`` is
when this client needs looking at again (the next reminder time), or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal
from uuid import UUID

from alliance.core.client import ClientState
from alliance.core.consent import ConsentScope
from alliance.core.events.base import EventPayload
from alliance.core.notifications.events import NotificationRequested, notification_id_for
from alliance.core.questionnaire_links import (
    QuestionnaireLinkIssued,
    link_id_for_reminder,
    token_for,
    token_hash,
)
from alliance.core.reminders.events import (
    REMINDER_ACTOR_ID,
    REMINDER_KIND,
    REMINDER_ROLE,
    ReminderScheduled,
    ReminderState,
    ReminderSuppressed,
    SuppressionReason,
    reminder_id_for,
)
from alliance.core.schedules import Observation, Schedule, next_on_or_after, status, zone_of

#: The client's local time a reminder goes out on its administration's day: the morning, so
#: it is read at the start of the day the questionnaire is due, not in the night.
REMIND_AT = time(9, 0)


@dataclass(frozen=True)
class Attached:
    """One measure attached to a goal (or to the episode: ``goal_id`` None, owned by the
    client), with what its schedule needs."""

    owner_id: UUID
    goal_id: UUID | None
    instrument_id: str
    schedule: Schedule
    checkpoints: tuple[date, ...] = ()


@dataclass(frozen=True)
class ChannelInfo:
    name: str
    address_kind: str | None


@dataclass
class Decision:
    #: Payloads for the client's reminder stream (scheduled / suppressed), in order.
    reminders: list[EventPayload] = field(default_factory=list)
    #: One link per scheduled reminder (each on its own stream).
    links: list[QuestionnaireLinkIssued] = field(default_factory=list)
    #: One notification request per scheduled reminder and channel (each on its own stream).
    requests: list[NotificationRequested] = field(default_factory=list)
    next_at: datetime | None = None


def remind_at(schedule: Schedule, due_on: date) -> datetime:
    return datetime.combine(due_on, REMIND_AT, tzinfo=zone_of(schedule))


def _suppression(client: ClientState, prefs: ReminderState, channels: Sequence[ChannelInfo],
                 now: datetime) -> tuple[SuppressionReason | Literal["no_address"] | None, list[str]]:
    if not client.consent_in_force(ConsentScope.MEASUREMENT, now):
        return "consent_not_in_force", []
    if client.discharged and not prefs.after_discharge:
        return "discharged", []
    reachable = [c.name for c in channels if c.name not in prefs.opted_out
                 and (c.address_kind is None or (c.address_kind == "email" and prefs.address()))]
    if reachable:
        return None, reachable
    could = [c.name for c in channels if c.address_kind is None or (c.address_kind == "email" and prefs.address())]
    return ("opted_out" if could or prefs.opted_out else "no_address"), []


def decide(*, client: ClientState, prefs: ReminderState, attached: Sequence[Attached],
           observations: Sequence[Observation], channels: Sequence[ChannelInfo], now: datetime,
           key: bytes, link_hours: float) -> Decision:
    decision = Decision()
    if client.erased or not client.enrolled or client.tenant_id is None:
        return decision
    wake: list[datetime] = []
    for measure in attached:
        schedule = measure.schedule
        read = status(schedule, owner_id=measure.owner_id, instrument_id=measure.instrument_id,
                      goal_id=measure.goal_id, measurements=observations, now=now, checkpoints=measure.checkpoints)
        today = now.astimezone(zone_of(schedule)).date()
        following = next_on_or_after(schedule, today + timedelta(days=1), measure.checkpoints)
        if following is not None:
            wake.append(remind_at(schedule, following))
        current = read.current
        if current is None or current.state not in ("due", "overdue"):
            continue
        rid = reminder_id_for(current.administration_id)
        if rid in prefs.decided:
            continue
        at = remind_at(schedule, current.due_on)
        if now < at:
            wake.append(at)
            continue
        reason, reachable = _suppression(client, prefs, channels, now)
        if reason == "no_address":
            continue  # undecided until an address is given (that wakes this client again)
        if reason is not None:
            decision.reminders.append(ReminderSuppressed(
                reminder_id=rid, administration_id=current.administration_id, instrument_id=measure.instrument_id,
                goal_id=measure.goal_id, due_on=current.due_on, reason=reason, decided_at=now))
            continue
        link_id = link_id_for_reminder(rid)
        # The link lasts the setting's hours, but never past the administration's window: an
        # answer after it would be another administration's.
        window_closes = datetime.combine(current.window_ends, time(), tzinfo=zone_of(schedule))
        expires = min(now + timedelta(hours=link_hours), window_closes)
        decision.links.append(QuestionnaireLinkIssued(
            link_id=link_id, client_id=client.client_id, instrument_id=measure.instrument_id,
            administration_id=current.administration_id,
            goal_ids=() if measure.goal_id is None else (measure.goal_id,),
            token_hash=token_hash(token_for(key, link_id)), expires_at=expires, via="reminder",
            reminder_id=rid, by=REMINDER_ACTOR_ID, by_role=REMINDER_ROLE))
        nids = []
        for channel in reachable:
            nid = notification_id_for(REMINDER_KIND, rid, client.client_id, channel)
            nids.append(nid)
            decision.requests.append(NotificationRequested(
                notification_id=nid, kind=REMINDER_KIND, channel=channel, recipient_kind="client",
                recipient_id=client.client_id, client_id=client.client_id, reference_id=rid, reason="reminder",
                requested_at=now))
        decision.reminders.append(ReminderScheduled(
            reminder_id=rid, administration_id=current.administration_id, instrument_id=measure.instrument_id,
            goal_id=measure.goal_id, due_on=current.due_on, channels=tuple(reachable),
            notification_ids=tuple(nids), link_id=link_id, decided_at=now))
    decision.next_at = min(wake) if wake else None
    return decision
