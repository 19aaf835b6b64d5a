"""The goal stream: a goal owned by client and clinician together.

Stream id ``goal-{goal_id}``. A goal is proposed by either party (who authored the
words is recorded; the client's own words are kept beside the clinician's
structured statement), reflected, restated and revised (each restatement or
revision is a new version) and becomes active only when the client and a
clinician on the care team have agreed to the same current version. After that
every change to target, due date, pace, milestones or attainment scale is a
change proposal that applies only when the other party accepts it; declined and
withdrawn proposals stay in history.

``decide_goal(command, goal_state, client_state)`` reads the client stream for
the care team, proxies and consents; the handler appends to the goal stream and
asserts the client stream's version unchanged in the same transaction.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any, Literal, assert_never
from uuid import UUID

import msgspec
from msgspec.structs import replace

from alliance.core.authority import (
    Command,
    Party,
    by_of,
    party_of,
    require_care_team_clinician,
    require_client_voice,
    require_not_auditor,
    require_tenant,
)
from alliance.core.client import ClientState
from alliance.core.consent import ConsentScope
from alliance.core.errors import DomainRuleViolation, NotFound, ValidationError
from alliance.core.events.base import (
    EventPayload,
    OptionalPersonalStr,
    PersonalMap,
    PersonalStr,
    PersonalTexts,
)
from alliance.core.events.codec import UPCAST_OCCURRED_AT
from alliance.core.identity import Role
from alliance.core.schedules import (
    Schedule,
    describe,
    parse_free_text,
    validate_schedule,
)

#: The SMART facets a goal may carry as text (the due date is a separate field).
FACET_KEYS: tuple[str, ...] = ("specific", "measure", "target", "achievable", "relevant")

ChangeKind = Literal["target", "due_date", "pace", "milestone_add", "milestone_update",
                     "milestone_remove", "attainment_scale", "measure_schedule"]
InterventionKind = Literal["skills_training", "cognitive_restructuring", "exposure",
                           "mindfulness", "behavioural_experiment", "other"]
ReviewOutcome = Literal["celebrate", "continue", "adjust_pace", "adjust_target", "reframe",
                        "pause"]
CloseOutcome = Literal["achieved", "not_achieved", "discontinued"]
ItemKind = Literal["barrier", "contingency", "resource", "intervention"]
ChangeStatus = Literal["pending", "accepted", "declined", "withdrawn"]


def goal_stream(goal_id: UUID) -> str:
    return f"goal-{goal_id}"


class GoalStatus(enum.StrEnum):
    NONE = "none"  # nothing recorded yet
    PROPOSED = "proposed"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"
    ACTIVE = "active"
    PAUSED = "paused"
    MAINTENANCE = "maintenance"
    ACHIEVED = "achieved"
    NOT_ACHIEVED = "not_achieved"
    DISCONTINUED = "discontinued"
    ENTERED_IN_ERROR = "entered_in_error"


#: Statuses in which the goal is being worked on (changes go through proposals).
IN_PLAY: frozenset[GoalStatus] = frozenset(
    {GoalStatus.ACTIVE, GoalStatus.PAUSED, GoalStatus.MAINTENANCE})
#: Statuses in which the goal is still open (drafting or in play).
OPEN: frozenset[GoalStatus] = IN_PLAY | {GoalStatus.PROPOSED}


# --- events -------------------------------------------------------------------------------

class GoalProposed(EventPayload, tag="goal.proposed", kw_only=True, frozen=True):
    goal_id: UUID
    client_id: UUID
    tenant_id: UUID
    version: int = 1
    author_party: Party
    by: UUID
    by_role: Role
    on_behalf: bool = False  # a proxy acting for the client
    #: The clinician's structured version (None when the client proposed it).
    statement: OptionalPersonalStr = None
    #: The goal in the client's own words (None until the client gives them).
    client_words: OptionalPersonalStr = None
    facets: PersonalMap = {}
    due_date: date | None = None
    pace: OptionalPersonalStr = None


class GoalRestated(EventPayload, tag="goal.restated", kw_only=True, frozen=True):
    """The client put the goal in their own words (a new version)."""

    version: int
    client_words: PersonalStr
    by: UUID
    by_role: Role
    on_behalf: bool = False


class GoalReflected(EventPayload, tag="goal.reflected", kw_only=True, frozen=True):
    """The clinician reflected the goal back; the content and version do not change."""

    on_version: int
    reflection: PersonalStr
    by: UUID
    by_role: Role


class GoalRevised(EventPayload, tag="goal.revised", kw_only=True, frozen=True):
    """A new version; carries the full content of that version."""

    version: int
    party: Party
    by: UUID
    by_role: Role
    on_behalf: bool = False
    statement: OptionalPersonalStr = None
    client_words: OptionalPersonalStr = None
    facets: PersonalMap = {}
    due_date: date | None = None
    pace: OptionalPersonalStr = None


class GoalAgreed(EventPayload, tag="goal.agreed", kw_only=True, frozen=True):
    goal_id: UUID
    version: int
    party: Party
    by: UUID
    by_role: Role
    on_behalf: bool = False


class GoalActivated(EventPayload, tag="goal.activated", kw_only=True, frozen=True):
    """Both parties have agreed to ``version``."""

    version: int


class GoalDeclined(EventPayload, tag="goal.declined", kw_only=True, frozen=True):
    party: Party
    by: UUID
    by_role: Role
    reason: OptionalPersonalStr = None


class GoalWithdrawn(EventPayload, tag="goal.withdrawn", kw_only=True, frozen=True):
    party: Party
    by: UUID
    by_role: Role
    reason: OptionalPersonalStr = None


class ChangeProposed(EventPayload, tag="goal.change_proposed", kw_only=True, frozen=True):
    change_id: UUID
    kind: ChangeKind
    party: Party
    by: UUID
    by_role: Role
    on_behalf: bool = False
    base_version: int
    new_text: OptionalPersonalStr = None  # target, pace or milestone description
    new_date: date | None = None  # due date or milestone date
    milestone_id: UUID | None = None
    new_levels: PersonalTexts = ()  # attainment scale levels −2…+2
    new_weight: float | None = None
    rationale: OptionalPersonalStr = None
    #: ``measure_schedule``: the attached instrument and its new schedule.
    instrument_id: str | None = None
    new_schedule: Schedule | None = None


class ChangeAccepted(EventPayload, tag="goal.change_accepted", kw_only=True, frozen=True):
    change_id: UUID
    party: Party
    by: UUID
    by_role: Role
    on_behalf: bool = False
    new_version: int


class ChangeDeclined(EventPayload, tag="goal.change_declined", kw_only=True, frozen=True):
    change_id: UUID
    party: Party
    by: UUID
    by_role: Role
    reason: OptionalPersonalStr = None


class ChangeWithdrawn(EventPayload, tag="goal.change_withdrawn", kw_only=True, frozen=True):
    change_id: UUID
    party: Party
    by: UUID
    by_role: Role


class MilestoneAdded(EventPayload, tag="goal.milestone_added", kw_only=True, frozen=True):
    milestone_id: UUID
    description: PersonalStr
    provisional_date: date | None = None
    by: UUID
    by_role: Role


class MilestoneReached(EventPayload, tag="goal.milestone_reached", kw_only=True, frozen=True):
    milestone_id: UUID
    reached_on: date
    by: UUID
    by_role: Role


class CheckpointScheduled(EventPayload, tag="goal.checkpoint_scheduled", kw_only=True, frozen=True):
    checkpoint_id: UUID
    provisional_date: date
    purpose: OptionalPersonalStr = None
    by: UUID
    by_role: Role


class CheckpointCancelled(EventPayload, tag="goal.checkpoint_cancelled", kw_only=True, frozen=True):
    checkpoint_id: UUID
    by: UUID
    by_role: Role


class BarrierNoted(EventPayload, tag="goal.barrier_noted", kw_only=True, frozen=True):
    barrier_id: UUID
    text: PersonalStr
    by: UUID
    by_role: Role


class ContingencyPlanned(EventPayload, tag="goal.contingency_planned", kw_only=True, frozen=True):
    contingency_id: UUID
    trigger: PersonalStr  # "if …"
    response: PersonalStr  # "then I will …"
    barrier_id: UUID | None = None
    by: UUID
    by_role: Role


class ResourceNoted(EventPayload, tag="goal.resource_noted", kw_only=True, frozen=True):
    resource_id: UUID
    text: PersonalStr
    by: UUID
    by_role: Role


class InterventionLinked(EventPayload, tag="goal.intervention_linked", kw_only=True, frozen=True):
    intervention_id: UUID
    kind: InterventionKind
    detail: OptionalPersonalStr = None
    by: UUID
    by_role: Role


class GoalItemRemoved(EventPayload, tag="goal.item_removed", kw_only=True, frozen=True):
    item_kind: ItemKind
    item_id: UUID
    by: UUID
    by_role: Role


class AttainmentScaleSet(EventPayload, tag="goal.attainment_scale_set", kw_only=True, frozen=True):
    #: Five level descriptions in the client's words, from −2 to +2.
    levels: PersonalTexts
    weight: float = 1.0
    baseline_level: int | None = -1
    by: UUID
    by_role: Role


class MeasureAttached(EventPayload, tag="goal.measure_attached", kw_only=True, frozen=True):
    """Schema 2: ``schedule`` is a :class:`Schedule` (it was free text, "weekly"; version 1
    events are upcast by :func:`upcast_measure_attached_v1`)."""

    schema_version = 2

    instrument_id: str
    schedule: Schedule
    by: UUID
    by_role: Role


def upcast_measure_attached_v1(document: dict[str, Any]) -> dict[str, Any]:
    """``goal.measure_attached`` v1 → v2: the free text is read as a schedule starting on the
    day it was attached (UTC: no time zone was kept), or kept as ``legacy`` text (never due)."""
    occurred = document.get(UPCAST_OCCURRED_AT)
    start = datetime.fromisoformat(occurred).date() if isinstance(occurred, str) else date(1970, 1, 1)
    text = document.get("schedule")
    schedule = parse_free_text(text if isinstance(text, str) else "", start=start)
    return {**document, "schedule": msgspec.to_builtins(schedule)}


#: Upcasters of goal-stream events, keyed by (type name, schema version they read).
GOAL_UPCASTERS = {("goal.measure_attached", 1): upcast_measure_attached_v1}


class MeasureDetached(EventPayload, tag="goal.measure_detached", kw_only=True, frozen=True):
    instrument_id: str
    by: UUID
    by_role: Role


class ReviewRecorded(EventPayload, tag="goal.review_recorded", kw_only=True, frozen=True):
    review_id: UUID
    checkpoint_id: UUID | None = None
    looked_at: PersonalTexts = ()  # what was looked at, in words
    measurement_ids: tuple[UUID, ...] = ()
    outcome: ReviewOutcome
    client_view: OptionalPersonalStr = None
    summary: OptionalPersonalStr = None
    by: UUID
    by_role: Role


class ReviewConfirmed(EventPayload, tag="goal.review_confirmed", kw_only=True, frozen=True):
    """The client's own word on a review: whether they agree with it, and their view. A review
    is the client's as much as the clinician's; one the client disagrees with says so."""

    review_id: UUID
    agrees: bool
    client_view: OptionalPersonalStr = None
    by: UUID
    by_role: Role


class ReviewEnteredInError(EventPayload, tag="goal.review_entered_in_error", kw_only=True, frozen=True):
    review_id: UUID
    reason: PersonalStr
    by: UUID
    by_role: Role


class GoalPaused(EventPayload, tag="goal.paused", kw_only=True, frozen=True):
    reason: OptionalPersonalStr = None
    by: UUID
    by_role: Role


class GoalResumed(EventPayload, tag="goal.resumed", kw_only=True, frozen=True):
    by: UUID
    by_role: Role


class GoalClosed(EventPayload, tag="goal.closed", kw_only=True, frozen=True):
    outcome: CloseOutcome
    reason: OptionalPersonalStr = None
    by: UUID
    by_role: Role


class GoalMaintenanceStarted(EventPayload, tag="goal.maintenance_started", kw_only=True, frozen=True):
    reason: OptionalPersonalStr = None
    by: UUID
    by_role: Role


class GoalEnteredInError(EventPayload, tag="goal.entered_in_error", kw_only=True, frozen=True):
    reason: PersonalStr
    by: UUID
    by_role: Role


GOAL_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    GoalProposed, GoalRestated, GoalReflected, GoalRevised, GoalAgreed, GoalActivated,
    GoalDeclined, GoalWithdrawn, ChangeProposed, ChangeAccepted, ChangeDeclined,
    ChangeWithdrawn, MilestoneAdded, MilestoneReached, CheckpointScheduled,
    CheckpointCancelled, BarrierNoted, ContingencyPlanned, ResourceNoted, InterventionLinked,
    GoalItemRemoved, AttainmentScaleSet, MeasureAttached, MeasureDetached, ReviewRecorded,
    ReviewConfirmed, ReviewEnteredInError, GoalPaused, GoalResumed, GoalClosed, GoalMaintenanceStarted,
    GoalEnteredInError,
)


# --- commands -----------------------------------------------------------------------------

class GoalCommand(Command, kw_only=True, frozen=True):
    goal_id: UUID
    client_id: UUID


class ProposeGoal(GoalCommand, tag="goal.propose", kw_only=True, frozen=True):
    #: The goal as the proposer puts it: the client's own words when the client (or proxy)
    #: proposes, the clinician's structured statement when a clinician does.
    text: str
    facets: dict[str, str] = {}
    due_date: date | None = None
    pace: str | None = None


class RestateGoal(GoalCommand, tag="goal.restate", kw_only=True, frozen=True):
    client_words: str


class ReflectGoal(GoalCommand, tag="goal.reflect", kw_only=True, frozen=True):
    reflection: str


class ReviseGoal(GoalCommand, tag="goal.revise", kw_only=True, frozen=True):
    """New content; ``None`` keeps a field as it is. Each party revises their own words."""

    text: str | None = None
    facets: dict[str, str] | None = None
    due_date: date | None = None
    clear_due_date: bool = False
    pace: str | None = None


class AgreeGoal(GoalCommand, tag="goal.agree", kw_only=True, frozen=True):
    version: int


class DeclineGoal(GoalCommand, tag="goal.decline", kw_only=True, frozen=True):
    reason: str | None = None


class WithdrawGoal(GoalCommand, tag="goal.withdraw", kw_only=True, frozen=True):
    reason: str | None = None


class ProposeChange(GoalCommand, tag="goal.propose_change", kw_only=True, frozen=True):
    change_id: UUID
    kind: ChangeKind
    new_text: str | None = None
    new_date: date | None = None
    milestone_id: UUID | None = None
    new_levels: tuple[str, ...] = ()
    new_weight: float | None = None
    rationale: str | None = None
    #: ``measure_schedule``: the attached instrument and the schedule proposed for it.
    instrument_id: str | None = None
    new_schedule: Schedule | None = None


class AcceptChange(GoalCommand, tag="goal.accept_change", kw_only=True, frozen=True):
    change_id: UUID


class DeclineChange(GoalCommand, tag="goal.decline_change", kw_only=True, frozen=True):
    change_id: UUID
    reason: str | None = None


class WithdrawChange(GoalCommand, tag="goal.withdraw_change", kw_only=True, frozen=True):
    change_id: UUID


class AddMilestone(GoalCommand, tag="goal.add_milestone", kw_only=True, frozen=True):
    milestone_id: UUID
    description: str
    provisional_date: date | None = None


class MarkMilestoneReached(GoalCommand, tag="goal.mark_milestone_reached", kw_only=True,
                           frozen=True):
    milestone_id: UUID
    reached_on: date


class ScheduleCheckpoint(GoalCommand, tag="goal.schedule_checkpoint", kw_only=True,
                         frozen=True):
    checkpoint_id: UUID
    provisional_date: date
    purpose: str | None = None


class CancelCheckpoint(GoalCommand, tag="goal.cancel_checkpoint", kw_only=True, frozen=True):
    checkpoint_id: UUID


class NoteBarrier(GoalCommand, tag="goal.note_barrier", kw_only=True, frozen=True):
    barrier_id: UUID
    text: str


class PlanContingency(GoalCommand, tag="goal.plan_contingency", kw_only=True, frozen=True):
    contingency_id: UUID
    trigger: str
    response: str
    barrier_id: UUID | None = None


class NoteResource(GoalCommand, tag="goal.note_resource", kw_only=True, frozen=True):
    resource_id: UUID
    text: str


class LinkIntervention(GoalCommand, tag="goal.link_intervention", kw_only=True, frozen=True):
    intervention_id: UUID
    kind: InterventionKind
    detail: str | None = None


class RemoveGoalItem(GoalCommand, tag="goal.remove_item", kw_only=True, frozen=True):
    item_kind: ItemKind
    item_id: UUID


class SetAttainmentScale(GoalCommand, tag="goal.set_attainment_scale", kw_only=True,
                         frozen=True):
    levels: tuple[str, ...]
    weight: float = 1.0
    baseline_level: int | None = -1


class AttachMeasure(GoalCommand, tag="goal.attach_measure", kw_only=True, frozen=True):
    instrument_id: str
    schedule: Schedule


class DetachMeasure(GoalCommand, tag="goal.detach_measure", kw_only=True, frozen=True):
    instrument_id: str


class RecordReview(GoalCommand, tag="goal.record_review", kw_only=True, frozen=True):
    review_id: UUID
    outcome: ReviewOutcome
    checkpoint_id: UUID | None = None
    looked_at: tuple[str, ...] = ()
    measurement_ids: tuple[UUID, ...] = ()
    client_view: str | None = None
    summary: str | None = None


class ConfirmReview(GoalCommand, tag="goal.confirm_review", kw_only=True, frozen=True):
    """The client (or their proxy) confirms a review: agrees or not, in their own words."""

    review_id: UUID
    agrees: bool
    #: Their view of the review; needed when they do not agree.
    client_view: str | None = None


class MarkReviewInError(GoalCommand, tag="goal.mark_review_in_error", kw_only=True,
                        frozen=True):
    review_id: UUID
    reason: str


class PauseGoal(GoalCommand, tag="goal.pause", kw_only=True, frozen=True):
    reason: str | None = None


class ResumeGoal(GoalCommand, tag="goal.resume", kw_only=True, frozen=True):
    pass


class CloseGoal(GoalCommand, tag="goal.close", kw_only=True, frozen=True):
    outcome: CloseOutcome
    reason: str | None = None


class StartMaintenance(GoalCommand, tag="goal.start_maintenance", kw_only=True, frozen=True):
    reason: str | None = None


class MarkGoalInError(GoalCommand, tag="goal.mark_in_error", kw_only=True, frozen=True):
    reason: str


GoalCommandUnion = (
    ProposeGoal | RestateGoal | ReflectGoal | ReviseGoal | AgreeGoal | DeclineGoal
    | WithdrawGoal | ProposeChange | AcceptChange | DeclineChange | WithdrawChange
    | AddMilestone | MarkMilestoneReached | ScheduleCheckpoint | CancelCheckpoint
    | NoteBarrier | PlanContingency | NoteResource | LinkIntervention | RemoveGoalItem
    | SetAttainmentScale | AttachMeasure | DetachMeasure | RecordReview | ConfirmReview | MarkReviewInError
    | PauseGoal | ResumeGoal | CloseGoal | StartMaintenance | MarkGoalInError
)

#: Commands that stop or retract something: allowed without goal-setting consent in force
#: (withdrawal stops new actions, it must not trap a goal open) and after discharge.
STOPPING_COMMANDS: tuple[type[GoalCommand], ...] = (
    DeclineGoal, WithdrawGoal, DeclineChange, WithdrawChange, PauseGoal, CloseGoal,
    MarkGoalInError, MarkReviewInError,
)
#: Also allowed after discharge (but needing consent): moving to maintenance.
AFTER_DISCHARGE_COMMANDS: tuple[type[GoalCommand], ...] = (*STOPPING_COMMANDS,
                                                           StartMaintenance)


# --- state --------------------------------------------------------------------------------

class Milestone(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    milestone_id: UUID
    description: str
    provisional_date: date | None = None
    reached_on: date | None = None
    removed: bool = False


class Checkpoint(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    checkpoint_id: UUID
    provisional_date: date
    purpose: str | None = None
    reviewed: bool = False
    cancelled: bool = False


class Contingency(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    trigger: str
    response: str
    barrier_id: UUID | None = None


class Intervention(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    kind: str
    detail: str | None = None


class AttainmentScale(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    levels: tuple[str, ...]
    weight: float = 1.0
    baseline_level: int | None = -1


class Change(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    change_id: UUID
    kind: str
    proposed_by_party: Party
    proposed_by: UUID
    base_version: int
    new_text: str | None = None
    new_date: date | None = None
    milestone_id: UUID | None = None
    new_levels: tuple[str, ...] = ()
    new_weight: float | None = None
    instrument_id: str | None = None
    new_schedule: Schedule | None = None
    status: ChangeStatus = "pending"
    decided_by_party: Party | None = None
    decided_by: UUID | None = None


class Review(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    review_id: UUID
    outcome: str
    checkpoint_id: UUID | None = None
    in_error: bool = False
    #: The client's confirmation: None before it, else whether they agree.
    client_agrees: bool | None = None


class GoalState(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    goal_id: UUID
    client_id: UUID | None = None
    tenant_id: UUID | None = None
    status: GoalStatus = GoalStatus.NONE
    paused_from: GoalStatus | None = None
    author_party: Party | None = None
    author_id: UUID | None = None
    version: int = 0
    statement: str | None = None
    client_words: str | None = None
    facets: dict[str, str] = {}
    due_date: date | None = None
    pace: str | None = None
    last_reflection: str | None = None
    client_agreed_version: int | None = None
    clinician_agreed_version: int | None = None
    clinician_agreed_by: UUID | None = None
    activated_version: int | None = None
    changes: dict[UUID, Change] = {}
    milestones: dict[UUID, Milestone] = {}
    checkpoints: dict[UUID, Checkpoint] = {}
    barriers: dict[UUID, str] = {}
    contingencies: dict[UUID, Contingency] = {}
    resources: dict[UUID, str] = {}
    interventions: dict[UUID, Intervention] = {}
    attainment_scale: AttainmentScale | None = None
    measures: dict[str, str] = {}  # instrument id -> its schedule in words (``describe``)
    #: instrument id -> its schedule (empty in a document folded before schedules had a shape)
    schedules: dict[str, Schedule] = {}
    reviews: dict[UUID, Review] = {}
    close_reason: str | None = None

    @property
    def both_agreed_current(self) -> bool:
        return self.version > 0 and self.client_agreed_version == self.version \
            and self.clinician_agreed_version == self.version

    @property
    def pending_changes(self) -> list[Change]:
        return [c for c in self.changes.values() if c.status == "pending"]


def initial_goal_state(goal_id: UUID) -> GoalState:
    return GoalState(goal_id=goal_id)


def fhir_lifecycle_status(goal: GoalState) -> str:
    """FHIR ``Goal.lifecycleStatus`` for the goal (achievementStatus comes from progress)."""
    match goal.status:
        case GoalStatus.NONE | GoalStatus.PROPOSED:
            if goal.client_agreed_version == goal.version \
                    or goal.clinician_agreed_version == goal.version:
                return "accepted" if goal.version > 0 else "proposed"
            return "proposed"
        case GoalStatus.ACTIVE | GoalStatus.MAINTENANCE:
            return "active"
        case GoalStatus.PAUSED:
            return "on-hold"
        case GoalStatus.ACHIEVED | GoalStatus.NOT_ACHIEVED:
            return "completed"
        case GoalStatus.DISCONTINUED | GoalStatus.WITHDRAWN:
            return "cancelled"
        case GoalStatus.DECLINED:
            return "rejected"
        case GoalStatus.ENTERED_IN_ERROR:
            return "entered-in-error"
        case _:
            assert_never(goal.status)


def is_due(item: Milestone | Checkpoint, today: date) -> bool:
    """Due: its provisional date has come (today or earlier) and it is not done yet."""
    if isinstance(item, Milestone):
        return (not item.removed and item.reached_on is None
                and item.provisional_date is not None and item.provisional_date <= today)
    return not item.cancelled and not item.reviewed and item.provisional_date <= today


def is_overdue(item: Milestone | Checkpoint, today: date) -> bool:
    """Overdue: due, and its provisional date is already past."""
    return is_due(item, today) and item.provisional_date is not None \
        and item.provisional_date < today


# --- evolve -------------------------------------------------------------------------------

def _apply_change(state: GoalState, change: Change, new_version: int) -> GoalState:
    match change.kind:
        case "target":
            state = replace(state, facets={**state.facets, "target": change.new_text or ""})
        case "due_date":
            state = replace(state, due_date=change.new_date)
        case "pace":
            state = replace(state, pace=change.new_text)
        case "milestone_add" if change.milestone_id is not None:
            ms = Milestone(milestone_id=change.milestone_id, description=change.new_text or "",
                           provisional_date=change.new_date)
            state = replace(state, milestones={**state.milestones, ms.milestone_id: ms})
        case "milestone_update" if change.milestone_id in state.milestones:
            old = state.milestones[change.milestone_id]
            ms = replace(old, description=change.new_text or old.description,
                         provisional_date=change.new_date or old.provisional_date)
            state = replace(state, milestones={**state.milestones, ms.milestone_id: ms})
        case "milestone_remove" if change.milestone_id in state.milestones:
            ms = replace(state.milestones[change.milestone_id], removed=True)
            state = replace(state, milestones={**state.milestones, ms.milestone_id: ms})
        case "measure_schedule" if change.instrument_id in state.measures \
                and change.new_schedule is not None:
            state = _with_schedule(state, change.instrument_id, change.new_schedule)
        case "attainment_scale":
            state = replace(state, attainment_scale=AttainmentScale(
                levels=change.new_levels, weight=change.new_weight or 1.0,
                baseline_level=state.attainment_scale.baseline_level
                if state.attainment_scale else -1))
        case _:
            pass
    # Both parties accepted the change, so both agree to the version it creates.
    return replace(state, version=new_version, client_agreed_version=new_version,
                   clinician_agreed_version=new_version)


def _with_schedule(state: GoalState, instrument_id: str, schedule: Schedule) -> GoalState:
    return replace(state, measures={**state.measures, instrument_id: describe(schedule)},
                   schedules={**state.schedules, instrument_id: schedule})


def _with_change(state: GoalState, change_id: UUID, **fields: object) -> GoalState:
    change = state.changes.get(change_id)
    if change is None:
        return state
    return replace(state, changes={**state.changes, change_id: replace(change, **fields)})


def evolve_goal(state: GoalState, event: EventPayload) -> GoalState:
    """Apply one recorded fact. Never raises."""
    match event:
        case GoalProposed():
            return replace(state, client_id=event.client_id, tenant_id=event.tenant_id,
                           status=GoalStatus.PROPOSED, author_party=event.author_party,
                           author_id=event.by, version=event.version,
                           statement=event.statement, client_words=event.client_words,
                           facets=dict(event.facets), due_date=event.due_date, pace=event.pace,
                           client_agreed_version=None, clinician_agreed_version=None)
        case GoalRestated():
            return replace(state, version=event.version, client_words=event.client_words)
        case GoalReflected():
            return replace(state, last_reflection=event.reflection)
        case GoalRevised():
            return replace(state, version=event.version, statement=event.statement,
                           client_words=event.client_words, facets=dict(event.facets),
                           due_date=event.due_date, pace=event.pace)
        case GoalAgreed():
            if event.party == "client":
                return replace(state, client_agreed_version=event.version)
            return replace(state, clinician_agreed_version=event.version,
                           clinician_agreed_by=event.by)
        case GoalActivated():
            return replace(state, status=GoalStatus.ACTIVE, activated_version=event.version)
        case GoalDeclined():
            return replace(state, status=GoalStatus.DECLINED, close_reason=event.reason)
        case GoalWithdrawn():
            return replace(state, status=GoalStatus.WITHDRAWN, close_reason=event.reason)
        case ChangeProposed():
            change = Change(change_id=event.change_id, kind=event.kind,
                            proposed_by_party=event.party, proposed_by=event.by,
                            base_version=event.base_version, new_text=event.new_text,
                            new_date=event.new_date, milestone_id=event.milestone_id,
                            new_levels=event.new_levels, new_weight=event.new_weight,
                            instrument_id=event.instrument_id, new_schedule=event.new_schedule)
            return replace(state, changes={**state.changes, change.change_id: change})
        case ChangeAccepted():
            accepted = state.changes.get(event.change_id)
            if accepted is None:
                return state
            state = _with_change(state, event.change_id, status="accepted",
                                 decided_by_party=event.party, decided_by=event.by)
            return _apply_change(state, accepted, event.new_version)
        case ChangeDeclined():
            return _with_change(state, event.change_id, status="declined",
                                decided_by_party=event.party, decided_by=event.by)
        case ChangeWithdrawn():
            return _with_change(state, event.change_id, status="withdrawn",
                                decided_by_party=event.party, decided_by=event.by)
        case MilestoneAdded():
            ms = Milestone(milestone_id=event.milestone_id, description=event.description,
                           provisional_date=event.provisional_date)
            return replace(state, milestones={**state.milestones, ms.milestone_id: ms})
        case MilestoneReached():
            old = state.milestones.get(event.milestone_id)
            if old is None:
                return state
            return replace(state, milestones={**state.milestones, old.milestone_id:
                                              replace(old, reached_on=event.reached_on)})
        case CheckpointScheduled():
            cp = Checkpoint(checkpoint_id=event.checkpoint_id,
                            provisional_date=event.provisional_date, purpose=event.purpose)
            return replace(state, checkpoints={**state.checkpoints, cp.checkpoint_id: cp})
        case CheckpointCancelled():
            old_cp = state.checkpoints.get(event.checkpoint_id)
            if old_cp is None:
                return state
            return replace(state, checkpoints={**state.checkpoints, old_cp.checkpoint_id:
                                               replace(old_cp, cancelled=True)})
        case BarrierNoted():
            return replace(state, barriers={**state.barriers, event.barrier_id: event.text})
        case ContingencyPlanned():
            c = Contingency(trigger=event.trigger, response=event.response,
                            barrier_id=event.barrier_id)
            return replace(state, contingencies={**state.contingencies,
                                                 event.contingency_id: c})
        case ResourceNoted():
            return replace(state, resources={**state.resources, event.resource_id: event.text})
        case InterventionLinked():
            i = Intervention(kind=event.kind, detail=event.detail)
            return replace(state, interventions={**state.interventions,
                                                 event.intervention_id: i})
        case GoalItemRemoved():
            field = _ITEM_FIELDS[event.item_kind]
            items: dict[UUID, object] = getattr(state, field)
            return replace(state, **{field: {k: v for k, v in items.items()
                                             if k != event.item_id}})
        case AttainmentScaleSet():
            return replace(state, attainment_scale=AttainmentScale(
                levels=event.levels, weight=event.weight, baseline_level=event.baseline_level))
        case MeasureAttached():
            return _with_schedule(state, event.instrument_id, event.schedule)
        case MeasureDetached():
            return replace(state, measures={k: v for k, v in state.measures.items()
                                            if k != event.instrument_id},
                           schedules={k: v for k, v in state.schedules.items()
                                      if k != event.instrument_id})
        case ReviewRecorded():
            rv = Review(review_id=event.review_id, outcome=event.outcome,
                        checkpoint_id=event.checkpoint_id)
            checkpoints = state.checkpoints
            if event.checkpoint_id in checkpoints:
                cp = checkpoints[event.checkpoint_id]
                checkpoints = {**checkpoints, cp.checkpoint_id: replace(cp, reviewed=True)}
            return replace(state, reviews={**state.reviews, rv.review_id: rv},
                           checkpoints=checkpoints)
        case ReviewConfirmed():
            confirmed = state.reviews.get(event.review_id)
            if confirmed is None:
                return state
            return replace(state, reviews={**state.reviews, confirmed.review_id:
                                           replace(confirmed, client_agrees=event.agrees)})
        case ReviewEnteredInError():
            old_rv = state.reviews.get(event.review_id)
            if old_rv is None:
                return state
            return replace(state, reviews={**state.reviews, old_rv.review_id:
                                           replace(old_rv, in_error=True)})
        case GoalPaused():
            return replace(state, status=GoalStatus.PAUSED, paused_from=state.status)
        case GoalResumed():
            return replace(state, status=state.paused_from or GoalStatus.ACTIVE,
                           paused_from=None)
        case GoalClosed():
            return replace(state, status=GoalStatus(event.outcome), close_reason=event.reason)
        case GoalMaintenanceStarted():
            return replace(state, status=GoalStatus.MAINTENANCE)
        case GoalEnteredInError():
            return replace(state, status=GoalStatus.ENTERED_IN_ERROR, close_reason=event.reason)
        case _:
            return state


_ITEM_FIELDS: dict[str, str] = {"barrier": "barriers", "contingency": "contingencies",
                                "resource": "resources", "intervention": "interventions"}


# --- decide -------------------------------------------------------------------------------

def _text(value: str | None, field: str) -> str:
    if value is None or not value.strip():
        raise ValidationError(f"Please fill in {field.replace('_', ' ')}.",
                              code=f"{field}_required", field=field)
    return value


def _check_facets(facets: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(facets) - set(FACET_KEYS))
    if unknown:
        raise ValidationError(f"Unknown goal facet(s): {', '.join(unknown)}.",
                              code="unknown_facet", field="facets")
    return {k: v for k, v in facets.items() if v.strip()}


def _check_levels(levels: tuple[str, ...], weight: float | None) -> None:
    if len(levels) != 5 or not all(level.strip() for level in levels):
        raise ValidationError("An attainment scale describes five levels, from much less "
                              "than expected (−2) to much more than expected (+2).",
                              code="gas_levels_invalid", field="levels")
    if weight is not None and not weight > 0:
        raise ValidationError("The weight of a goal is a positive number.",
                              code="gas_weight_invalid", field="weight")


def _require_status(goal: GoalState, allowed: frozenset[GoalStatus], code: str,
                    message: str) -> None:
    if goal.status not in allowed:
        raise DomainRuleViolation(message, code=code, status=goal.status.value)


def _require_proposed(goal: GoalState) -> None:
    if goal.status in IN_PLAY:
        raise DomainRuleViolation("The goal has been agreed; propose a change instead.",
                                  code="change_proposal_required")
    _require_status(goal, frozenset({GoalStatus.PROPOSED}), "goal_not_proposed",
                    "This can only be done while the goal is being drafted.")


def _require_in_play(goal: GoalState) -> None:
    _require_status(goal, IN_PLAY, "goal_not_active",
                    "This can only be done once both parties have agreed the goal.")


def _require_open(goal: GoalState) -> None:
    _require_status(goal, OPEN, "goal_closed", "The goal is no longer open.")


def _pending_change(goal: GoalState, change_id: UUID) -> Change:
    change = goal.changes.get(change_id)
    if change is None:
        raise NotFound("There is no such change proposal.", code="change_not_found")
    if change.status != "pending":
        raise DomainRuleViolation(f"This change proposal was already {change.status}.",
                                  code="change_not_pending")
    return change


def _preconditions(command: GoalCommandUnion, goal: GoalState, client: ClientState) -> None:
    require_not_auditor(command.actor)
    if client.erased:
        raise DomainRuleViolation("This client's record has been erased.", code="client_erased")
    if not client.enrolled:
        raise NotFound("This client is not enrolled in a clinic.", code="client_not_enrolled")
    require_tenant(command.tenant_id, client.tenant_id)
    require_tenant(command.tenant_id, goal.tenant_id)
    if command.client_id != client.client_id:
        raise ValidationError("The command names another client.", code="client_mismatch",
                              field="client_id")
    if command.goal_id != goal.goal_id:
        raise ValidationError("The command names another goal.", code="goal_mismatch",
                              field="goal_id")
    if goal.client_id is not None and goal.client_id != command.client_id:
        raise ValidationError("This goal belongs to another client.",
                              code="goal_client_mismatch", field="client_id")
    if isinstance(command, ProposeGoal):
        if goal.status is not GoalStatus.NONE:
            raise DomainRuleViolation("A goal with this id exists.", code="goal_exists")
    elif goal.status is GoalStatus.NONE:
        raise NotFound("There is no such goal.", code="goal_not_found")
    if client.discharged and not isinstance(command, AFTER_DISCHARGE_COMMANDS):
        raise DomainRuleViolation("The client has been discharged; goals can only be closed "
                                  "or moved to maintenance.", code="client_discharged")
    if not isinstance(command, STOPPING_COMMANDS) \
            and not client.consent_in_force(ConsentScope.GOAL_SETTING, command.at):
        raise DomainRuleViolation("The client's consent for goal setting is not in force.",
                                  code="consent_not_in_force", scope="goal_setting")


def decide_goal(command: GoalCommandUnion, goal: GoalState,
                client: ClientState) -> list[EventPayload]:
    """Decide what a goal command records, or raise a domain error (pure)."""
    _preconditions(command, goal, client)
    actor = command.actor
    on_behalf = actor.role is Role.PROXY
    by = by_of(actor)

    match command:
        case ProposeGoal():
            party = party_of(actor, client)
            text = _text(command.text, "text")
            return [GoalProposed(
                goal_id=goal.goal_id, client_id=client.client_id, tenant_id=command.tenant_id,
                author_party=party, on_behalf=on_behalf,
                statement=text if party == "clinician" else None,
                client_words=text if party == "client" else None,
                facets=_check_facets(command.facets), due_date=command.due_date,
                pace=command.pace, **by)]
        case RestateGoal():
            require_client_voice(actor, client)
            _require_proposed(goal)
            return [GoalRestated(version=goal.version + 1,
                                 client_words=_text(command.client_words, "client_words"),
                                 on_behalf=on_behalf, **by)]
        case ReflectGoal():
            require_care_team_clinician(actor, client)
            _require_proposed(goal)
            return [GoalReflected(on_version=goal.version,
                                  reflection=_text(command.reflection, "reflection"), **by)]
        case ReviseGoal():
            party = party_of(actor, client)
            _require_proposed(goal)
            statement: str | None = goal.statement
            words: str | None = goal.client_words
            if command.text is not None:
                if party == "client":
                    words = _text(command.text, "text")
                else:
                    statement = _text(command.text, "text")
            facets = goal.facets if command.facets is None else _check_facets(command.facets)
            due = None if command.clear_due_date else (command.due_date or goal.due_date)
            pace = goal.pace if command.pace is None else command.pace
            if (statement, words, facets, due, pace) == (goal.statement, goal.client_words,
                                                         goal.facets, goal.due_date, goal.pace):
                raise ValidationError("The revision changes nothing.", code="nothing_changed")
            return [GoalRevised(version=goal.version + 1, party=party, on_behalf=on_behalf,
                                statement=statement, client_words=words, facets=facets,
                                due_date=due, pace=pace, **by)]
        case AgreeGoal():
            party = party_of(actor, client)
            if goal.status in IN_PLAY:
                raise DomainRuleViolation("Both parties have already agreed this goal.",
                                          code="goal_already_active")
            _require_proposed(goal)
            if command.version != goal.version:
                raise DomainRuleViolation("The goal has changed since you read it; please "
                                          "read the current version before agreeing.",
                                          code="stale_version", current_version=goal.version)
            agreed = goal.client_agreed_version if party == "client" \
                else goal.clinician_agreed_version
            if agreed == goal.version:
                raise DomainRuleViolation("You have already agreed this version.",
                                          code="already_agreed")
            events: list[EventPayload] = [GoalAgreed(
                goal_id=goal.goal_id, version=goal.version, party=party, on_behalf=on_behalf, **by)]
            other = goal.clinician_agreed_version if party == "client" \
                else goal.client_agreed_version
            if other == goal.version:
                events.append(GoalActivated(version=goal.version))
            return events
        case DeclineGoal():
            party = party_of(actor, client)
            _require_proposed(goal)
            if party == goal.author_party:
                raise DomainRuleViolation("You proposed this goal; withdraw it instead.",
                                          code="cannot_decline_own_proposal")
            return [GoalDeclined(party=party, reason=command.reason, **by)]
        case WithdrawGoal():
            party = party_of(actor, client)
            _require_proposed(goal)
            if party != goal.author_party:
                raise DomainRuleViolation("Only the party who proposed the goal can withdraw "
                                          "it; decline it instead.", code="not_author_party")
            return [GoalWithdrawn(party=party, reason=command.reason, **by)]
        case ProposeChange():
            party = party_of(actor, client)
            _require_in_play(goal)
            _check_change(command, goal)
            if command.change_id in goal.changes:
                raise DomainRuleViolation("A change with this id exists.", code="duplicate_id")
            return [ChangeProposed(
                change_id=command.change_id, kind=command.kind, party=party,
                on_behalf=on_behalf, base_version=goal.version, new_text=command.new_text,
                new_date=command.new_date, milestone_id=command.milestone_id,
                new_levels=command.new_levels, new_weight=command.new_weight,
                rationale=command.rationale, instrument_id=command.instrument_id,
                new_schedule=validate_schedule(command.new_schedule)
                if command.new_schedule is not None else None, **by)]
        case AcceptChange():
            party = party_of(actor, client)
            _require_in_play(goal)
            change = _pending_change(goal, command.change_id)
            if party == change.proposed_by_party:
                raise DomainRuleViolation("A change applies only when the other party accepts "
                                          "it.", code="must_be_other_party")
            if change.base_version != goal.version:
                raise DomainRuleViolation("The goal changed after this proposal was made; "
                                          "withdraw it and propose again.", code="change_stale")
            return [ChangeAccepted(change_id=change.change_id, party=party,
                                   on_behalf=on_behalf, new_version=goal.version + 1, **by)]
        case DeclineChange():
            party = party_of(actor, client)
            change = _pending_change(goal, command.change_id)
            if party == change.proposed_by_party:
                raise DomainRuleViolation("You proposed this change; withdraw it instead.",
                                          code="must_be_other_party")
            return [ChangeDeclined(change_id=change.change_id, party=party,
                                   reason=command.reason, **by)]
        case WithdrawChange():
            party = party_of(actor, client)
            change = _pending_change(goal, command.change_id)
            if party != change.proposed_by_party:
                raise DomainRuleViolation("Only the party who proposed the change can "
                                          "withdraw it.", code="not_author_party")
            return [ChangeWithdrawn(change_id=change.change_id, party=party, **by)]
        case AddMilestone():
            party_of(actor, client)
            _require_proposed(goal)
            if command.milestone_id in goal.milestones:
                raise DomainRuleViolation("A milestone with this id exists.", code="duplicate_id")
            return [MilestoneAdded(milestone_id=command.milestone_id,
                                   description=_text(command.description, "description"),
                                   provisional_date=command.provisional_date, **by)]
        case MarkMilestoneReached():
            party_of(actor, client)
            _require_in_play(goal)
            ms = goal.milestones.get(command.milestone_id)
            if ms is None or ms.removed:
                raise NotFound("There is no such milestone.", code="milestone_not_found")
            if ms.reached_on is not None:
                raise DomainRuleViolation("This milestone was already reached.",
                                          code="milestone_already_reached")
            if command.reached_on > command.at.date():
                raise ValidationError("A milestone cannot be reached in the future.",
                                      code="reached_in_future", field="reached_on")
            return [MilestoneReached(milestone_id=ms.milestone_id, reached_on=command.reached_on, **by)]
        case ScheduleCheckpoint():
            party_of(actor, client)
            _require_open(goal)
            if command.checkpoint_id in goal.checkpoints:
                raise DomainRuleViolation("A checkpoint with this id exists.",
                                          code="duplicate_id")
            return [CheckpointScheduled(checkpoint_id=command.checkpoint_id,
                                        provisional_date=command.provisional_date,
                                        purpose=command.purpose, **by)]
        case CancelCheckpoint():
            party_of(actor, client)
            _require_open(goal)
            cp = goal.checkpoints.get(command.checkpoint_id)
            if cp is None or cp.cancelled:
                raise NotFound("There is no such checkpoint.", code="checkpoint_not_found")
            return [CheckpointCancelled(checkpoint_id=cp.checkpoint_id, **by)]
        case NoteBarrier():
            party_of(actor, client)
            _require_open(goal)
            _new_item(goal.barriers, command.barrier_id)
            return [BarrierNoted(barrier_id=command.barrier_id,
                                 text=_text(command.text, "text"), **by)]
        case PlanContingency():
            party_of(actor, client)
            _require_open(goal)
            _new_item(goal.contingencies, command.contingency_id)
            if command.barrier_id is not None and command.barrier_id not in goal.barriers:
                raise NotFound("There is no such barrier.", code="barrier_not_found")
            return [ContingencyPlanned(contingency_id=command.contingency_id,
                                       trigger=_text(command.trigger, "trigger"),
                                       response=_text(command.response, "response"),
                                       barrier_id=command.barrier_id, **by)]
        case NoteResource():
            party_of(actor, client)
            _require_open(goal)
            _new_item(goal.resources, command.resource_id)
            return [ResourceNoted(resource_id=command.resource_id,
                                  text=_text(command.text, "text"), **by)]
        case LinkIntervention():
            party_of(actor, client)
            _require_open(goal)
            _new_item(goal.interventions, command.intervention_id)
            if command.kind == "other":
                _text(command.detail, "detail")
            return [InterventionLinked(intervention_id=command.intervention_id,
                                       kind=command.kind, detail=command.detail, **by)]
        case RemoveGoalItem():
            party_of(actor, client)
            _require_open(goal)
            items: dict[UUID, object] = getattr(goal, _ITEM_FIELDS[command.item_kind])
            if command.item_id not in items:
                raise NotFound(f"There is no such {command.item_kind}.",
                               code="item_not_found")
            return [GoalItemRemoved(item_kind=command.item_kind, item_id=command.item_id, **by)]
        case SetAttainmentScale():
            party_of(actor, client)
            _require_proposed(goal)
            _check_levels(command.levels, command.weight)
            if command.baseline_level is not None and not -2 <= command.baseline_level <= 2:
                raise ValidationError("The baseline is a level from −2 to +2.",
                                      code="gas_baseline_invalid", field="baseline_level")
            return [AttainmentScaleSet(levels=command.levels, weight=command.weight,
                                       baseline_level=command.baseline_level, **by)]
        case AttachMeasure():
            party_of(actor, client)
            _require_open(goal)
            _text(command.instrument_id, "instrument_id")
            schedule = validate_schedule(command.schedule)
            if goal.schedules.get(command.instrument_id) == schedule:
                raise DomainRuleViolation("This measure is already attached with this "
                                          "schedule.", code="measure_already_attached")
            if command.instrument_id in goal.measures and goal.status in IN_PLAY:
                # The schedule is part of what both agreed: it changes only when the other
                # party accepts, like a target or a due date.
                raise DomainRuleViolation("The goal has been agreed; propose a change to this "
                                          "measure's schedule instead.",
                                          code="change_proposal_required")
            return [MeasureAttached(instrument_id=command.instrument_id, schedule=schedule,
                                    **by)]
        case DetachMeasure():
            party_of(actor, client)
            _require_open(goal)
            if command.instrument_id not in goal.measures:
                raise NotFound("This measure is not attached to the goal.",
                               code="measure_not_attached")
            return [MeasureDetached(instrument_id=command.instrument_id, **by)]
        case RecordReview():
            party_of(actor, client)
            _require_in_play(goal)
            if command.review_id in goal.reviews:
                raise DomainRuleViolation("A review with this id exists.", code="duplicate_id")
            if command.checkpoint_id is not None and command.checkpoint_id not in goal.checkpoints:
                raise NotFound("There is no such checkpoint.", code="checkpoint_not_found")
            return [ReviewRecorded(review_id=command.review_id,
                                   checkpoint_id=command.checkpoint_id,
                                   looked_at=command.looked_at,
                                   measurement_ids=command.measurement_ids,
                                   outcome=command.outcome, client_view=command.client_view,
                                   summary=command.summary, **by)]
        case ConfirmReview():
            require_client_voice(actor, client)
            confirmed = goal.reviews.get(command.review_id)
            if confirmed is None or confirmed.in_error:
                raise NotFound("There is no such review.", code="review_not_found", field="review_id")
            if confirmed.client_agrees is not None:
                raise DomainRuleViolation("This review was already confirmed.",
                                          code="review_already_confirmed")
            view = command.client_view.strip() if command.client_view else None
            if not command.agrees and not view:
                raise ValidationError("Say what you see differently.", code="client_view_required",
                                      field="client_view")
            return [ReviewConfirmed(review_id=confirmed.review_id, agrees=command.agrees,
                                    client_view=command.client_view if view else None, **by)]
        case MarkReviewInError():
            require_care_team_clinician(actor, client)
            review = goal.reviews.get(command.review_id)
            if review is None:
                raise NotFound("There is no such review.", code="review_not_found")
            if review.in_error:
                raise DomainRuleViolation("This review is already marked as entered in error.",
                                          code="already_entered_in_error")
            return [ReviewEnteredInError(review_id=review.review_id,
                                         reason=_text(command.reason, "reason"), **by)]
        case PauseGoal():
            party_of(actor, client)
            _require_status(goal, frozenset({GoalStatus.ACTIVE, GoalStatus.MAINTENANCE}),
                            "goal_not_active", "Only a goal being worked on can be paused.")
            return [GoalPaused(reason=command.reason, **by)]
        case ResumeGoal():
            party_of(actor, client)
            _require_status(goal, frozenset({GoalStatus.PAUSED}), "goal_not_paused",
                            "The goal is not paused.")
            return [GoalResumed(**by)]
        case CloseGoal():
            party_of(actor, client)
            _require_in_play(goal)
            if command.outcome != "achieved":
                _text(command.reason, "reason")
            return [GoalClosed(outcome=command.outcome, reason=command.reason, **by)]
        case StartMaintenance():
            party_of(actor, client)
            _require_status(goal, frozenset({GoalStatus.ACTIVE, GoalStatus.ACHIEVED}),
                            "goal_not_active",
                            "Maintenance follows an active or achieved goal.")
            return [GoalMaintenanceStarted(reason=command.reason, **by)]
        case MarkGoalInError():
            require_care_team_clinician(actor, client)
            if goal.status is GoalStatus.ENTERED_IN_ERROR:
                raise DomainRuleViolation("This goal is already marked as entered in error.",
                                          code="already_entered_in_error")
            return [GoalEnteredInError(reason=_text(command.reason, "reason"), **by)]
        case _:
            assert_never(command)


def _new_item(items: dict[UUID, object] | dict[UUID, str] | dict[UUID, Contingency]
              | dict[UUID, Intervention], item_id: UUID) -> None:
    if item_id in items:
        raise DomainRuleViolation("An item with this id exists.", code="duplicate_id")


def _check_change(command: ProposeChange, goal: GoalState) -> None:
    match command.kind:
        case "target" | "pace":
            _text(command.new_text, "new_text")
        case "due_date":
            if command.new_date is None:
                raise ValidationError("Give the new due date.", code="new_date_required",
                                      field="new_date")
        case "milestone_add":
            if command.milestone_id is None:
                raise ValidationError("Give the new milestone an id.",
                                      code="milestone_id_required", field="milestone_id")
            if command.milestone_id in goal.milestones or any(
                    c.milestone_id == command.milestone_id and c.kind == "milestone_add"
                    for c in goal.changes.values()):
                raise DomainRuleViolation("A milestone with this id exists.",
                                          code="duplicate_id")
            _text(command.new_text, "new_text")
        case "milestone_update" | "milestone_remove":
            ms = goal.milestones.get(command.milestone_id) if command.milestone_id else None
            if ms is None or ms.removed:
                raise NotFound("There is no such milestone.", code="milestone_not_found")
            if command.kind == "milestone_update" and not (
                    (command.new_text and command.new_text.strip()) or command.new_date):
                raise ValidationError("Give the milestone's new description or date.",
                                      code="new_text_required", field="new_text")
        case "attainment_scale":
            _check_levels(command.new_levels, command.new_weight)
        case "measure_schedule":
            if command.instrument_id is None or command.instrument_id not in goal.measures:
                raise NotFound("This measure is not attached to the goal.",
                               code="measure_not_attached")
            if command.new_schedule is None:
                raise ValidationError("Give the new schedule.", code="new_schedule_required",
                                      field="new_schedule")
            try:
                schedule = validate_schedule(command.new_schedule)
            except ValidationError as exc:
                raise ValidationError(exc.message, code=exc.code,
                                      field=f"new_{exc.field}") from None
            if goal.schedules.get(command.instrument_id) == schedule:
                raise ValidationError("The measure already has this schedule.",
                                      code="nothing_changed", field="new_schedule")
        case _:
            assert_never(command.kind)
