"""Who is told about a risk flag, when it escalates, and when a failed delivery is retried.

Pure decisions over the client's and the clinic's folded states and a time passed in;
the dispatcher (``core/notifications/dispatcher.py``) does every read, write and send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from alliance.core.client import ClientState
from alliance.core.clinic import DUTY_ROLES, MAX_ESCALATION_HOURS, ClinicState
from alliance.core.identity import Role


@dataclass(frozen=True)
class Recipient:
    staff_id: UUID
    #: Why they are told: "primary_clinician", "care_team", "duty_clinician" or "clinic_admin".
    reason: str


@dataclass(frozen=True)
class Escalation:
    recipients: tuple[Recipient, ...]
    #: "unacknowledged" (primary and duty clinician), "discharged" or "primary_inactive".
    reason: str
    interval_hours: float


def duty_recipients(clinic: ClinicState) -> tuple[Recipient, ...]:
    """The duty clinician; when the clinic has named none (or they left), its administrators,
    so that an escalation always reaches someone who can act or find who should."""
    duty = clinic.duty_clinician
    if duty is not None and clinic.is_active(duty, *DUTY_ROLES):
        return (Recipient(duty, "duty_clinician"),)
    admins = sorted((s for s, role in clinic.staff.items() if role is Role.ADMIN), key=str)
    return tuple(Recipient(a, "clinic_admin") for a in admins)


def _unique(recipients: list[Recipient]) -> tuple[Recipient, ...]:
    seen: set[UUID] = set()
    out = []
    for r in recipients:
        if r.staff_id not in seen:
            seen.add(r.staff_id)
            out.append(r)
    return tuple(out)


def raised_recipients(client: ClientState, clinic: ClinicState) -> tuple[Recipient, ...]:
    """Who is told at once when a flag is raised: the active care team (primary clinician
    first); after discharge, or with nobody of the team still active, the duty clinician."""
    if client.erased:
        return ()
    if client.discharged:
        return duty_recipients(clinic)
    team: list[Recipient] = []
    primary = client.primary_clinician
    if primary is not None and clinic.is_active(primary, *DUTY_ROLES):
        team.append(Recipient(primary, "primary_clinician"))
    for member in sorted(client.care_team, key=str):
        if member != primary and clinic.is_active(member, *DUTY_ROLES):
            team.append(Recipient(member, "care_team"))
    return _unique(team) if team else duty_recipients(clinic)


def interval(clinic: ClinicState) -> float:
    """The clinic's escalation interval in hours (never above the maximum, whatever is stored)."""
    return min(clinic.escalation_interval_hours, MAX_ESCALATION_HOURS)


def escalation_due_at(raised_at: datetime, clinic: ClinicState) -> datetime:
    return raised_at + timedelta(hours=interval(clinic))


def decide_escalation(*, flag_id: UUID, raised_at: datetime, client: ClientState, clinic: ClinicState,
                      now: datetime) -> Escalation | None:
    """The escalation of an open flag once its interval has passed, else None.

    An acknowledged flag (or one the client's stream does not know, or an erased client's)
    never escalates. Before discharge and with the primary clinician active: the primary
    clinician and the duty clinician; otherwise the duty clinician alone.
    """
    if client.erased or client.risk_flags.get(flag_id) is not False:
        return None
    if now < escalation_due_at(raised_at, clinic):
        return None
    duty = duty_recipients(clinic)
    primary = client.primary_clinician
    if client.discharged:
        return Escalation(duty, "discharged", interval(clinic))
    if primary is None or not clinic.is_active(primary, *DUTY_ROLES):
        return Escalation(duty, "primary_inactive", interval(clinic))
    return Escalation(_unique([Recipient(primary, "primary_clinician"), *duty]), "unacknowledged",
                      interval(clinic))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``base`` after the first failure, doubling, at most ``cap``; after
    ``max_attempts`` failures the notification is given up (the escalation still follows)."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 12

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based)."""
        return min(self.cap, self.base * (2 ** max(0, attempt - 1)))

    def gives_up(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
