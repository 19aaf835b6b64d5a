"""Clinic stream: staff activation and crisis information."""

from __future__ import annotations

from alliance.core.clinic import (
    ActivateStaff,
    CrisisInformationSet,
    DeactivateStaff,
    SetCrisisInformation,
    StaffActivated,
    StaffDeactivated,
    clinic_stream,
    decide_clinic,
    evolve_clinic,
    initial_clinic_state,
)
from alliance.core.identity import Role
from tests.domain.helpers import ADMIN, AUDITOR, CLINICIAN, OTHER_TENANT, SYSTEM, TENANT, cmd, raises


def fold(events):
    state = initial_clinic_state(TENANT)
    for e in events:
        state = evolve_clinic(state, e)
    return state


BOOT = [StaffActivated(tenant_id=TENANT, staff_id=ADMIN.id, role=Role.ADMIN, by=SYSTEM.id, by_role=Role.SYSTEM)]


def test_stream_id():
    assert clinic_stream(TENANT) == f"clinic-{TENANT}"


def test_system_bootstraps_admin_who_manages_staff():
    assert decide_clinic(cmd(ActivateStaff, SYSTEM, staff_id=ADMIN.id, role=Role.ADMIN), fold([])) == BOOT
    events = decide_clinic(cmd(ActivateStaff, ADMIN, staff_id=CLINICIAN.id, role=Role.CLINICIAN), fold(BOOT))
    state = fold([*BOOT, *events])
    assert state.is_active(CLINICIAN.id, Role.CLINICIAN) and not state.is_active(CLINICIAN.id, Role.ADMIN)
    gone = decide_clinic(cmd(DeactivateStaff, ADMIN, staff_id=CLINICIAN.id), state)
    assert gone == [StaffDeactivated(tenant_id=TENANT, staff_id=CLINICIAN.id, by=ADMIN.id, by_role=Role.ADMIN)]
    assert not fold([*BOOT, *events, *gone]).is_active(CLINICIAN.id)


def test_clinic_rules():
    state = fold(BOOT)
    raises("admin_only", decide_clinic, cmd(ActivateStaff, ADMIN, staff_id=CLINICIAN.id, role=Role.CLINICIAN),
           fold([]))
    raises("admin_only", decide_clinic, cmd(ActivateStaff, CLINICIAN, staff_id=CLINICIAN.id, role=Role.ADMIN),
           state)
    raises("auditor_read_only", decide_clinic, cmd(DeactivateStaff, AUDITOR, staff_id=ADMIN.id), state)
    raises("wrong_tenant", decide_clinic, cmd(DeactivateStaff, ADMIN, staff_id=ADMIN.id, tenant=OTHER_TENANT),
           state)
    raises("invalid_staff_role", decide_clinic, cmd(ActivateStaff, ADMIN, staff_id=CLINICIAN.id,
                                                    role=Role.CLIENT), state)
    raises("staff_already_active", decide_clinic, cmd(ActivateStaff, ADMIN, staff_id=ADMIN.id, role=Role.ADMIN),
           state)
    raises("staff_not_active", decide_clinic, cmd(DeactivateStaff, ADMIN, staff_id=CLINICIAN.id), state)


def test_crisis_information():
    [event] = decide_clinic(cmd(SetCrisisInformation, ADMIN, text="Call 111", contacts=("111",)), fold(BOOT))
    assert isinstance(event, CrisisInformationSet)
    assert fold([*BOOT, event]).crisis_text == "Call 111"
    raises("text_required", decide_clinic, cmd(SetCrisisInformation, ADMIN, text=" "), fold(BOOT))
