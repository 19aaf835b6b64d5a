"""The clinic stream: who works at a clinic (tenant) and the clinic's crisis information.

Stream id ``clinic-{tenant_id}``. Staff are activated and deactivated with a role
(clinician, supervisor, auditor, admin). The first administrator is activated by the
system (bootstrap); after that only an active administrator of the clinic manages staff.
"""

from __future__ import annotations

from typing import assert_never
from uuid import UUID

import msgspec
from msgspec.structs import replace

from core.authority import Command, require_not_auditor, require_tenant
from core.errors import DomainRuleViolation, Forbidden, ValidationError
from core.events.base import EventPayload
from core.identity import Role

STAFF_ROLES: frozenset[Role] = frozenset(
    {Role.CLINICIAN, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})


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


CLINIC_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    StaffActivated, StaffDeactivated, CrisisInformationSet)


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


ClinicCommand = ActivateStaff | DeactivateStaff | SetCrisisInformation


# --- state --------------------------------------------------------------------------------

class ClinicState(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    tenant_id: UUID
    #: Active staff and their role.
    staff: dict[UUID, Role] = {}
    crisis_text: str | None = None
    crisis_contacts: tuple[str, ...] = ()

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
        case _:
            assert_never(command)
