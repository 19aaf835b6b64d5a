"""``GET /clinic/settings``: the clinic's settings in force, each with its last change.

The values are the clinic's state exactly as the deciders fold it (``evolve_clinic``,
``evolve_clinic_reminders``), so what an admin reads is what the next command is decided on;
the fold only notes, beside it, which event last set each setting. Clinic streams are short
(staff and settings changes), so they are read whole: no projection table to keep in step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from litestar import Response, get

from alliance.api.auth import Principal, require_role
from alliance.api.routes.clients import _crisis_information
from alliance.api.schemas.clinic import (
    AlertSetting,
    ClinicSettings,
    CrisisSetting,
    EscalationSetting,
    ReminderTextSetting,
    SettingChange,
    StaffContactSetting,
)
from alliance.api.state import AppServices
from alliance.core import clinic as k
from alliance.core.events.envelope import RecordedEvent
from alliance.core.identity import Role
from alliance.core.reminders.events import (
    ReminderTextSet,
    clinic_reminders_stream,
    evolve_clinic_reminders,
    initial_clinic_reminder_state,
)


def _change(event: RecordedEvent) -> SettingChange:
    payload: Any = event.payload  # every settings event says who set it (by, by_role)
    return SettingChange(at=event.recorded_at, by=payload.by, by_role=str(payload.by_role))


def settings_from(tenant_id: UUID, clinic_events: Iterable[RecordedEvent], reminder_events: Iterable[RecordedEvent],
                  *, shown_crisis_text: str) -> ClinicSettings:
    """The settings after these events (pure). ``shown_crisis_text``: what clients are shown now."""
    clinic = k.initial_clinic_state(tenant_id)
    last: dict[type, SettingChange] = {}
    contact_changes: dict[UUID, SettingChange] = {}
    for event in clinic_events:
        clinic = k.evolve_clinic(clinic, event.payload)
        if isinstance(event.payload, k.StaffContactSet):
            contact_changes[event.payload.staff_id] = _change(event)
        elif isinstance(event.payload, k.CrisisInformationSet | k.EscalationPolicySet | k.AlertPolicySet):
            last[type(event.payload)] = _change(event)
    reminders = initial_clinic_reminder_state(tenant_id)
    for event in reminder_events:
        reminders = evolve_clinic_reminders(reminders, event.payload)
        if isinstance(event.payload, ReminderTextSet):
            last[ReminderTextSet] = _change(event)
    return ClinicSettings(
        crisis_information=CrisisSetting(text=clinic.crisis_text, contacts=list(clinic.crisis_contacts),
                                         shown_text=shown_crisis_text, changed=last.get(k.CrisisInformationSet)),
        escalation_policy=EscalationSetting(escalation_interval_hours=clinic.escalation_interval_hours,
                                            duty_clinician_id=clinic.duty_clinician,
                                            changed=last.get(k.EscalationPolicySet)),
        alert_policy=AlertSetting(after_administrations=clinic.alert_after_administrations,
                                  after_weeks=clinic.alert_after_weeks, changed=last.get(k.AlertPolicySet)),
        reminder_text=ReminderTextSetting(subject=reminders.subject, body=reminders.body,
                                          changed=last.get(ReminderTextSet)),
        # Only whether an address is set: it is sealed personal data, and no route shows staff
        # addresses (a client's reminder address is likewise only ``has_email``).
        staff_contacts=[StaffContactSetting(staff_id=sid, has_email=clinic.email_of(sid) is not None,
                                            changed=contact_changes.get(sid))
                        for sid in sorted(clinic.staff, key=str)])


@get("/clinic/settings", operation_id="getClinicSettings", tags=["clinic"],
     summary="The clinic's settings in force (admin): crisis information, escalation and alert policies, "
             "reminder text, which staff have a work email; each with when and by whom it was last set",
     description="Admins only. Where nothing was set, the defaults in force are answered with `changed: null`: "
                 "no crisis text of the clinic's own (`text: null`; `shown_text` is what clients see), escalation "
                 "after 24 hours with no duty clinician, alerts after 8 administrations with no limit in weeks, "
                 "the default reminder text. Staff work emails are sealed personal data: only whether one is set "
                 "is answered, never the address.")
async def get_clinic_settings(principal: Principal, svc: AppServices) -> Response[ClinicSettings]:
    require_role(principal, Role.ADMIN, action="reading the clinic's settings")
    tenant = principal.tenant_id
    clinic_events = await svc.store.read_stream(k.clinic_stream(tenant))
    reminder_events = await svc.store.read_stream(clinic_reminders_stream(tenant))
    version = clinic_events[-1].version if clinic_events else 0
    shown = (await _crisis_information(svc, tenant, clinic_version=version))["text"]
    settings = settings_from(tenant, clinic_events, reminder_events, shown_crisis_text=shown)
    # An admin's page: never kept by a shared cache (it names staff and who changed what).
    return Response(settings, headers={"Cache-Control": "no-store"})
