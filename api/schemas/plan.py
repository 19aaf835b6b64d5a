"""The plan view (``GET /clients/{id}/plan``) and one goal (``GET /goals/{id}``), as
``core/projections/plan.py`` renders them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from alliance.api.schemas.shared import AlertView, CrisisInformation, PlainLanguageHint, RiskFlagView
from alliance.core.schedules import Administration, Schedule

Agreed = Literal["agree", "pending"]


class Agreement(msgspec.Struct, kw_only=True):
    """Who agreed to which version: a goal is active once both agreed to the same one."""

    client_agreed_version: Annotated[int | None, Meta(description="The version the client last agreed to")]
    clinician_agreed_version: Annotated[int | None, Meta(description="The version a clinician last agreed to")]
    clinician_agreed_by: Annotated[UUID | None, Meta(description="That clinician")]
    client: Annotated[Agreed, Meta(description="`agree` when the client agreed to the current version")]
    clinician: Annotated[Agreed, Meta(description="`agree` when a clinician agreed to the current version")]
    activated_version: Annotated[int | None, Meta(description="The version that became active")]


class SmartAssessment(msgspec.Struct, kw_only=True):
    """Which SMART facets the goal has (guidance shown beside it, never a gate)."""

    present: Annotated[list[str], Meta(description="Facets present (specific, measurable, …)")]
    missing: Annotated[list[str], Meta(description="Facets missing")]
    suggestions: Annotated[list[str], Meta(description="One suggestion per missing facet, in the same order")]


class MilestoneView(msgspec.Struct, kw_only=True):
    """An observable step towards the goal."""

    milestone_id: Annotated[UUID, Meta(description="The milestone's id")]
    description: Annotated[str, Meta(description="The step, in words")]
    provisional_date: Annotated[date | None, Meta(description="When it is hoped for")]
    reached_on: Annotated[date | None, Meta(description="When it was reached")]
    removed: Annotated[bool, Meta(description="Always false here (removed milestones are left out)")]
    due: Annotated[bool, Meta(description="Its date has come and it is not reached (computed when read)")]
    overdue: Annotated[bool, Meta(description="Due, and its date is past")]


class CheckpointView(msgspec.Struct, kw_only=True):
    """When progress on the goal is reviewed."""

    checkpoint_id: Annotated[UUID, Meta(description="The checkpoint's id")]
    provisional_date: Annotated[date, Meta(description="When")]
    purpose: Annotated[str | None, Meta(description="What the review is for")]
    reviewed: Annotated[bool, Meta(description="Whether a review was recorded at it")]
    cancelled: Annotated[bool, Meta(description="Always false here (cancelled checkpoints are left out)")]
    due: Annotated[bool, Meta(description="Its date has come and it is not reviewed")]
    overdue: Annotated[bool, Meta(description="Due, and its date is past")]


class BarrierView(msgspec.Struct, kw_only=True):
    """Something that may get in the way."""

    barrier_id: Annotated[UUID, Meta(description="The barrier's id")]
    text: Annotated[str, Meta(description="The barrier, in words")]


class ContingencyView(msgspec.Struct, kw_only=True):
    """If a barrier shows up, what to do."""

    contingency_id: Annotated[UUID, Meta(description="The plan's id")]
    trigger: Annotated[str, Meta(description="If …")]
    response: Annotated[str, Meta(description="… then I will …")]
    barrier_id: Annotated[UUID | None, Meta(description="The barrier it answers")]


class ResourceView(msgspec.Struct, kw_only=True):
    """A personal resource the client already uses."""

    resource_id: Annotated[UUID, Meta(description="The resource's id")]
    text: Annotated[str, Meta(description="The resource, in words")]


class InterventionView(msgspec.Struct, kw_only=True):
    """An intervention chosen for the goal."""

    intervention_id: Annotated[UUID, Meta(description="The intervention's id")]
    kind: Annotated[str, Meta(description="Kind (e.g. `behavioural_experiment`)")]
    detail: Annotated[str | None, Meta(description="Details, in words")]


class AttainmentScaleView(msgspec.Struct, kw_only=True):
    """The goal-attainment scale (Kiresuk & Sherman): levels −2…+2 in the client's words."""

    levels: Annotated[list[str], Meta(description="Five levels, −2 to +2")]
    weight: Annotated[float, Meta(description="The goal's weight in the GAS T-score")]
    baseline_level: Annotated[int | None, Meta(description="The level at the start (−1 by default)")]


class AttachedMeasure(msgspec.Struct, kw_only=True):
    """An instrument attached to the goal (or the episode), with its schedule and what is due today."""

    instrument_id: Annotated[str, Meta(description="The instrument (GET /instruments/{id})")]
    schedule: Annotated[str | None, Meta(description="The schedule in words (`every 2 weeks from 5 January`)")]
    schedule_detail: Annotated[Schedule | UnsetType | None, Meta(
        description="The structured schedule (null: free text from before schedules had a shape); "
                    "absent when the goal is paused or closed, or the client discharged")] = UNSET
    next_due: Annotated[date | UnsetType | None, Meta(description="The next date the client is asked")] = UNSET
    administration: Annotated[Administration | UnsetType | None, Meta(
        description="Today's administration and its state (due, overdue, done, missed…)")] = UNSET


class OpenChange(msgspec.Struct, kw_only=True):
    """A change to an active goal awaiting the other party's consent."""

    change_id: Annotated[UUID, Meta(description="The change's id")]
    kind: Annotated[str, Meta(description="What changes: `target`, `due_date`, `pace`, `milestone`, "
                                          "`attainment_scale`…")]
    proposed_by_party: Annotated[str, Meta(description="`client` or `clinician`")]
    proposed_by: Annotated[UUID, Meta(description="Who proposed it")]
    base_version: Annotated[int, Meta(description="The goal version it changes")]
    new_text: Annotated[str | None, Meta(description="The new target, pace or milestone description")]
    new_date: Annotated[date | None, Meta(description="The new due or milestone date")]
    milestone_id: Annotated[UUID | None, Meta(description="The milestone it changes")]
    new_levels: Annotated[list[str], Meta(description="New attainment-scale levels")]
    new_weight: Annotated[float | None, Meta(description="New attainment-scale weight")]
    instrument_id: Annotated[str | None, Meta(description="The measure whose schedule changes")]
    new_schedule: Annotated[Schedule | None, Meta(description="The new schedule")]
    status: Annotated[str, Meta(description="Always `pending` here")]
    decided_by_party: Annotated[str | None, Meta(description="Who decided (null while pending)")]
    decided_by: Annotated[UUID | None, Meta(description="Who decided (null while pending)")]
    awaiting: Annotated[str, Meta(description="Whose consent it awaits: `client` or `clinician`")]


class PlanGoal(msgspec.Struct, kw_only=True):
    """A goal as the plan shows it: the client's words beside the agreed version, and everything on it."""

    goal_id: Annotated[UUID, Meta(description="The goal's id")]
    version: Annotated[int, Meta(description="Content version (each restatement, revision or accepted change "
                                             "adds one)")]
    status: Annotated[str, Meta(description="proposed, active, paused, maintenance, achieved, not_achieved, "
                                            "discontinued, declined, withdrawn, entered_in_error")]
    lifecycle_status: Annotated[str, Meta(description="FHIR Goal.lifecycleStatus")]
    author_party: Annotated[str | None, Meta(description="Who proposed it: `client` or `clinician`")]
    statement: Annotated[str | None, Meta(description="The goal as agreed or proposed")]
    client_words: Annotated[str | None, Meta(description="The goal in the client's own words")]
    facets: Annotated[dict[str, str], Meta(description="SMART facets by name (specific, measurable, …)")]
    due_date: Annotated[date | None, Meta(description="When it is hoped to be reached")]
    pace: Annotated[str | None, Meta(description="How fast, in words")]
    last_reflection: Annotated[str | None, Meta(description="The clinician's latest reflection")]
    agreement: Annotated[Agreement, Meta(description="Who agreed to which version")]
    smart: Annotated[SmartAssessment, Meta(description="SMART guidance")]
    plain_language: Annotated[list[PlainLanguageHint], Meta(description="Plain-language hints on its texts")]
    milestones: Annotated[list[MilestoneView], Meta(description="Milestones (removed ones left out)")]
    checkpoints: Annotated[list[CheckpointView], Meta(description="Checkpoints (cancelled ones left out)")]
    barriers: Annotated[list[BarrierView], Meta(description="What may get in the way")]
    contingencies: Annotated[list[ContingencyView], Meta(description="If-then plans")]
    resources: Annotated[list[ResourceView], Meta(description="Personal resources")]
    interventions: Annotated[list[InterventionView], Meta(description="Interventions chosen")]
    attainment_scale: Annotated[AttainmentScaleView | None, Meta(description="The GAS scale, once set")]
    measures: Annotated[list[AttachedMeasure], Meta(description="Instruments attached, with schedules")]
    open_changes: Annotated[list[OpenChange], Meta(description="Changes awaiting consent")]


class GoalView(PlanGoal, kw_only=True):
    """One goal as it stands now (``ETag`` is ``stream_version``: send it back in ``If-Match``)."""

    fhir_lifecycle_status: Annotated[str, Meta(description="FHIR Goal.lifecycleStatus (as `lifecycle_status`)")]
    stream_version: Annotated[int, Meta(description="The goal stream's version (the ETag)")]


class CareTeamMember(msgspec.Struct, kw_only=True):
    """A member of the client's care team."""

    member_id: Annotated[UUID, Meta(description="The staff member")]
    role: Annotated[str, Meta(description="`clinician` or `supervisor`")]


class ProxyView(msgspec.Struct, kw_only=True):
    """Someone authorised to act for the client."""

    proxy_id: Annotated[UUID, Meta(description="The proxy")]
    basis: Annotated[str, Meta(description="Why they may act (e.g. `minor`, `guardian`)")]


class ConsentView(msgspec.Struct, kw_only=True):
    """A consent in force now."""

    scope: Annotated[str, Meta(description="What it covers (goal_setting, measurement, care_team_sharing, …)")]
    text_version: Annotated[str, Meta(description="The consent text's version")]
    mode: Annotated[str, Meta(description="How it was given (`self`, `proxy`, `verbal_attested`)")]
    effective_at: Annotated[datetime, Meta(description="From when")]
    by: Annotated[UUID, Meta(description="Who gave it")]
    by_role: Annotated[str, Meta(description="Their role")]


class RelapsePlanView(msgspec.Struct, kw_only=True):
    """The relapse-prevention plan."""

    plan_version: Annotated[int, Meta(description="Its version")]
    warning_signs: Annotated[list[str], Meta(description="Early warning signs")]
    actions: Annotated[list[str], Meta(description="What to do")]
    supports: Annotated[list[str], Meta(description="Who and what helps")]
    by: Annotated[UUID, Meta(description="Who updated it")]
    by_role: Annotated[str, Meta(description="Their role")]
    updated_at: Annotated[datetime, Meta(description="When")]
    plain_language: Annotated[list[PlainLanguageHint], Meta(description="Plain-language hints on its texts")]


class PlanView(msgspec.Struct, kw_only=True):
    """The client's plan: care team, consents in force, goals and everything on them, open risk flags."""

    client_id: Annotated[UUID, Meta(description="The client")]
    tenant_id: Annotated[UUID, Meta(description="The clinic")]
    episode_id: Annotated[UUID | None, Meta(description="The care episode")]
    primary_clinician: Annotated[UUID | None, Meta(description="The primary clinician")]
    care_team: Annotated[list[CareTeamMember], Meta(description="The care team")]
    proxies: Annotated[list[ProxyView], Meta(description="Authorised proxies")]
    discharged: Annotated[bool, Meta(description="Whether the client was discharged")]
    erased: Annotated[bool, Meta(description="Whether the client's data was erased")]
    consents_in_force: Annotated[list[ConsentView], Meta(description="Consents in force at `as_of`")]
    goals: Annotated[list[PlanGoal], Meta(description="Every goal")]
    measures: Annotated[list[AttachedMeasure], Meta(description="Measures attached to the episode (not a goal)")]
    relapse_plan: Annotated[RelapsePlanView | None, Meta(description="The relapse-prevention plan, once written")]
    open_risk_flags: Annotated[list[RiskFlagView], Meta(description="Risk flags not yet acknowledged")]
    open_alerts: Annotated[list[AlertView], Meta(description="Not-on-track alerts not yet acknowledged")]
    as_of: Annotated[datetime, Meta(description="The moment the view is computed at")]
    crisis_information: Annotated[CrisisInformation | UnsetType, Meta(
        description="The clinic's crisis information (current views only, not `as_of` ones)")] = UNSET
