"""The escalation policy, given states / when the clock reads / then who is told (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from alliance.core.client import ClientState
from alliance.core.clinic import ClinicState
from alliance.core.identity import Role
from alliance.core.notifications.policy import Recipient, decide_escalation, raised_recipients

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TENANT, CLIENT, FLAG = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
PRIMARY, MEMBER, DUTY, ADMIN = (uuid.UUID(int=i) for i in (1, 2, 3, 4))


def clinic(*, duty: uuid.UUID | None = DUTY, hours: float = 24.0, without: tuple[uuid.UUID, ...] = ()) -> ClinicState:
    staff = {PRIMARY: Role.CLINICIAN, MEMBER: Role.CLINICIAN, DUTY: Role.SUPERVISOR, ADMIN: Role.ADMIN}
    return ClinicState(tenant_id=TENANT, staff={k: v for k, v in staff.items() if k not in without},
                       duty_clinician=duty, escalation_interval_hours=hours)


def client(*, acknowledged: bool = False, discharged: bool = False, primary: uuid.UUID | None = PRIMARY) -> ClientState:
    team = {PRIMARY: Role.CLINICIAN, MEMBER: Role.CLINICIAN}
    return ClientState(client_id=CLIENT, tenant_id=TENANT, primary_clinician=primary, care_team_roles=team,
                       discharged=discharged, risk_flags={FLAG: acknowledged})


def escalate(c: ClientState, k: ClinicState, after: timedelta):  # type: ignore[no-untyped-def]
    return decide_escalation(flag_id=FLAG, raised_at=T0, client=c, clinic=k, now=T0 + after)


def test_a_raised_flag_tells_the_active_care_team_primary_first() -> None:
    assert raised_recipients(client(), clinic()) == (
        Recipient(PRIMARY, "primary_clinician"), Recipient(MEMBER, "care_team"))
    assert raised_recipients(client(), clinic(without=(MEMBER,))) == (Recipient(PRIMARY, "primary_clinician"),)


def test_a_flag_raised_after_discharge_or_with_nobody_active_goes_to_the_duty_clinician() -> None:
    assert raised_recipients(client(discharged=True), clinic()) == (Recipient(DUTY, "duty_clinician"),)
    assert raised_recipients(client(), clinic(without=(PRIMARY, MEMBER))) == (Recipient(DUTY, "duty_clinician"),)


def test_with_no_duty_clinician_the_clinic_admins_are_told() -> None:
    assert raised_recipients(client(discharged=True), clinic(duty=None)) == (Recipient(ADMIN, "clinic_admin"),)


def test_nothing_escalates_before_the_interval() -> None:
    assert escalate(client(), clinic(), timedelta(hours=23, minutes=59)) is None
    assert escalate(client(), clinic(hours=2), timedelta(hours=1, minutes=59)) is None


def test_an_open_flag_escalates_to_primary_and_duty_once_the_interval_has_passed() -> None:
    decision = escalate(client(), clinic(), timedelta(hours=24))
    assert decision is not None
    assert (decision.reason, decision.recipients) == (
        "unacknowledged", (Recipient(PRIMARY, "primary_clinician"), Recipient(DUTY, "duty_clinician")))
    assert escalate(client(), clinic(hours=2), timedelta(hours=2)) is not None


def test_after_discharge_or_with_the_primary_inactive_only_the_duty_clinician() -> None:
    discharged = escalate(client(discharged=True), clinic(), timedelta(hours=25))
    assert discharged is not None and (discharged.reason, discharged.recipients) == (
        "discharged", (Recipient(DUTY, "duty_clinician"),))
    inactive = escalate(client(), clinic(without=(PRIMARY,)), timedelta(hours=25))
    assert inactive is not None and (inactive.reason, inactive.recipients) == (
        "primary_inactive", (Recipient(DUTY, "duty_clinician"),))


def test_an_acknowledged_or_unknown_flag_never_escalates() -> None:
    assert escalate(client(acknowledged=True), clinic(), timedelta(days=10)) is None
    unknown = ClientState(client_id=CLIENT, tenant_id=TENANT, primary_clinician=PRIMARY)
    assert escalate(unknown, clinic(), timedelta(days=10)) is None


def test_a_stored_interval_above_the_maximum_is_read_as_the_maximum() -> None:
    assert escalate(client(), clinic(hours=500), timedelta(hours=72)) is not None
