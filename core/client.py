"""The client stream: care episode, care team, proxies, consents, measurements, notes,
risk flags, feedback, the relapse-prevention plan, corrections, legal hold and erasure.

Stream id ``client-{client_id}``. Consents and measurements share this stream on
purpose: "no measurement after measurement consent is withdrawn" then holds under
concurrency through the stream's optimistic version. Goal commands read this
stream too (care team, consents) and the handler asserts its version unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypedDict, assert_never
from uuid import UUID

import msgspec
from msgspec.structs import replace

from alliance.core.alerts.events import ALERT_EVENT_TYPES, AlertAcknowledged, AlertRaised
from alliance.core.authority import (
    CLINICAL_ROLES,
    Command,
    by_of,
    is_care_team_clinician,
    is_client_voice,
    party_of,
    require_admin,
    require_care_team_clinician,
    require_client_voice,
    require_not_auditor,
    require_tenant,
)
from alliance.core.clinic import ClinicState
from alliance.core.consent import (
    ConsentEvent,
    ConsentGranted,
    ConsentMode,
    ConsentScope,
    ConsentWithdrawn,
    consent_in_force,
    current_text_version,
)
from alliance.core.errors import ConfigurationError, DomainRuleViolation, Forbidden, NotFound, ValidationError
from alliance.core.events.base import (
    EventPayload,
    OptionalPersonalStr,
    PersonalMap,
    PersonalStr,
    PersonalTexts,
)
from alliance.core.identity import Actor, Role
from alliance.core.schedules import Schedule, validate_schedule
from alliance.plugins.instruments import ScoredMeasurement

#: Namespace for risk-flag ids derived from a measurement id (stable across retries).
RISK_FLAG_NAMESPACE = UUID("3b0d2f5e-8f61-4c7e-9a57-0c2b6f1e4d21")

ProxyBasis = Literal["minor", "lacks_capacity"]
RiskSource = Literal["measurement", "clinician"]
#: Why a risk flag was raised: a risk answer above its threshold, or a risk question skipped.
RiskReason = Literal["risk_answer", "risk_item_unanswered"]
EntryKind = Literal["measurement", "note"]


#: The actor named on flags Alliance raises itself (from a measurement's answers).
SYSTEM_ACTOR_ID = UUID(int=0)

# --- who reported a measurement (the one definition; events, commands and views use it) ---------

#: Whose answers these are: the client's own, a proxy's (a parent, a carer) about the client,
#: or a clinician's rating.
Informant = Literal["self", "proxy", "clinician"]
#: How the answers reached Alliance: the client's app, a link sent to them, in a session with a
#: clinician, or an import of records kept elsewhere.
Channel = Literal["app", "link", "session", "import"]
#: A proxy's relationship to the client (a closed list: no free text at rest unencrypted).
ProxyRelationship = Literal["parent", "guardian", "carer", "partner", "relative", "other"]


class ReportedBy(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Who gave a measurement's answers and by which channel.

    ``relationship`` is given for (and only for) a proxy. ``channel`` is ``None`` only on
    measurements recorded before it was kept (upcast from schema version 1); on those,
    ``informant`` is what was stored then ("self" or "clinician") and a proxy's entry reads
    "self": :func:`informant_of` tells them apart with the event's actor role.
    """

    informant: Informant
    relationship: ProxyRelationship | None = None
    channel: Channel | None = None


def informant_of(reported_by: ReportedBy, actor_role: Role | str) -> Informant:
    """The informant of a stored measurement, right for old entries too.

    Before ``reported_by`` had an informant, a proxy's entry was stored as "self"; the
    envelope's actor role (the proxy) says who it really was.
    """
    if reported_by.channel is None and reported_by.informant == "self" \
            and str(actor_role) == Role.PROXY.value:
        return "proxy"
    return reported_by.informant


def client_stream(client_id: UUID) -> str:
    return f"client-{client_id}"


def risk_flag_id_for(measurement_id: UUID) -> UUID:
    """The id of the risk flag a measurement raises (deterministic)."""
    return uuid.uuid5(RISK_FLAG_NAMESPACE, str(measurement_id))


# --- events -------------------------------------------------------------------------------

class ClientEnrolled(EventPayload, tag="client.enrolled", kw_only=True, frozen=True):
    client_id: UUID
    tenant_id: UUID
    episode_id: UUID
    primary_clinician_id: UUID
    by: UUID
    by_role: Role


class CareTeamMemberAdded(EventPayload, tag="care_team.member_added", kw_only=True, frozen=True):
    member_id: UUID
    member_role: Role
    by: UUID
    by_role: Role


class CareTeamMemberRemoved(EventPayload, tag="care_team.member_removed", kw_only=True, frozen=True):
    member_id: UUID
    reason: OptionalPersonalStr = None
    by: UUID
    by_role: Role


class PrimaryClinicianChanged(EventPayload, tag="care_team.primary_changed", kw_only=True, frozen=True):
    clinician_id: UUID
    by: UUID
    by_role: Role


class ClientDischarged(EventPayload, tag="client.discharged", kw_only=True, frozen=True):
    episode_id: UUID | None
    reason: OptionalPersonalStr = None
    by: UUID
    by_role: Role


class ProxyAuthorised(EventPayload, tag="proxy.authorised", kw_only=True, frozen=True):
    proxy_id: UUID
    basis: ProxyBasis
    by: UUID
    by_role: Role


class ProxyRevoked(EventPayload, tag="proxy.revoked", kw_only=True, frozen=True):
    proxy_id: UUID
    by: UUID
    by_role: Role


class MeasurementRecorded(EventPayload, tag="measurement.recorded", kw_only=True, frozen=True):
    """A measurement as answered and as Alliance scored it with the installed instrument.

    Schema 2: ``reported_by`` is a :class:`ReportedBy` (was the string "self" | "clinician");
    ``risk_items``, ``unanswered``, ``incomplete`` and ``prorated`` are new. Version 1 events
    are upcast by :func:`upcast_measurement_v1`.
    """

    schema_version = 2

    measurement_id: UUID
    instrument_id: str
    instrument_version: str
    fingerprint: str
    answers: dict[str, int | float | bool]   # scored/structured answers
    free_text: PersonalMap = {}              # free-text answers (personal)
    scores: dict[str, float]                 # "total" plus subscale ids, computed by Alliance
    band: str | None = None                  # severity band label, if any
    reported_by: ReportedBy
    observed_at: datetime
    goal_ids: tuple[UUID, ...] = ()
    #: When it was recorded under consent (the command's time); a later withdrawal
    #: never takes effect before it. Absent on events recorded before this field existed.
    recorded_under_consent_at: datetime | None = None
    #: Risk items whose answer needed follow-up; ``None`` on version 1 events (their risk
    #: flag, id :func:`risk_flag_id_for`, names the items).
    risk_items: tuple[str, ...] | None = None
    #: Items of the instrument left unanswered.
    unanswered: tuple[str, ...] = ()
    #: Why the set is incomplete (``"risk_item_unanswered"``), or None when it is complete
    #: enough to score as the instrument says.
    incomplete: str | None = None
    #: True when the total was prorated for missing items by the instrument's declared rule.
    prorated: bool = False


def upcast_measurement_v1(document: dict[str, Any]) -> dict[str, Any]:
    """``measurement.recorded`` v1 → v2: ``reported_by`` "self"/"clinician" becomes a
    :class:`ReportedBy` with no channel (none was kept); everything else reads the same."""
    given = document.get("reported_by")
    informant = given if given in ("self", "proxy", "clinician") else "self"
    return {**document, "reported_by": {"informant": informant}}


#: Upcasters of client-stream events, keyed by (type name, schema version they read).
CLIENT_UPCASTERS = {("measurement.recorded", 1): upcast_measurement_v1}


class MeasurementEnteredInError(EventPayload, tag="measurement.entered_in_error", kw_only=True, frozen=True):
    measurement_id: UUID
    reason: PersonalStr
    by: UUID
    by_role: Role


class MeasurementInterpreted(EventPayload, tag="measurement.interpreted", kw_only=True, frozen=True):
    """The client's own reading of one of their entries ("I had a rough week at work"), shown
    beside it in progress. A later one replaces what is shown; each stays in history."""

    measurement_id: UUID
    text: PersonalStr
    by: UUID
    by_role: Role


class NoteRecorded(EventPayload, tag="note.recorded", kw_only=True, frozen=True):
    note_id: UUID
    text: PersonalStr
    goal_ids: tuple[UUID, ...] = ()
    by: UUID
    by_role: Role


class NoteEnteredInError(EventPayload, tag="note.entered_in_error", kw_only=True, frozen=True):
    note_id: UUID
    reason: PersonalStr
    by: UUID
    by_role: Role


class RiskFlagRaised(EventPayload, tag="risk.flag_raised", kw_only=True, frozen=True):
    """A risk flag. One raised from a measurement names it and is raised by role ``system``
    (Alliance decided from the answers, not the person who gave them)."""

    flag_id: UUID
    source: RiskSource
    measurement_id: UUID | None = None
    items: tuple[str, ...] = ()  # item ids (e.g. "phq9.q9"), not the answers' words
    #: For a measurement's flag: ``risk_answer`` or ``risk_item_unanswered``; None otherwise.
    reason: RiskReason | None = None
    note: OptionalPersonalStr = None
    raised_by: UUID
    raised_by_role: Role
    raised_at: datetime


class RiskFlagAcknowledged(EventPayload, tag="risk.flag_acknowledged", kw_only=True, frozen=True):
    flag_id: UUID
    action_taken: PersonalStr
    by: UUID
    by_role: Role
    acknowledged_at: datetime


class FeedbackGiven(EventPayload, tag="feedback.given", kw_only=True, frozen=True):
    feedback_id: UUID
    text: PersonalStr
    rating: int | None = None  # 0..10 when given
    resonates: PersonalTexts = ()
    misaligned: PersonalTexts = ()
    goal_ids: tuple[UUID, ...] = ()
    by: UUID
    by_role: Role


class FeedbackAnswered(EventPayload, tag="feedback.answered", kw_only=True, frozen=True):
    """A care-team clinician's answer to the client's feedback, linking what changed because of
    it (the ids of the events that made the change: a proposed change, a revision, a review), so
    the feedback loop is closed in the record."""

    feedback_id: UUID
    answer_id: UUID
    text: PersonalStr
    change_event_ids: tuple[UUID, ...] = ()
    by: UUID
    by_role: Role


class RelapsePreventionPlanUpdated(EventPayload, tag="relapse_plan.updated", kw_only=True, frozen=True):
    plan_version: int
    warning_signs: PersonalTexts = ()
    actions: PersonalTexts = ()
    supports: PersonalTexts = ()
    by: UUID
    by_role: Role


class LegalHoldPlaced(EventPayload, tag="legal_hold.placed", kw_only=True, frozen=True):
    hold_id: UUID
    reason: PersonalStr
    by: UUID
    by_role: Role


class LegalHoldReleased(EventPayload, tag="legal_hold.released", kw_only=True, frozen=True):
    hold_id: UUID
    by: UUID
    by_role: Role


class ErasureRequested(EventPayload, tag="erasure.requested", kw_only=True, frozen=True):
    request_id: UUID
    by: UUID
    by_role: Role


class ClientErased(EventPayload, tag="erasure.completed", kw_only=True, frozen=True):
    """The client's data key is to be destroyed (crypto-shredding, done by the store)."""

    request_id: UUID
    by: UUID
    by_role: Role


class EpisodeMeasureAttached(EventPayload, tag="episode.measure_attached", kw_only=True, frozen=True):
    """An instrument attached to the care episode rather than to one goal (a mood diary kept
    whatever goal is worked on), with its schedule; attaching again replaces the schedule."""

    instrument_id: str
    schedule: Schedule
    by: UUID
    by_role: Role


class EpisodeMeasureDetached(EventPayload, tag="episode.measure_detached", kw_only=True, frozen=True):
    instrument_id: str
    by: UUID
    by_role: Role


CLIENT_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    ClientEnrolled, CareTeamMemberAdded, CareTeamMemberRemoved, PrimaryClinicianChanged,
    ClientDischarged, ProxyAuthorised, ProxyRevoked, ConsentGranted, ConsentWithdrawn,
    MeasurementRecorded, MeasurementEnteredInError, MeasurementInterpreted, NoteRecorded, NoteEnteredInError,
    RiskFlagRaised, RiskFlagAcknowledged, FeedbackGiven, FeedbackAnswered, RelapsePreventionPlanUpdated,
    LegalHoldPlaced, LegalHoldReleased, ErasureRequested, ClientErased,
    EpisodeMeasureAttached, EpisodeMeasureDetached, *ALERT_EVENT_TYPES,
)


# --- commands -----------------------------------------------------------------------------

class EnrollClient(Command, tag="client.enroll", kw_only=True, frozen=True):
    client_id: UUID
    episode_id: UUID
    primary_clinician_id: UUID


class AddCareTeamMember(Command, tag="client.add_care_team_member", kw_only=True, frozen=True):
    member_id: UUID
    member_role: Role = Role.CLINICIAN


class RemoveCareTeamMember(Command, tag="client.remove_care_team_member", kw_only=True,
                           frozen=True):
    member_id: UUID
    reason: str | None = None


class ChangePrimaryClinician(Command, tag="client.change_primary_clinician", kw_only=True,
                             frozen=True):
    clinician_id: UUID


class DischargeClient(Command, tag="client.discharge", kw_only=True, frozen=True):
    reason: str | None = None


class AuthoriseProxy(Command, tag="client.authorise_proxy", kw_only=True, frozen=True):
    proxy_id: UUID
    basis: ProxyBasis


class RevokeProxy(Command, tag="client.revoke_proxy", kw_only=True, frozen=True):
    proxy_id: UUID


class GrantConsent(Command, tag="consent.grant", kw_only=True, frozen=True):
    scope: ConsentScope
    text_version: str
    mode: ConsentMode
    attestation_method: str | None = None
    given_at: datetime | None = None


class WithdrawConsent(Command, tag="consent.withdraw", kw_only=True, frozen=True):
    scope: ConsentScope
    mode: ConsentMode
    attestation_method: str | None = None
    given_at: datetime | None = None


class RecordMeasurement(Command, tag="measurement.record", kw_only=True, frozen=True):
    """Answers to an installed instrument. There is no field for scores, a band or risk
    items: the decider scores the answers with the instrument (the scorer it is handed), so
    no caller can record a total, band or risk that the answers do not give."""

    measurement_id: UUID
    instrument_id: str
    #: The version to score with; None: the latest installed.
    instrument_version: str | None = None
    #: Item id → answer (numbers, true/false, or text for free-text items).
    answers: dict[str, Any]
    reported_by: ReportedBy
    observed_at: datetime
    goal_ids: tuple[UUID, ...] = ()


class MeasurementScorer(Protocol):
    """Scores answers with an installed instrument (``InstrumentRegistry.score``): validates
    them and returns scores, band, risk items and completeness. Pure as far as the decider
    is concerned: no I/O, the same answers always give the same result."""

    def __call__(self, instrument_id: str, answers: Mapping[str, Any], *,
                 version: str | None = None) -> ScoredMeasurement: ...


class MarkEntryInError(Command, tag="entry.mark_in_error", kw_only=True, frozen=True):
    kind: EntryKind
    entry_id: UUID
    reason: str


class InterpretMeasurement(Command, tag="measurement.interpret", kw_only=True, frozen=True):
    """The client (or their proxy) says what an entry means to them."""

    measurement_id: UUID
    text: str


class RecordNote(Command, tag="note.record", kw_only=True, frozen=True):
    note_id: UUID
    text: str
    goal_ids: tuple[UUID, ...] = ()


class RaiseRiskFlag(Command, tag="risk.raise", kw_only=True, frozen=True):
    flag_id: UUID
    items: tuple[str, ...] = ()
    note: str | None = None


class AcknowledgeRiskFlag(Command, tag="risk.acknowledge", kw_only=True, frozen=True):
    flag_id: UUID
    action_taken: str


class RaiseAlert(Command, tag="alert.raise", kw_only=True, frozen=True):
    """The alert policy's decision (role ``system`` only): record ``alert`` as it is."""

    alert: AlertRaised


class AcknowledgeAlert(Command, tag="alert.acknowledge", kw_only=True, frozen=True):
    alert_id: UUID
    action_taken: str


class GiveFeedback(Command, tag="feedback.give", kw_only=True, frozen=True):
    feedback_id: UUID
    text: str
    rating: int | None = None
    resonates: tuple[str, ...] = ()
    misaligned: tuple[str, ...] = ()
    goal_ids: tuple[UUID, ...] = ()


class AnswerFeedback(Command, tag="feedback.answer", kw_only=True, frozen=True):
    """Answer the client's feedback, naming the events of what changed because of it (the API
    checks they are this client's)."""

    feedback_id: UUID
    answer_id: UUID
    text: str
    change_event_ids: tuple[UUID, ...] = ()


class UpdateRelapsePlan(Command, tag="relapse_plan.update", kw_only=True, frozen=True):
    warning_signs: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    supports: tuple[str, ...] = ()


class PlaceLegalHold(Command, tag="legal_hold.place", kw_only=True, frozen=True):
    hold_id: UUID
    reason: str


class ReleaseLegalHold(Command, tag="legal_hold.release", kw_only=True, frozen=True):
    hold_id: UUID


class RequestErasure(Command, tag="erasure.request", kw_only=True, frozen=True):
    request_id: UUID


class CompleteErasure(Command, tag="erasure.complete", kw_only=True, frozen=True):
    request_id: UUID


class AttachEpisodeMeasure(Command, tag="episode.attach_measure", kw_only=True, frozen=True):
    instrument_id: str
    schedule: Schedule


class DetachEpisodeMeasure(Command, tag="episode.detach_measure", kw_only=True, frozen=True):
    instrument_id: str


ClientCommand = (
    EnrollClient | AddCareTeamMember | RemoveCareTeamMember | ChangePrimaryClinician
    | DischargeClient | AuthoriseProxy | RevokeProxy | GrantConsent | WithdrawConsent
    | RecordMeasurement | MarkEntryInError | InterpretMeasurement | RecordNote | RaiseRiskFlag | AcknowledgeRiskFlag
    | RaiseAlert | AcknowledgeAlert
    | GiveFeedback | AnswerFeedback | UpdateRelapsePlan | PlaceLegalHold | ReleaseLegalHold | RequestErasure
    | CompleteErasure | AttachEpisodeMeasure | DetachEpisodeMeasure
)


# --- state --------------------------------------------------------------------------------

class ClientState(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    client_id: UUID
    tenant_id: UUID | None = None
    episode_id: UUID | None = None
    primary_clinician: UUID | None = None
    #: Clinicians/supervisors on the care team, with their role.
    care_team_roles: dict[UUID, Role] = {}
    discharged: bool = False
    proxies: dict[UUID, str] = {}  # proxy id -> basis
    consents: tuple[ConsentEvent, ...] = ()
    measurements: dict[UUID, str] = {}  # id -> informant ("self" | "proxy" | "clinician")
    measurements_in_error: frozenset[UUID] = frozenset()
    notes: frozenset[UUID] = frozenset()
    notes_in_error: frozenset[UUID] = frozenset()
    risk_flags: dict[UUID, bool] = {}  # id -> acknowledged
    alerts: dict[UUID, bool] = {}  # not-on-track alert id -> acknowledged
    feedback: frozenset[UUID] = frozenset()
    feedback_answers: frozenset[UUID] = frozenset()
    relapse_plan_version: int = 0
    legal_holds: frozenset[UUID] = frozenset()
    erasure_requests: frozenset[UUID] = frozenset()
    erased: bool = False
    #: The latest time a measurement was recorded under consent (see WithdrawConsent).
    last_measurement_at: datetime | None = None
    #: Instruments attached to the episode (not to a goal) -> their schedule.
    episode_measures: dict[str, Schedule] = {}

    @property
    def enrolled(self) -> bool:
        return self.tenant_id is not None

    @property
    def care_team(self) -> frozenset[UUID]:
        return frozenset(self.care_team_roles)

    @property
    def legal_hold(self) -> bool:
        return bool(self.legal_holds)

    @property
    def open_risk_flags(self) -> frozenset[UUID]:
        return frozenset(f for f, acked in self.risk_flags.items() if not acked)

    def consent_in_force(self, scope: ConsentScope | str, at: datetime) -> bool:
        return consent_in_force(self.consents, scope, at)


def initial_client_state(client_id: UUID) -> ClientState:
    return ClientState(client_id=client_id)


def evolve_client(state: ClientState, event: EventPayload) -> ClientState:
    """Apply one recorded fact. Never raises: unknown or odd events leave state as is."""
    match event:
        case ClientEnrolled():
            return replace(state, tenant_id=event.tenant_id, episode_id=event.episode_id,
                           primary_clinician=event.primary_clinician_id,
                           care_team_roles={**state.care_team_roles,
                                            event.primary_clinician_id: Role.CLINICIAN},
                           discharged=False)
        case CareTeamMemberAdded():
            return replace(state, care_team_roles={**state.care_team_roles,
                                                   event.member_id: event.member_role})
        case CareTeamMemberRemoved():
            team = {k: v for k, v in state.care_team_roles.items() if k != event.member_id}
            primary = None if state.primary_clinician == event.member_id \
                else state.primary_clinician
            return replace(state, care_team_roles=team, primary_clinician=primary)
        case PrimaryClinicianChanged():
            team = state.care_team_roles
            if event.clinician_id not in team:
                team = {**team, event.clinician_id: Role.CLINICIAN}
            return replace(state, primary_clinician=event.clinician_id, care_team_roles=team)
        case ClientDischarged():
            return replace(state, discharged=True)
        case ProxyAuthorised():
            return replace(state, proxies={**state.proxies, event.proxy_id: event.basis})
        case ProxyRevoked():
            return replace(state, proxies={k: v for k, v in state.proxies.items()
                                           if k != event.proxy_id})
        case ConsentGranted() | ConsentWithdrawn():
            return replace(state, consents=(*state.consents, event))
        case MeasurementRecorded():
            latest = state.last_measurement_at
            if event.recorded_under_consent_at is not None and (
                    latest is None or event.recorded_under_consent_at > latest):
                latest = event.recorded_under_consent_at
            return replace(state, measurements={**state.measurements,
                                                event.measurement_id: event.reported_by.informant},
                           last_measurement_at=latest)
        case MeasurementEnteredInError():
            return replace(state, measurements_in_error=state.measurements_in_error
                           | {event.measurement_id})
        case NoteRecorded():
            return replace(state, notes=state.notes | {event.note_id})
        case NoteEnteredInError():
            return replace(state, notes_in_error=state.notes_in_error | {event.note_id})
        case RiskFlagRaised():
            return replace(state, risk_flags={**state.risk_flags, event.flag_id: False})
        case RiskFlagAcknowledged():
            return replace(state, risk_flags={**state.risk_flags, event.flag_id: True})
        case AlertRaised():
            return replace(state, alerts={**state.alerts, event.alert_id: False})
        case AlertAcknowledged():
            return replace(state, alerts={**state.alerts, event.alert_id: True})
        case FeedbackGiven():
            return replace(state, feedback=state.feedback | {event.feedback_id})
        case FeedbackAnswered():
            return replace(state, feedback_answers=state.feedback_answers | {event.answer_id})
        case RelapsePreventionPlanUpdated():
            return replace(state, relapse_plan_version=max(state.relapse_plan_version,
                                                           event.plan_version))
        case LegalHoldPlaced():
            return replace(state, legal_holds=state.legal_holds | {event.hold_id})
        case LegalHoldReleased():
            return replace(state, legal_holds=state.legal_holds - {event.hold_id})
        case ErasureRequested():
            return replace(state, erasure_requests=state.erasure_requests | {event.request_id})
        case ClientErased():
            return replace(state, erased=True)
        case EpisodeMeasureAttached():
            return replace(state, episode_measures={**state.episode_measures,
                                                    event.instrument_id: event.schedule})
        case EpisodeMeasureDetached():
            return replace(state, episode_measures={k: v for k, v in state.episode_measures.items()
                                                    if k != event.instrument_id})
        case _:
            return state


# --- decide -------------------------------------------------------------------------------

def _require_active_record(command: Command, state: ClientState) -> None:
    """Checks shared by every command on an existing client record."""
    require_not_auditor(command.actor)
    if state.erased:
        raise DomainRuleViolation("This client's record has been erased.", code="client_erased")
    if not state.enrolled:
        raise NotFound("This client is not enrolled in a clinic.", code="client_not_enrolled")
    require_tenant(command.tenant_id, state.tenant_id)


def _require_not_discharged(state: ClientState) -> None:
    if state.discharged:
        raise DomainRuleViolation("The client has been discharged; only self-monitoring, "
                                  "feedback and consent changes continue.",
                                  code="client_discharged")


def _require_team_or_admin(actor: Actor, state: ClientState) -> None:
    if actor.role in (Role.ADMIN, Role.SYSTEM):
        return
    require_care_team_clinician(actor, state)


def _require_text(value: str, field: str) -> None:
    if not value.strip():
        raise ValidationError(f"Please fill in {field.replace('_', ' ')}.",
                              code=f"{field}_required", field=field)


def _require_consent(state: ClientState, scope: ConsentScope, at: datetime) -> None:
    if not state.consent_in_force(scope, at):
        raise DomainRuleViolation(
            f"The client's consent for {scope.value.replace('_', ' ')} is not in force.",
            code="consent_not_in_force", field="scope", scope=scope.value)


def _require_clinic_staff(clinic: ClinicState | None, staff_id: UUID, *roles: Role) -> None:
    if clinic is not None and not clinic.is_active(staff_id, *roles):
        raise DomainRuleViolation("This person is not active staff of the clinic.",
                                  code="not_clinic_staff")


def _check_consent_mode(command: GrantConsent | WithdrawConsent, state: ClientState) -> None:
    actor = command.actor
    match command.mode:
        case "self":
            if actor.role is not Role.CLIENT:
                raise Forbidden("Consent in the client's own name is given by the client.",
                                code="consent_mode_mismatch", field="mode")
            require_client_voice(actor, state)
        case "proxy":
            if actor.role is not Role.PROXY:
                raise Forbidden("Proxy consent is given by a registered proxy.",
                                code="consent_mode_mismatch", field="mode")
            require_client_voice(actor, state)
        case "verbal_attested":
            if actor.role not in CLINICAL_ROLES:
                raise Forbidden("Verbal consent is recorded by a clinician on the care team.",
                                code="consent_mode_mismatch", field="mode")
            require_care_team_clinician(actor, state)
            if not command.attestation_method or not command.attestation_method.strip():
                raise ValidationError("Say how the client gave their consent (for example "
                                      "in session or by phone).", code="attestation_required",
                                      field="attestation_method")
            if command.given_at is not None and command.given_at > command.at:
                raise ValidationError("Consent cannot be given in the future.",
                                      code="given_in_future", field="given_at")
        case _:
            assert_never(command.mode)


class _Attestation(TypedDict, total=False):
    attested_by: UUID
    attested_at: datetime
    attestation_method: str | None
    given_at: datetime


def _attestation(command: GrantConsent | WithdrawConsent) -> _Attestation:
    if command.mode != "verbal_attested":
        return {}
    return {"attested_by": command.actor.id, "attested_at": command.at,
            "attestation_method": command.attestation_method,
            "given_at": command.given_at or command.at}


def decide_client(command: ClientCommand, state: ClientState,
                  clinic: ClinicState | None = None, *,
                  scorer: MeasurementScorer | None = None) -> list[EventPayload]:
    """Decide what a client-stream command records, or raise a domain error.

    ``clinic`` (optional) lets the decider check that people named in the command
    are active staff of the clinic; without it that check is skipped. ``scorer`` scores a
    ``RecordMeasurement``'s answers with the installed instruments; a measurement cannot be
    decided without it.
    """
    actor = command.actor
    by = by_of(actor)

    if isinstance(command, EnrollClient):
        require_not_auditor(actor)
        if state.erased:
            raise DomainRuleViolation("This client's record has been erased.",
                                      code="client_erased")
        if actor.role not in (Role.ADMIN, Role.SYSTEM, *CLINICAL_ROLES):
            raise Forbidden("Clients are enrolled by clinic staff.", code="staff_only")
        require_tenant(command.tenant_id, state.tenant_id)
        if command.client_id != state.client_id:
            raise ValidationError("The command names another client.", code="client_mismatch",
                                  field="client_id")
        if state.enrolled and not state.discharged:
            raise DomainRuleViolation("The client is already in an episode of care.",
                                      code="already_enrolled")
        if actor.role is not Role.SYSTEM:
            _require_clinic_staff(clinic, actor.id)
        _require_clinic_staff(clinic, command.primary_clinician_id, *CLINICAL_ROLES)
        return [ClientEnrolled(client_id=state.client_id, tenant_id=command.tenant_id,
                               episode_id=command.episode_id,
                               primary_clinician_id=command.primary_clinician_id, **by)]

    _require_active_record(command, state)

    match command:
        case AddCareTeamMember():
            _require_team_or_admin(actor, state)
            _require_not_discharged(state)
            if command.member_role not in CLINICAL_ROLES:
                raise ValidationError("Care team members are clinicians or supervisors.",
                                      code="invalid_member_role", field="member_role")
            if command.member_id in state.care_team_roles:
                raise DomainRuleViolation("This person is already on the care team.",
                                          code="already_on_care_team")
            _require_consent(state, ConsentScope.CARE_TEAM_SHARING, command.at)
            _require_clinic_staff(clinic, command.member_id, *CLINICAL_ROLES)
            return [CareTeamMemberAdded(member_id=command.member_id,
                                        member_role=command.member_role, **by)]
        case RemoveCareTeamMember():
            _require_team_or_admin(actor, state)
            if command.member_id not in state.care_team_roles:
                raise NotFound("This person is not on the care team.",
                               code="member_not_on_care_team")
            if command.member_id == state.primary_clinician:
                raise DomainRuleViolation("Name another primary clinician before removing "
                                          "this one.", code="cannot_remove_primary_clinician")
            return [CareTeamMemberRemoved(member_id=command.member_id, reason=command.reason,
                                          **by)]
        case ChangePrimaryClinician():
            _require_team_or_admin(actor, state)
            _require_not_discharged(state)
            if command.clinician_id not in state.care_team_roles:
                raise NotFound("The new primary clinician must be on the care team first.",
                               code="member_not_on_care_team")
            if command.clinician_id == state.primary_clinician:
                raise DomainRuleViolation("This clinician is already the primary clinician.",
                                          code="already_primary_clinician")
            return [PrimaryClinicianChanged(clinician_id=command.clinician_id, **by)]
        case DischargeClient():
            _require_team_or_admin(actor, state)
            if state.discharged:
                raise DomainRuleViolation("The client is already discharged.",
                                          code="already_discharged")
            return [ClientDischarged(episode_id=state.episode_id, reason=command.reason, **by)]
        case AuthoriseProxy():
            _require_team_or_admin(actor, state)
            if command.proxy_id in state.proxies:
                raise DomainRuleViolation("This proxy is already registered.",
                                          code="proxy_already_authorised")
            if command.proxy_id == state.client_id:
                raise ValidationError("A client cannot be their own proxy.",
                                      code="invalid_proxy", field="proxy_id")
            return [ProxyAuthorised(proxy_id=command.proxy_id, basis=command.basis, **by)]
        case RevokeProxy():
            if not (actor.role is Role.CLIENT and actor.id == state.client_id):
                _require_team_or_admin(actor, state)
            if command.proxy_id not in state.proxies:
                raise NotFound("This person is not a registered proxy.", code="proxy_not_found")
            return [ProxyRevoked(proxy_id=command.proxy_id, **by)]
        case GrantConsent():
            _check_consent_mode(command, state)
            _require_text(command.text_version, "text_version")
            if current_text_version(state.consents, command.scope, command.at) \
                    == command.text_version:
                raise DomainRuleViolation("Consent for this scope and text is already in force.",
                                          code="consent_already_in_force")
            return [ConsentGranted(scope=command.scope, text_version=command.text_version,
                                   mode=command.mode, effective_at=command.at,
                                   **by, **_attestation(command))]
        case WithdrawConsent():
            _check_consent_mode(command, state)
            if not state.consent_in_force(command.scope, command.at):
                raise DomainRuleViolation("There is no consent in force to withdraw.",
                                          code="consent_not_in_force", field="scope")
            # A withdrawal that lost a race to a measurement recorded (under consent) at a
            # later moment takes effect just after it: history must never show a
            # measurement recorded while consent was not in force.
            effective = command.at
            if command.scope == ConsentScope.MEASUREMENT and state.last_measurement_at is not None \
                    and state.last_measurement_at >= effective:
                effective = state.last_measurement_at + timedelta(microseconds=1)
            return [ConsentWithdrawn(scope=command.scope, mode=command.mode,
                                     effective_at=effective,
                                     **by, **_attestation(command))]
        case RecordMeasurement():
            return _record_measurement(command, state, scorer)
        case MarkEntryInError():
            return _mark_in_error(command, state)
        case InterpretMeasurement():
            require_client_voice(actor, state)  # their own words, after discharge too
            if command.measurement_id not in state.measurements:
                raise NotFound("There is no such measurement.", code="measurement_not_found",
                               field="measurement_id")
            if command.measurement_id in state.measurements_in_error:
                raise DomainRuleViolation("This measurement was entered in error.",
                                          code="entered_in_error", field="measurement_id")
            _require_text(command.text, "text")
            return [MeasurementInterpreted(measurement_id=command.measurement_id, text=command.text, **by)]
        case RecordNote():
            require_care_team_clinician(actor, state)
            _require_not_discharged(state)
            _require_text(command.text, "text")
            if command.note_id in state.notes:
                raise DomainRuleViolation("A note with this id exists.", code="duplicate_id")
            return [NoteRecorded(note_id=command.note_id, text=command.text,
                                 goal_ids=command.goal_ids, **by)]
        case RaiseRiskFlag():
            require_care_team_clinician(actor, state)
            if command.flag_id in state.risk_flags:
                raise DomainRuleViolation("A risk flag with this id exists.", code="duplicate_id")
            return [RiskFlagRaised(flag_id=command.flag_id, source="clinician",
                                   items=command.items, note=command.note, raised_by=actor.id,
                                   raised_by_role=actor.role, raised_at=command.at)]
        case AcknowledgeRiskFlag():
            # Allowed after discharge too: a flag raised by self-monitoring must be seen to.
            require_care_team_clinician(actor, state)
            if command.flag_id not in state.risk_flags:
                raise NotFound("There is no such risk flag.", code="risk_flag_not_found")
            if state.risk_flags[command.flag_id]:
                raise DomainRuleViolation("This risk flag was already acknowledged.",
                                          code="risk_flag_already_acknowledged")
            _require_text(command.action_taken, "action_taken")
            return [RiskFlagAcknowledged(flag_id=command.flag_id,
                                         action_taken=command.action_taken,
                                         acknowledged_at=command.at, **by)]
        case RaiseAlert():
            if actor.role is not Role.SYSTEM:
                raise Forbidden("Alerts are raised by Alliance's alert policy.", code="system_only")
            _require_not_discharged(state)
            if command.alert.alert_id in state.alerts:
                raise DomainRuleViolation("This alert was already raised.", code="duplicate_id")
            return [command.alert]
        case AcknowledgeAlert():
            # Like a risk flag: a care-team clinician says what was done about it.
            require_care_team_clinician(actor, state)
            if command.alert_id not in state.alerts:
                raise NotFound("There is no such alert.", code="alert_not_found")
            if state.alerts[command.alert_id]:
                raise DomainRuleViolation("This alert was already acknowledged.",
                                          code="alert_already_acknowledged")
            _require_text(command.action_taken, "action_taken")
            return [AlertAcknowledged(alert_id=command.alert_id, action_taken=command.action_taken,
                                      acknowledged_at=command.at, **by)]
        case GiveFeedback():
            require_client_voice(actor, state)
            _require_text(command.text, "text")
            if command.rating is not None and not 0 <= command.rating <= 10:
                raise ValidationError("A rating is between 0 and 10.", code="invalid_rating",
                                      field="rating")
            if command.feedback_id in state.feedback:
                raise DomainRuleViolation("Feedback with this id exists.", code="duplicate_id")
            return [FeedbackGiven(feedback_id=command.feedback_id, text=command.text,
                                  rating=command.rating, resonates=command.resonates,
                                  misaligned=command.misaligned, goal_ids=command.goal_ids,
                                  **by)]
        case AnswerFeedback():
            # Allowed after discharge too: feedback given while self-monitoring deserves an answer.
            require_care_team_clinician(actor, state)
            if command.feedback_id not in state.feedback:
                raise NotFound("There is no such feedback.", code="feedback_not_found", field="feedback_id")
            if command.answer_id in state.feedback_answers:
                raise DomainRuleViolation("An answer with this id exists.", code="duplicate_id")
            _require_text(command.text, "text")
            return [FeedbackAnswered(feedback_id=command.feedback_id, answer_id=command.answer_id,
                                     text=command.text, change_event_ids=tuple(dict.fromkeys(command.change_event_ids)),
                                     **by)]
        case UpdateRelapsePlan():
            if not is_client_voice(actor, state):
                require_care_team_clinician(actor, state)
                _require_not_discharged(state)
            if not (command.warning_signs or command.actions or command.supports):
                raise ValidationError("The plan needs at least one warning sign, action or "
                                      "support.", code="plan_empty")
            return [RelapsePreventionPlanUpdated(plan_version=state.relapse_plan_version + 1,
                                                 warning_signs=command.warning_signs,
                                                 actions=command.actions,
                                                 supports=command.supports, **by)]
        case AttachEpisodeMeasure():
            party_of(actor, state)  # the client (self-monitoring) or a clinician on the team
            _require_not_discharged(state)
            if not state.consent_in_force(ConsentScope.MEASUREMENT, command.at):
                raise DomainRuleViolation("The client's consent for measurement is not in force.",
                                          code="consent_not_in_force", scope="measurement")
            _require_text(command.instrument_id, "instrument_id")
            schedule = validate_schedule(command.schedule)
            if state.episode_measures.get(command.instrument_id) == schedule:
                raise DomainRuleViolation("This measure is already attached with this schedule.",
                                          code="measure_already_attached")
            return [EpisodeMeasureAttached(instrument_id=command.instrument_id, schedule=schedule,
                                           **by)]
        case DetachEpisodeMeasure():
            party_of(actor, state)
            if command.instrument_id not in state.episode_measures:
                raise NotFound("This measure is not attached to the episode.",
                               code="measure_not_attached")
            return [EpisodeMeasureDetached(instrument_id=command.instrument_id, **by)]
        case PlaceLegalHold():
            require_admin(actor)
            if command.hold_id in state.legal_holds:
                raise DomainRuleViolation("This legal hold is already in place.",
                                          code="duplicate_id")
            _require_text(command.reason, "reason")
            return [LegalHoldPlaced(hold_id=command.hold_id, reason=command.reason, **by)]
        case ReleaseLegalHold():
            require_admin(actor)
            if command.hold_id not in state.legal_holds:
                raise NotFound("There is no such legal hold in place.",
                               code="legal_hold_not_found")
            return [LegalHoldReleased(hold_id=command.hold_id, **by)]
        case RequestErasure():
            if not is_client_voice(actor, state):
                require_admin(actor)
            if command.request_id in state.erasure_requests:
                raise DomainRuleViolation("This erasure request exists.", code="duplicate_id")
            return [ErasureRequested(request_id=command.request_id, **by)]
        case CompleteErasure():
            require_admin(actor)
            if command.request_id not in state.erasure_requests:
                raise NotFound("There is no such erasure request.",
                               code="erasure_not_requested")
            if state.legal_hold:
                raise DomainRuleViolation("A legal hold is in place; the record cannot be "
                                          "erased until it is released.",
                                          code="legal_hold_in_force")
            return [ClientErased(request_id=command.request_id, **by)]
        case EnrollClient():  # handled above; kept for exhaustiveness
            raise AssertionError("unreachable")
        case _:
            assert_never(command)


def _check_reporter(command: RecordMeasurement, state: ClientState) -> None:
    """The informant must be who is acting: the client, a registered proxy, or a clinician
    on the care team (so a proxy's entry can never read as the client's own)."""
    actor, reporter = command.actor, command.reported_by
    if reporter.channel is None:
        raise ValidationError("Say how the answers were given (app, link, session or import).",
                              code="channel_required", field="reported_by.channel")
    match reporter.informant:
        case "self":
            if actor.role is not Role.CLIENT:
                raise Forbidden("Answers in the client's own name are given by the client; a "
                                "proxy reports as 'proxy'.", code="informant_mismatch",
                                field="reported_by.informant")
            require_client_voice(actor, state)  # self-monitoring continues after discharge
        case "proxy":
            if actor.role is not Role.PROXY:
                raise Forbidden("Proxy-reported answers are given by a registered proxy.",
                                code="informant_mismatch", field="reported_by.informant")
            require_client_voice(actor, state)
            if reporter.relationship is None:
                raise ValidationError("Say how the proxy is related to the client.",
                                      code="relationship_required",
                                      field="reported_by.relationship")
        case "clinician":
            require_care_team_clinician(actor, state)
            _require_not_discharged(state)
        case _:
            raise ValidationError("reported_by.informant is 'self', 'proxy' or 'clinician'.",
                                  code="invalid", field="reported_by.informant")
    if reporter.informant != "proxy" and reporter.relationship is not None:
        raise ValidationError("A relationship is given only for a proxy.",
                              code="invalid", field="reported_by.relationship")


def _record_measurement(command: RecordMeasurement, state: ClientState,
                        scorer: MeasurementScorer | None) -> list[EventPayload]:
    if scorer is None:
        # Never record a measurement unscored: scores, band and risk come only from the
        # installed instrument, so a handler without instruments cannot record one.
        raise ConfigurationError("Measurements are scored by the installed instruments; this "
                                 "handler was given none.", code="instruments_unavailable")
    _check_reporter(command, state)
    _require_consent(state, ConsentScope.MEASUREMENT, command.at)
    if command.measurement_id in state.measurements:
        raise DomainRuleViolation("A measurement with this id exists.", code="duplicate_id")
    if command.observed_at > command.at:
        raise ValidationError("A measurement cannot be observed in the future.",
                              code="observed_in_future", field="observed_at")
    try:
        scored = scorer(command.instrument_id, command.answers, version=command.instrument_version)
    except NotFound as exc:
        raise ValidationError(exc.message, code=exc.code, field="instrument_id") from None
    if scored.per_goal and not command.goal_ids:
        # A rating of one goal (GAS, confidence) means nothing without the goal it rates.
        raise ValidationError("This rating is about one goal: name it in goal_ids.",
                              code="goal_required", field="goal_ids")
    events: list[EventPayload] = [MeasurementRecorded(
        measurement_id=command.measurement_id, instrument_id=scored.instrument_id,
        instrument_version=scored.instrument_version, fingerprint=scored.fingerprint,
        answers=scored.answers, free_text=scored.free_text, scores=scored.scores,
        band=scored.band, reported_by=command.reported_by, observed_at=command.observed_at,
        goal_ids=command.goal_ids, recorded_under_consent_at=command.at,
        risk_items=scored.risk_items, unanswered=scored.unanswered, incomplete=scored.incomplete,
        prorated=scored.prorated)]
    flag = measurement_risk_flag(command.measurement_id, scored, at=command.at)
    if flag is not None:
        events.append(flag)
    return events


def measurement_risk_flag(measurement_id: UUID, scored: ScoredMeasurement, *,
                          at: datetime) -> RiskFlagRaised | None:
    """The flag a scored measurement raises, if any: raised by ``system`` (Alliance read the
    answers), naming the measurement. A risk answer above threshold wins over a skipped one."""
    if scored.risk_items:
        reason: RiskReason = "risk_answer"
        items = scored.risk_items
    elif scored.risk_unanswered:
        reason, items = "risk_item_unanswered", scored.risk_unanswered
    else:
        return None
    return RiskFlagRaised(flag_id=risk_flag_id_for(measurement_id), source="measurement",
                          measurement_id=measurement_id, items=items, reason=reason,
                          raised_by=SYSTEM_ACTOR_ID, raised_by_role=Role.SYSTEM, raised_at=at)


def _mark_in_error(command: MarkEntryInError, state: ClientState) -> list[EventPayload]:
    actor = command.actor
    by = by_of(actor)
    _require_text(command.reason, "reason")
    match command.kind:
        case "measurement":
            informant = state.measurements.get(command.entry_id)
            if informant is None:
                raise NotFound("There is no such measurement.", code="measurement_not_found")
            # The client (or their proxy) may correct the client side's own entries; the care
            # team any entry.
            if not (informant in ("self", "proxy") and is_client_voice(actor, state)):
                require_care_team_clinician(actor, state)
            if command.entry_id in state.measurements_in_error:
                raise DomainRuleViolation("This measurement is already marked as entered in "
                                          "error.", code="already_entered_in_error")
            return [MeasurementEnteredInError(measurement_id=command.entry_id,
                                              reason=command.reason, **by)]
        case "note":
            if command.entry_id not in state.notes:
                raise NotFound("There is no such note.", code="note_not_found")
            require_care_team_clinician(actor, state)
            if command.entry_id in state.notes_in_error:
                raise DomainRuleViolation("This note is already marked as entered in error.",
                                          code="already_entered_in_error")
            return [NoteEnteredInError(note_id=command.entry_id, reason=command.reason, **by)]
        case _:
            assert_never(command.kind)


def is_care_team_member(actor: Actor, state: ClientState) -> bool:
    return is_care_team_clinician(actor, state)
