"""The clinic stream: who works at a clinic (tenant), the clinic's crisis information, staff
contact addresses, the risk-flag escalation policy and the not-on-track alert policy.

Stream id ``clinic-{tenant_id}``. Staff are activated and deactivated with a role
(clinician, supervisor, auditor, admin). The first administrator is activated by the
system (bootstrap); after that only an active administrator of the clinic manages staff.

A staff member's email address is personal data: it is a sealed field, and like every
clinic event it is sealed under the clinic's own data key (the clinic is the subject of its
stream, see ``core/handling.py``). The address is the clinic's work contact for its staff,
held by the clinic as controller; it is replaced or cleared with a new event, and is read
only by the notification dispatcher when it sends (never copied into notification events).
"""

from __future__ import annotations

import re
from typing import assert_never
from uuid import UUID

import msgspec
from msgspec.structs import replace

from alliance.core.authority import Command, require_not_auditor, require_tenant
from alliance.core.errors import DomainRuleViolation, Forbidden, ValidationError
from alliance.core.events.base import ERASED, EventPayload, OptionalPersonalStr
from alliance.core.identity import Role

STAFF_ROLES: frozenset[Role] = frozenset(
    {Role.CLINICIAN, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})
#: Who may be the clinic's duty clinician (they act on an escalated risk flag).
DUTY_ROLES: frozenset[Role] = frozenset({Role.CLINICIAN, Role.SUPERVISOR})

#: An unacknowledged risk flag escalates after this many hours unless the clinic sets another
#: interval, never more than ``MAX_ESCALATION_HOURS`` (issue 13: default 24 h, at most 72 h).
DEFAULT_ESCALATION_HOURS = 24.0
MAX_ESCALATION_HOURS = 72.0

#: "No reliable improvement" alerts: after this many administrations of one instrument (the
#: baseline included) with no reliable change, unless the clinic sets another number. Howard et
#: al. (1986) found about half of clients measurably improved by the eighth session, so a client
#: with no reliable change by then is in the slower half and worth a review
#: (docs/clinical-sources.md §1, "Not on track"). No default in weeks: a clinic may add one.
DEFAULT_ALERT_AFTER_ADMINISTRATIONS = 8
MAX_ALERT_AFTER_ADMINISTRATIONS = 100
MAX_ALERT_AFTER_WEEKS = 104.0

#: A deliberately loose check (one @, a dot in the domain, no spaces): the SMTP server is the
#: judge of deliverability; this only catches a name or a phone number typed in the wrong box.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_EMAIL_LENGTH = 254


def clinic_stream(tenant_id: UUID) -> str:
    return f"clinic-{tenant_id}"


# --- events -------------------------------------------------------------------------------

class StaffActivated(EventPayload, tag="clinic.staff_activated", kw_only=True, frozen=True):
    tenant_id: UUID
    staff_id: UUID
    role: Role
    by: UUID
    by_role: Role


class StaffDeactivated(EventPayload, tag="clinic.staff_deactivated", kw_only=True, frozen=True):
    tenant_id: UUID
    staff_id: UUID
    by: UUID
    by_role: Role


class CrisisInformationSet(EventPayload, tag="clinic.crisis_information_set", kw_only=True, frozen=True):
    """What the client is shown about getting help urgently (the clinic's text, not personal)."""

    tenant_id: UUID
    text: str
    contacts: tuple[str, ...] = ()
    by: UUID
    by_role: Role


class StaffContactSet(EventPayload, tag="clinic.staff_contact_set", kw_only=True, frozen=True):
    """A staff member's email address for notifications (sealed); ``None`` clears it."""

    tenant_id: UUID
    staff_id: UUID
    email: OptionalPersonalStr = None
    by: UUID
    by_role: Role


class EscalationPolicySet(EventPayload, tag="clinic.escalation_policy_set", kw_only=True, frozen=True):
    """When an unacknowledged risk flag escalates, and to which duty clinician."""

    tenant_id: UUID
    interval_hours: float
    duty_clinician_id: UUID | None = None
    by: UUID
    by_role: Role


class AlertPolicySet(EventPayload, tag="clinic.alert_policy_set", kw_only=True, frozen=True):
    """When a series with no reliable improvement raises a not-on-track alert."""

    tenant_id: UUID
    after_administrations: int
    after_weeks: float | None = None
    by: UUID
    by_role: Role


CLINIC_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    StaffActivated, StaffDeactivated, CrisisInformationSet, StaffContactSet, EscalationPolicySet,
    AlertPolicySet)


# --- commands -----------------------------------------------------------------------------

class ActivateStaff(Command, tag="clinic.activate_staff", kw_only=True, frozen=True):
    staff_id: UUID
    role: Role


class DeactivateStaff(Command, tag="clinic.deactivate_staff", kw_only=True, frozen=True):
    staff_id: UUID


class SetCrisisInformation(Command, tag="clinic.set_crisis_information", kw_only=True,
                           frozen=True):
    text: str
    contacts: tuple[str, ...] = ()


class SetStaffContact(Command, tag="clinic.set_staff_contact", kw_only=True, frozen=True):
    staff_id: UUID
    #: The staff member's work email address for notifications; ``null`` clears it.
    email: str | None = None


class SetEscalationPolicy(Command, tag="clinic.set_escalation_policy", kw_only=True, frozen=True):
    #: Hours after which an unacknowledged risk flag escalates (more than 0, at most 72).
    escalation_interval_hours: float = DEFAULT_ESCALATION_HOURS
    #: The clinic's designated duty clinician (an active clinician or supervisor).
    duty_clinician_id: UUID | None = None


class SetAlertPolicy(Command, tag="clinic.set_alert_policy", kw_only=True, frozen=True):
    #: Administrations of one instrument (baseline included, 2 to 100) with no reliable change
    #: after which a "no reliable improvement" alert is raised.
    after_administrations: int = DEFAULT_ALERT_AFTER_ADMINISTRATIONS
    #: Or weeks from the baseline (more than 0, at most 104), whichever comes first; null: none.
    after_weeks: float | None = None


ClinicCommand = (ActivateStaff | DeactivateStaff | SetCrisisInformation | SetStaffContact
                 | SetEscalationPolicy | SetAlertPolicy)


# --- state --------------------------------------------------------------------------------

class ClinicState(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    tenant_id: UUID
    #: Active staff and their role.
    staff: dict[UUID, Role] = {}
    crisis_text: str | None = None
    crisis_contacts: tuple[str, ...] = ()
    #: Staff work email addresses (personal; decrypted on read, ``ERASED`` once the key is gone).
    staff_emails: dict[UUID, str] = {}
    escalation_interval_hours: float = DEFAULT_ESCALATION_HOURS
    duty_clinician: UUID | None = None
    alert_after_administrations: int = DEFAULT_ALERT_AFTER_ADMINISTRATIONS
    alert_after_weeks: float | None = None

    def email_of(self, staff_id: UUID) -> str | None:
        """The address to notify ``staff_id`` at, or None (none set, erased, or not active)."""
        email = self.staff_emails.get(staff_id)
        if email is None or email == ERASED or staff_id not in self.staff:
            return None
        return email

    def is_active(self, staff_id: UUID, *roles: Role) -> bool:
        role = self.staff.get(staff_id)
        return role is not None and (not roles or role in roles)


def initial_clinic_state(tenant_id: UUID) -> ClinicState:
    return ClinicState(tenant_id=tenant_id)


def evolve_clinic(state: ClinicState, event: EventPayload) -> ClinicState:
    match event:
        case StaffActivated(staff_id=staff_id, role=role):
            return replace(state, staff={**state.staff, staff_id: role})
        case StaffDeactivated(staff_id=staff_id):
            return replace(state, staff={k: v for k, v in state.staff.items() if k != staff_id})
        case CrisisInformationSet(text=text, contacts=contacts):
            return replace(state, crisis_text=text, crisis_contacts=contacts)
        case StaffContactSet(staff_id=staff_id, email=email):
            others = {k: v for k, v in state.staff_emails.items() if k != staff_id}
            return replace(state, staff_emails=others if email is None else {**others, staff_id: email})
        case EscalationPolicySet(interval_hours=hours, duty_clinician_id=duty):
            return replace(state, escalation_interval_hours=hours, duty_clinician=duty)
        case AlertPolicySet(after_administrations=n, after_weeks=weeks):
            return replace(state, alert_after_administrations=n, alert_after_weeks=weeks)
        case _:
            return state


def _require_clinic_admin(command: Command, state: ClinicState) -> None:
    require_not_auditor(command.actor)
    require_tenant(command.tenant_id, state.tenant_id)
    actor = command.actor
    if actor.role is Role.SYSTEM:
        return
    if actor.role is Role.ADMIN and state.is_active(actor.id, Role.ADMIN):
        return
    raise Forbidden("Only an active administrator of this clinic can do this.",
                    code="admin_only")


def decide_clinic(command: ClinicCommand, state: ClinicState) -> list[EventPayload]:
    _require_clinic_admin(command, state)
    actor = command.actor
    match command:
        case ActivateStaff():
            if command.role not in STAFF_ROLES:
                raise ValidationError("Staff can be clinicians, supervisors, auditors or "
                                      "administrators.", code="invalid_staff_role", field="role")
            if state.staff.get(command.staff_id) == command.role:
                raise DomainRuleViolation("This person is already active with this role.",
                                          code="staff_already_active")
            return [StaffActivated(tenant_id=state.tenant_id, staff_id=command.staff_id,
                                   role=command.role, by=actor.id, by_role=actor.role)]
        case DeactivateStaff():
            if command.staff_id not in state.staff:
                raise DomainRuleViolation("This person is not active staff of the clinic.",
                                          code="staff_not_active")
            return [StaffDeactivated(tenant_id=state.tenant_id, staff_id=command.staff_id,
                                     by=actor.id, by_role=actor.role)]
        case SetCrisisInformation():
            if not command.text.strip():
                raise ValidationError("Crisis information cannot be empty.",
                                      code="text_required", field="text")
            return [CrisisInformationSet(tenant_id=state.tenant_id, text=command.text,
                                         contacts=command.contacts, by=actor.id,
                                         by_role=actor.role)]
        case SetStaffContact():
            if command.staff_id not in state.staff:
                raise DomainRuleViolation("This person is not active staff of the clinic.",
                                          code="staff_not_active")
            email = command.email.strip() if command.email is not None else None
            if email is not None and (len(email) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email)):
                raise ValidationError("This is not an email address.", code="invalid_email",
                                      field="email")
            return [StaffContactSet(tenant_id=state.tenant_id, staff_id=command.staff_id,
                                    email=email or None, by=actor.id, by_role=actor.role)]
        case SetEscalationPolicy():
            hours = command.escalation_interval_hours
            if not 0 < hours <= MAX_ESCALATION_HOURS:
                raise ValidationError(
                    f"The escalation interval is more than 0 and at most {MAX_ESCALATION_HOURS:g} "
                    "hours.", code="escalation_interval_out_of_range",
                    field="escalation_interval_hours")
            duty = command.duty_clinician_id
            if duty is not None and not state.is_active(duty, *DUTY_ROLES):
                raise DomainRuleViolation("The duty clinician must be an active clinician or "
                                          "supervisor of this clinic.",
                                          code="duty_clinician_not_active", field="duty_clinician_id")
            return [EscalationPolicySet(tenant_id=state.tenant_id, interval_hours=hours,
                                        duty_clinician_id=duty, by=actor.id, by_role=actor.role)]
        case SetAlertPolicy():
            n, weeks = command.after_administrations, command.after_weeks
            if not 2 <= n <= MAX_ALERT_AFTER_ADMINISTRATIONS:
                raise ValidationError(f"The number of administrations is 2 to {MAX_ALERT_AFTER_ADMINISTRATIONS}.",
                                      code="alert_administrations_out_of_range", field="after_administrations")
            if weeks is not None and not 0 < weeks <= MAX_ALERT_AFTER_WEEKS:
                raise ValidationError(f"The number of weeks is more than 0 and at most {MAX_ALERT_AFTER_WEEKS:g}.",
                                      code="alert_weeks_out_of_range", field="after_weeks")
            return [AlertPolicySet(tenant_id=state.tenant_id, after_administrations=n, after_weeks=weeks,
                                   by=actor.id, by_role=actor.role)]
        case _:
            assert_never(command)
