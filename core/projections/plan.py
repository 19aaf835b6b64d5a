"""The current plan of a client: episode, care team, consents, goals and everything on them.

The document folds the client stream and the client's goal streams (goal state is
folded with the goal domain's own ``evolve_goal``, so the plan never disagrees with
what the deciders see). Anything that depends on the clock (due, overdue, consents
in force now) and the guidance (SMART assessment, plain-language hints) is computed
when the plan is *read* (:func:`render_plan`), never stored.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import msgspec
from msgspec.structs import replace

from alliance.core.alerts.events import AlertAcknowledged, AlertRaised
from alliance.core.authority import other_party
from alliance.core.client import (
    CareTeamMemberAdded,
    CareTeamMemberRemoved,
    ClientDischarged,
    ClientEnrolled,
    ClientErased,
    EpisodeMeasureAttached,
    EpisodeMeasureDetached,
    MeasurementEnteredInError,
    MeasurementRecorded,
    PrimaryClinicianChanged,
    ProxyAuthorised,
    ProxyRevoked,
    RelapsePreventionPlanUpdated,
    RiskFlagAcknowledged,
    RiskFlagRaised,
)
from alliance.core.consent import ConsentGranted, ConsentWithdrawn
from alliance.core.events.envelope import RecordedEvent
from alliance.core.goal import (
    GOAL_EVENT_TYPES,
    GoalState,
    GoalStatus,
    evolve_goal,
    fhir_lifecycle_status,
    initial_goal_state,
    is_due,
    is_overdue,
)
from alliance.core.plain_language import hints_for
from alliance.core.projections.base import FoldContext, Projection, to_builtins
from alliance.core.projections.schedule_view import Observations, forget, measure_row, remember, states
from alliance.core.schedules import Observation, Schedule, describe
from alliance.core.smart import assess_smart

NAME = "plan"
#: 2: goals keep their measures' structured schedules and the plan the recent observations
#: per instrument (due / overdue / next due are computed from them when read).
VERSION = 2


class RiskFlag(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    flag_id: UUID
    source: str
    measurement_id: UUID | None = None
    items: tuple[str, ...] = ()
    note: str | None = None
    raised_by: UUID
    raised_by_role: str
    raised_at: datetime
    acknowledged: bool = False
    acknowledged_by: UUID | None = None
    acknowledged_at: datetime | None = None
    action_taken: str | None = None


class Alert(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A not-on-track alert as the views show it: the rule, the data and criterion behind it
    (``core/alerts/rules.py``), and its acknowledgement."""

    alert_id: UUID
    rule: str
    instrument_id: str
    instrument_version: str
    baseline_measurement_id: UUID
    measurement_id: UUID
    baseline: float
    latest: float
    baseline_observed_at: datetime
    latest_observed_at: datetime
    administrations: int
    weeks: float
    criterion: str
    method: str | None = None
    threshold: float | None = None
    rci: float | None = None
    after_administrations: int | None = None
    after_weeks: float | None = None
    band_lower: float | None = None
    band_upper: float | None = None
    source: str = ""
    raised_at: datetime
    acknowledged: bool = False
    acknowledged_by: UUID | None = None
    acknowledged_at: datetime | None = None
    action_taken: str | None = None


def apply_alert(alerts: dict[UUID, Alert], payload: object) -> dict[UUID, Alert]:
    match payload:
        case AlertRaised():
            fields = {f: getattr(payload, f) for f in Alert.__struct_fields__ if hasattr(payload, f)}
            return {**alerts, payload.alert_id: Alert(**{**fields, "rule": str(payload.rule)})}
        case AlertAcknowledged() if payload.alert_id in alerts:
            return {**alerts, payload.alert_id: replace(
                alerts[payload.alert_id], acknowledged=True, acknowledged_by=payload.by,
                acknowledged_at=payload.acknowledged_at, action_taken=payload.action_taken)}
    return alerts


class RelapsePlan(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    plan_version: int
    warning_signs: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    supports: tuple[str, ...] = ()
    by: UUID
    by_role: str
    updated_at: datetime


class PlanDoc(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    client_id: UUID
    tenant_id: UUID
    episode_id: UUID | None = None
    primary_clinician: UUID | None = None
    care_team: dict[UUID, str] = {}
    proxies: dict[UUID, str] = {}
    discharged: bool = False
    consents: tuple[ConsentGranted | ConsentWithdrawn, ...] = ()
    goals: dict[UUID, GoalState] = {}
    relapse_plan: RelapsePlan | None = None
    risk_flags: dict[UUID, RiskFlag] = {}
    alerts: dict[UUID, Alert] = {}
    erased: bool = False
    #: The latest observations per instrument (``schedule_view.remember``): whether today's
    #: administration of an attached measure is done.
    observations: Observations = {}
    #: Instruments attached to the episode (not to a goal) -> their schedule.
    episode_measures: dict[str, Schedule] = {}


def initial_plan(client_id: UUID, tenant_id: UUID) -> PlanDoc:
    return PlanDoc(client_id=client_id, tenant_id=tenant_id)


def goal_id_of(event: RecordedEvent) -> UUID | None:
    """The goal a goal-stream event belongs to (from the stream id ``goal-{id}``)."""
    if event.stream_id.startswith("goal-"):
        try:
            return UUID(event.stream_id[5:])
        except ValueError:
            return None
    return None


def apply_risk(flags: dict[UUID, RiskFlag], payload: object) -> dict[UUID, RiskFlag]:
    match payload:
        case RiskFlagRaised():
            flag = RiskFlag(flag_id=payload.flag_id, source=payload.source,
                            measurement_id=payload.measurement_id, items=payload.items,
                            note=payload.note, raised_by=payload.raised_by,
                            raised_by_role=str(payload.raised_by_role), raised_at=payload.raised_at)
            return {**flags, flag.flag_id: flag}
        case RiskFlagAcknowledged() if payload.flag_id in flags:
            return {**flags, payload.flag_id: replace(
                flags[payload.flag_id], acknowledged=True, acknowledged_by=payload.by,
                acknowledged_at=payload.acknowledged_at, action_taken=payload.action_taken)}
    return flags


def apply_plan(doc: PlanDoc, event: RecordedEvent, context: FoldContext) -> PlanDoc:
    """Fold one event into the plan. Pure; never raises."""
    p = event.payload
    goal_id = goal_id_of(event)
    if goal_id is not None:
        goal = doc.goals.get(goal_id) or initial_goal_state(goal_id)
        return replace(doc, goals={**doc.goals, goal_id: evolve_goal(goal, p)})
    match p:
        case ClientEnrolled():
            return replace(doc, episode_id=p.episode_id, primary_clinician=p.primary_clinician_id,
                           care_team={**doc.care_team, p.primary_clinician_id: "clinician"},
                           discharged=False)
        case CareTeamMemberAdded():
            return replace(doc, care_team={**doc.care_team, p.member_id: str(p.member_role)})
        case CareTeamMemberRemoved():
            return replace(doc, care_team={k: v for k, v in doc.care_team.items() if k != p.member_id},
                           primary_clinician=None if doc.primary_clinician == p.member_id
                           else doc.primary_clinician)
        case PrimaryClinicianChanged():
            team = doc.care_team if p.clinician_id in doc.care_team \
                else {**doc.care_team, p.clinician_id: "clinician"}
            return replace(doc, primary_clinician=p.clinician_id, care_team=team)
        case ClientDischarged():
            return replace(doc, discharged=True)
        case ProxyAuthorised():
            return replace(doc, proxies={**doc.proxies, p.proxy_id: p.basis})
        case ProxyRevoked():
            return replace(doc, proxies={k: v for k, v in doc.proxies.items() if k != p.proxy_id})
        case ConsentGranted() | ConsentWithdrawn():
            return replace(doc, consents=(*doc.consents, p))
        case RiskFlagRaised() | RiskFlagAcknowledged():
            return replace(doc, risk_flags=apply_risk(doc.risk_flags, p))
        case AlertRaised() | AlertAcknowledged():
            return replace(doc, alerts=apply_alert(doc.alerts, p))
        case RelapsePreventionPlanUpdated():
            if doc.relapse_plan is not None and doc.relapse_plan.plan_version > p.plan_version:
                return doc
            return replace(doc, relapse_plan=RelapsePlan(
                plan_version=p.plan_version, warning_signs=p.warning_signs, actions=p.actions,
                supports=p.supports, by=p.by, by_role=str(p.by_role), updated_at=event.occurred_at))
        case MeasurementRecorded():
            return replace(doc, observations=remember(doc.observations, Observation(
                measurement_id=p.measurement_id, instrument_id=p.instrument_id,
                observed_at=p.observed_at)))
        case MeasurementEnteredInError():
            return replace(doc, observations=forget(doc.observations, p.measurement_id))
        case EpisodeMeasureAttached():
            return replace(doc, episode_measures={**doc.episode_measures, p.instrument_id: p.schedule})
        case EpisodeMeasureDetached():
            return replace(doc, episode_measures={k: v for k, v in doc.episode_measures.items()
                                                  if k != p.instrument_id})
        case ClientErased():
            return replace(doc, erased=True)
    return doc


# Only what the plan shows: a note is not a plan change (and must not wake every plan
# subscriber); a measurement is, since it completes an administration of an attached measure.
_CLIENT_TYPES = (ClientEnrolled, CareTeamMemberAdded, CareTeamMemberRemoved, PrimaryClinicianChanged,
                 ClientDischarged, ProxyAuthorised, ProxyRevoked, ConsentGranted, ConsentWithdrawn,
                 RiskFlagRaised, RiskFlagAcknowledged, RelapsePreventionPlanUpdated, ClientErased,
                 MeasurementRecorded, MeasurementEnteredInError, EpisodeMeasureAttached, EpisodeMeasureDetached,
                 AlertRaised, AlertAcknowledged)
_HANDLED = frozenset(t.type_name() for t in (*_CLIENT_TYPES, *GOAL_EVENT_TYPES))  # type: ignore[attr-defined]

PLAN = Projection(name=NAME, version=VERSION, handles=_HANDLED, doc_type=PlanDoc, initial=initial_plan,
                  apply=apply_plan, feed_kind="plan")


# --- reading ------------------------------------------------------------------------------

def consents_in_force(consents: tuple[ConsentGranted | ConsentWithdrawn, ...], at: datetime
                      ) -> list[dict[str, Any]]:
    """The consents in force at ``at``: the last grant per scope not withdrawn since."""
    current: dict[str, ConsentGranted | None] = {}
    for c in consents:
        if c.effective_at <= at:
            current[str(c.scope)] = c if isinstance(c, ConsentGranted) else None
    return [{"scope": scope, "text_version": g.text_version, "mode": g.mode,
             "effective_at": g.effective_at.isoformat(), "by": str(g.by), "by_role": str(g.by_role)}
            for scope, g in sorted(current.items()) if g is not None]


def _dated(items: dict[UUID, Any], today: date) -> list[dict[str, Any]]:
    out = []
    for item in items.values():
        row = to_builtins(item)
        row["due"] = is_due(item, today)
        row["overdue"] = is_overdue(item, today)
        out.append(row)
    return out


def _goal_texts(goal: GoalState) -> list[tuple[str, str | None]]:
    """The goal's client-facing texts for the plain-language check, each named by its field."""
    texts: list[tuple[str, str | None]] = [("statement", goal.statement), ("client_words", goal.client_words)]
    texts += [(f"milestones.{k}.description", m.description) for k, m in goal.milestones.items() if not m.removed]
    return texts


def _relapse_plan(plan: RelapsePlan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    texts = [(f"{part}.{i}", text) for part in ("warning_signs", "actions", "supports")
             for i, text in enumerate(getattr(plan, part))]
    return {**to_builtins(plan), "plain_language": hints_for(texts)}


def render_goal(goal: GoalState, today: date, *, now: datetime | None = None,
                observations: Observations | None = None) -> dict[str, Any]:
    """The goal as views show it; with ``now`` and the client's ``observations``, each
    attached measure also shows today's administration and its next due date."""
    pending = []
    for change in goal.pending_changes:
        row = to_builtins(change)
        row["awaiting"] = other_party(change.proposed_by_party)
        pending.append(row)
    return {
        "goal_id": str(goal.goal_id),
        "version": goal.version,
        "status": str(goal.status),
        "lifecycle_status": fhir_lifecycle_status(goal),
        "author_party": goal.author_party,
        "statement": goal.statement,
        "client_words": goal.client_words,
        "facets": dict(goal.facets),
        "due_date": goal.due_date.isoformat() if goal.due_date else None,
        "pace": goal.pace,
        "last_reflection": goal.last_reflection,
        "agreement": {
            "client_agreed_version": goal.client_agreed_version,
            "clinician_agreed_version": goal.clinician_agreed_version,
            "clinician_agreed_by": str(goal.clinician_agreed_by) if goal.clinician_agreed_by else None,
            "client": "agree" if goal.client_agreed_version == goal.version and goal.version else "pending",
            "clinician": "agree" if goal.clinician_agreed_version == goal.version and goal.version
            else "pending",
            "activated_version": goal.activated_version,
        },
        "smart": to_builtins(assess_smart(goal.facets, due_date=goal.due_date)),
        "plain_language": hints_for(_goal_texts(goal)),
        "milestones": [m for m in _dated(goal.milestones, today) if not m.get("removed")],
        "checkpoints": [c for c in _dated(goal.checkpoints, today) if not c.get("cancelled")],
        "barriers": [{"barrier_id": str(k), "text": v} for k, v in goal.barriers.items()],
        "contingencies": [{"contingency_id": str(k), **to_builtins(v)} for k, v in goal.contingencies.items()],
        "resources": [{"resource_id": str(k), "text": v} for k, v in goal.resources.items()],
        "interventions": [{"intervention_id": str(k), **to_builtins(v)} for k, v in goal.interventions.items()],
        "attainment_scale": to_builtins(goal.attainment_scale),
        "measures": _measures(goal, now, observations or {}),
        "open_changes": pending,
    }


def _measures(goal: GoalState, now: datetime | None, observations: Observations) -> list[dict[str, Any]]:
    # A measure is asked for only while its goal is worked on (drafted, active or in
    # maintenance): a paused or closed goal's schedule stays shown but makes nothing due.
    if now is None or goal.status not in MEASURED:
        return [{"instrument_id": k, "schedule": v} for k, v in goal.measures.items()]
    checkpoints = [c.provisional_date for c in goal.checkpoints.values() if not c.cancelled]
    return [measure_row(k, goal.schedules.get(k), words=v, owner_id=goal.goal_id, goal_id=goal.goal_id,
                        observations=observations, now=now, checkpoints=checkpoints)
            for k, v in goal.measures.items()]


#: Goal statuses in which attached measures fall due.
MEASURED = frozenset({GoalStatus.PROPOSED, GoalStatus.ACTIVE, GoalStatus.MAINTENANCE})


def measures_due(doc: PlanDoc, now: datetime) -> dict[str, Any]:
    """For the caseload: the earliest ``next_due`` over the client's attached measures and the
    states of today's administrations (``due``, ``overdue``…), computed at ``now``."""
    if doc.discharged or doc.erased:
        return {"next_due": None, "states": set()}
    rows = [row for g in doc.goals.values() if g.version > 0
            for row in _measures(g, now, doc.observations)] + _episode_measures(doc, now)
    dates = [row["next_due"] for row in rows if row.get("next_due")]
    return {"next_due": min(dates) if dates else None, "states": states(rows)}


def _episode_measures(doc: PlanDoc, now: datetime | None) -> list[dict[str, Any]]:
    """The measures attached to the episode; due only while the client is in care."""
    return [measure_row(k, v, words=None, owner_id=doc.client_id, goal_id=None, observations=doc.observations,
                        now=now) if now is not None else {"instrument_id": k, "schedule": describe(v)}
            for k, v in doc.episode_measures.items()]


def render_plan(doc: PlanDoc, *, now: datetime) -> dict[str, Any]:
    """The plan as a frontend shows it, at ``now`` (due/overdue and consents computed here)."""
    today = now.date()
    return {
        "client_id": str(doc.client_id),
        "tenant_id": str(doc.tenant_id),
        "episode_id": str(doc.episode_id) if doc.episode_id else None,
        "primary_clinician": str(doc.primary_clinician) if doc.primary_clinician else None,
        "care_team": [{"member_id": str(k), "role": v} for k, v in doc.care_team.items()],
        "proxies": [{"proxy_id": str(k), "basis": v} for k, v in doc.proxies.items()],
        "discharged": doc.discharged,
        "erased": doc.erased,
        "consents_in_force": consents_in_force(doc.consents, now),
        "goals": [render_goal(g, today, now=None if doc.discharged else now, observations=doc.observations)
                  for g in doc.goals.values() if g.version > 0],
        "measures": _episode_measures(doc, None if doc.discharged else now),
        "relapse_plan": _relapse_plan(doc.relapse_plan),
        "open_risk_flags": [to_builtins(f) for f in doc.risk_flags.values() if not f.acknowledged],
        "open_alerts": [to_builtins(a) for a in doc.alerts.values() if not a.acknowledged],
        "as_of": now.isoformat(),
    }
