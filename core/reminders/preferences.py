"""Commands on reminder settings, and their pure decisions.

The client (or their proxy) sets where reminders reach them, opts out of a channel and back
in, and says whether reminders go on after discharge. A clinician on the care team may record
an address or an opt-out the client asked for in session (never an opt-in: being contacted
again is the client's call). The clinic's administrators set the reminder text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import assert_never

from alliance.core.authority import (
    Command,
    by_of,
    is_client_voice,
    require_care_team_clinician,
    require_client_voice,
    require_not_auditor,
)
from alliance.core.client import ClientState
from alliance.core.clinic import MAX_EMAIL_LENGTH, ClinicState
from alliance.core.errors import DomainRuleViolation, Forbidden, NotFound, ValidationError
from alliance.core.events.base import EventPayload
from alliance.core.identity import Role
from alliance.core.reminders.events import (
    ReminderChannelOptedIn,
    ReminderChannelOptedOut,
    ReminderContactSet,
    ReminderState,
    ReminderTextSet,
    SelfMonitoringRemindersSet,
)

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_SUBJECT = 120
MAX_BODY = 2_000


class SetReminderContact(Command, tag="reminder.set_contact", kw_only=True, frozen=True):
    #: The client's email address for reminders; ``null`` clears it.
    email: str | None = None


class OptOutOfChannel(Command, tag="reminder.opt_out", kw_only=True, frozen=True):
    channel: str


class OptInToChannel(Command, tag="reminder.opt_in", kw_only=True, frozen=True):
    channel: str


class SetSelfMonitoringReminders(Command, tag="reminder.set_self_monitoring", kw_only=True, frozen=True):
    #: True: reminders go on after discharge (for the client's own self-monitoring).
    after_discharge: bool


class SetReminderText(Command, tag="reminder.set_text", kw_only=True, frozen=True):
    #: The subject line: never the instrument's name (a subject shows on a lock screen).
    subject: str
    #: The text above the link: the clinic's words, nothing clinical beyond "a questionnaire is ready".
    body: str


ReminderCommand = SetReminderContact | OptOutOfChannel | OptInToChannel | SetSelfMonitoringReminders


def _active(client: ClientState) -> None:
    if client.erased:
        raise DomainRuleViolation("This client's record has been erased.", code="client_erased")
    if not client.enrolled:
        raise NotFound("This client is not enrolled in a clinic.", code="client_not_enrolled")


def _voice_or_team(command: Command, client: ClientState) -> None:
    require_not_auditor(command.actor)
    if not is_client_voice(command.actor, client):
        require_care_team_clinician(command.actor, client)


def decide_preferences(command: ReminderCommand, state: ReminderState, client: ClientState, *,
                       channels: Iterable[str]) -> list[EventPayload]:
    """``channels``: the installed channel names (an opt-out names one of them)."""
    _active(client)
    by = by_of(command.actor)
    match command:
        case SetReminderContact():
            _voice_or_team(command, client)
            email = command.email.strip() if command.email is not None else None
            if email and (len(email) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email)):
                raise ValidationError("This is not an email address.", code="invalid_email", field="email")
            return [ReminderContactSet(email=email or None, **by)]
        case OptOutOfChannel() | OptInToChannel():
            # Who may first (a refusal says so whatever the channel), then which channel.
            if isinstance(command, OptInToChannel):
                require_client_voice(command.actor, client)
            else:
                _voice_or_team(command, client)
            if command.channel not in set(channels):
                raise ValidationError(f"There is no reminder channel {command.channel!r}.",
                                      code="unknown_channel", field="channel")
            if isinstance(command, OptInToChannel):
                if command.channel not in state.opted_out:
                    raise DomainRuleViolation("Reminders through this channel are not opted out.",
                                              code="not_opted_out", field="channel")
                return [ReminderChannelOptedIn(channel=command.channel, **by)]
            if command.channel in state.opted_out:
                raise DomainRuleViolation("Reminders through this channel are already opted out.",
                                          code="already_opted_out", field="channel")
            return [ReminderChannelOptedOut(channel=command.channel, **by)]
        case SetSelfMonitoringReminders():
            require_client_voice(command.actor, client)
            return [SelfMonitoringRemindersSet(after_discharge=command.after_discharge, **by)]
        case _:
            assert_never(command)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def names_it(text: str, name: str) -> bool:
    """Whether ``text`` names an instrument by ``name`` (an id or a title): its words in a row
    ("Patient Health Questionnaire"), or its letters run together however they are split
    ("phq9", "PHQ-9", "PHQ 9"). A title's parts count on their own ("PHQ-9 (Patient …)")."""
    words = _words(text)
    for part in re.split(r"[()]", name):
        wanted = _words(part)
        if not wanted:
            continue
        n, joined = len(wanted), "".join(wanted)
        if any(words[i:i + n] == wanted for i in range(len(words) - n + 1)):
            return True
        if any("".join(words[i:i + k]) == joined for k in (1, 2, 3) for i in range(len(words) - k + 1)):
            return True
    return False


def decide_text(command: SetReminderText, clinic: ClinicState, *,
                instrument_names: Iterable[str]) -> list[EventPayload]:
    """The clinic's reminder text; refused when it names an installed instrument (by id or
    title): a reminder says a questionnaire is ready, never which one."""
    require_not_auditor(command.actor)
    actor = command.actor
    if not (actor.role is Role.SYSTEM or (actor.role is Role.ADMIN and clinic.is_active(actor.id, Role.ADMIN))):
        raise Forbidden("Only an active administrator of this clinic can do this.", code="admin_only")
    subject, body = command.subject.strip(), command.body.strip()
    for field, value, limit in (("subject", subject, MAX_SUBJECT), ("body", body, MAX_BODY)):
        if not value:
            raise ValidationError(f"Please fill in the {field}.", code=f"{field}_required", field=field)
        if len(value) > limit or (field == "subject" and "\n" in value):
            raise ValidationError(f"The {field} is at most {limit} characters" + (" on one line." if
                                  field == "subject" else "."), code="too_long", field=field)
        if any(names_it(value, name) for name in instrument_names):
            raise ValidationError("A reminder never names the questionnaire (it can be read on a lock "
                                  "screen or by someone else).", code="names_instrument", field=field)
    return [ReminderTextSet(tenant_id=clinic.tenant_id, subject=subject, body=body, by=actor.id,
                            by_role=actor.role)]
