"""Reminder settings: where reminders reach a client, channel opt-out and opt-in, reminders
after discharge, what a client's reminders did, and the clinic's reminder text."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post

from alliance.api.auth import Principal
from alliance.api.commands import CommandResult, build, result_response
from alliance.api.input_limits import BoundedBody, Label, Statement
from alliance.api.routes.common import readable_client, run_command, visible_client
from alliance.api.state import AppServices
from alliance.core.reminders import preferences as p
from alliance.core.reminders.events import (
    ReminderFailed,
    ReminderScheduled,
    ReminderSent,
    ReminderSuppressed,
    clinic_reminders_stream,
    evolve_clinic_reminders,
    evolve_reminders,
    initial_clinic_reminder_state,
    initial_reminder_state,
    reminders_stream,
)


def _channels(svc: AppServices) -> list[str]:
    return [c.name for c in svc.channels]


async def _on_reminders(svc: AppServices, client_id: UUID, command: Any) -> Any:
    return await svc.handler.handle_on(
        command, stream_id=reminders_stream(client_id), subject_id=client_id,
        initial=initial_reminder_state(client_id), evolve=evolve_reminders,
        reads=lambda: svc.handler.load_client(client_id),
        decide=lambda state, client: p.decide_preferences(command, state, client, channels=_channels(svc)))


class ContactBody(BoundedBody, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Where reminders reach the client (sealed at rest like every personal field)."""

    #: The client's email address for reminders; ``null`` clears it.
    email: Label | None = None  # type: ignore[valid-type]


class SelfMonitoringBody(BoundedBody, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: True: reminders go on after discharge, for the client's own self-monitoring.
    after_discharge: bool


class ReminderTextBody(BoundedBody, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The clinic's reminder: a subject line and a short text (the one-time link goes below it)."""

    #: One line; never the questionnaire's name (it shows on a lock screen).
    subject: Label  # type: ignore[valid-type]
    #: Nothing clinical beyond "a questionnaire is ready".
    body: Statement  # type: ignore[valid-type]


@post("/clients/{client_id:uuid}/reminder-contact", operation_id="setReminderContact", tags=["reminders"],
      status_code=201, summary="Set (or clear) the email address reminders are sent to",
      description="By the client or their proxy, or a clinician on the care team recording what the client gave.")
async def set_contact(request: Request[Any, Any, Any], client_id: UUID, data: ContactBody, principal: Principal,
                      svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response[Any]:
        await visible_client(svc, principal, client_id)
        command = build(p.SetReminderContact, data, principal, command_id)
        return result_response(command, await _on_reminders(svc, client_id, command))

    return await run_command(request, svc, principal, work)


@post("/clients/{client_id:uuid}/reminder-channels/{channel:str}/opt-out", operation_id="optOutOfReminderChannel",
      tags=["reminders"], status_code=201, summary="Stop reminders through one channel",
      description="By the client or their proxy, or a clinician on the care team recording the client's wish. "
                  "Reminders due while every channel that could reach the client is opted out are recorded as "
                  "suppressed (reason opted_out).")
async def opt_out(request: Request[Any, Any, Any], client_id: UUID, channel: str, principal: Principal,
                  svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response[Any]:
        await visible_client(svc, principal, client_id)
        command = build(p.OptOutOfChannel, None, principal, command_id, channel=channel)
        return result_response(command, await _on_reminders(svc, client_id, command))

    return await run_command(request, svc, principal, work)


@post("/clients/{client_id:uuid}/reminder-channels/{channel:str}/opt-in", operation_id="optInToReminderChannel",
      tags=["reminders"], status_code=201, summary="Receive reminders through a channel again",
      description="Only the client (or their proxy): being contacted again is their call.")
async def opt_in(request: Request[Any, Any, Any], client_id: UUID, channel: str, principal: Principal,
                 svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response[Any]:
        await visible_client(svc, principal, client_id)
        command = build(p.OptInToChannel, None, principal, command_id, channel=channel)
        return result_response(command, await _on_reminders(svc, client_id, command))

    return await run_command(request, svc, principal, work)


@post("/clients/{client_id:uuid}/reminder-self-monitoring", operation_id="setSelfMonitoringReminders",
      tags=["reminders"], status_code=201, summary="Keep (or stop) reminders after discharge",
      description="Only the client (or their proxy). After discharge reminders are suppressed (reason discharged) "
                  "unless the client asked for them to continue for their own self-monitoring.")
async def set_self_monitoring(request: Request[Any, Any, Any], client_id: UUID, data: SelfMonitoringBody,
                              principal: Principal, svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response[Any]:
        await visible_client(svc, principal, client_id)
        command = build(p.SetSelfMonitoringReminders, data, principal, command_id)
        return result_response(command, await _on_reminders(svc, client_id, command))

    return await run_command(request, svc, principal, work)


class ReminderEntry(msgspec.Struct, kw_only=True):
    """One reminder as decided, and what its channels did."""

    #: The reminder's id (derived from the administration it is about).
    reminder_id: UUID
    #: The administration (one due date of one attached measure) it is about.
    administration_id: UUID
    #: The instrument (shown to the care team and the client here, never in the message).
    instrument_id: str
    #: The client's local date the administration was due.
    due_on: date
    #: "scheduled" or "suppressed".
    decision: str
    #: Why it was suppressed: consent_not_in_force, discharged or opted_out.
    reason: str | None = None
    #: Channels it was sent through.
    sent: list[str] = []
    #: Channels that gave up on it.
    failed: list[str] = []
    #: When it was decided.
    decided_at: datetime


class ReminderView(msgspec.Struct, kw_only=True):
    """A client's reminder settings and reminders (the address itself is never shown here)."""

    #: Whether an email address for reminders is set.
    has_email: bool
    #: Channels the client opted out of.
    opted_out: list[str]
    #: Whether reminders continue after discharge.
    after_discharge: bool
    #: The installed channels reminders can go through.
    channels: list[str]
    #: Reminders decided so far, newest first.
    reminders: list[ReminderEntry]


@get("/clients/{client_id:uuid}/reminders", operation_id="getReminders", tags=["reminders"],
     summary="A client's reminder settings and what their reminders did")
async def get_reminders(request: Request[Any, Any, Any], client_id: UUID, principal: Principal,
                        svc: AppServices) -> ReminderView:
    await readable_client(svc, request, principal, client_id, "history")
    events = await svc.store.read_stream(reminders_stream(client_id))
    state = initial_reminder_state(client_id)
    entries: dict[UUID, ReminderEntry] = {}
    for e in events:
        state = evolve_reminders(state, e.payload)
        payload = e.payload
        if isinstance(payload, ReminderScheduled | ReminderSuppressed):
            entries[payload.reminder_id] = ReminderEntry(
                reminder_id=payload.reminder_id, administration_id=payload.administration_id,
                instrument_id=payload.instrument_id, due_on=payload.due_on,
                decision="scheduled" if isinstance(payload, ReminderScheduled) else "suppressed",
                reason=payload.reason if isinstance(payload, ReminderSuppressed) else None,
                decided_at=payload.decided_at)
        elif isinstance(payload, ReminderSent | ReminderFailed) and payload.reminder_id in entries:
            target = entries[payload.reminder_id]
            (target.sent if isinstance(payload, ReminderSent) else target.failed).append(payload.channel)
    return ReminderView(has_email=state.address() is not None, opted_out=sorted(state.opted_out),
                        after_discharge=state.after_discharge, channels=_channels(svc),
                        reminders=sorted(entries.values(), key=lambda r: r.decided_at, reverse=True))


@post("/clinic/reminder-text", operation_id="setReminderText", tags=["reminders"], status_code=201,
      summary="The clinic's reminder subject and text (the default: 'A questionnaire is ready')",
      description="Admins only. A text naming an installed questionnaire (by id or title) is refused: a reminder "
                  "says a questionnaire is ready, never which one, and never anything clinical.")
async def set_reminder_text(request: Request[Any, Any, Any], data: ReminderTextBody, principal: Principal,
                            svc: AppServices) -> Response[CommandResult]:
    names = [n for d in svc.instruments.definitions() for n in (d.id, d.title)]

    async def work(command_id: UUID) -> Response[Any]:
        command = build(p.SetReminderText, data, principal, command_id)
        outcome = await svc.handler.handle_on(
            command, stream_id=clinic_reminders_stream(principal.tenant_id), subject_id=principal.tenant_id,
            initial=initial_clinic_reminder_state(principal.tenant_id), evolve=evolve_clinic_reminders,
            reads=lambda: svc.handler.load_clinic(principal.tenant_id),
            decide=lambda _state, clinic: p.decide_text(command, clinic, instrument_names=names))
        return result_response(command, outcome)

    return await run_command(request, svc, principal, work)


REMINDER_ROUTES = [set_contact, opt_out, opt_in, set_self_monitoring, get_reminders, set_reminder_text]
