"""Progress of a client and of each goal, from the scores stored in the events.

The document keeps what was recorded (stored scores, never re-scored; corrections;
reviews; feedback; risk flags; goal status, attached measures and attainment
scales). Everything interpretive is computed when read (:func:`render_progress`):
series ordered by observed-at (late entries land where they belong, entries marked
entered-in-error are left out), baseline, latest, change, reliable change by the
instrument's declared criterion (and which criterion was applied), clinically
significant change against the instrument's first cut-off, NHS Talking Therapies'
indicators (reliable improvement, reliable deterioration, recovery, reliable recovery; paired
over PHQ-9 and GAD-7 when both are recorded), the change index or plainly why it is not shown,
severity band, who reported each entry (and whether baseline and latest come from different
informants), the GAS T-score over the goals that count and the FHIR ``achievementStatus``
(definitions and sources: :mod:`core.projections.outcomes`). A rating of one goal (an
instrument declared ``per_goal``: GAS, confidence) counts for the goals it names only. The
instrument definition is consulted only for criteria and bands; when it is not installed the
stored scores (and the stored band) are still shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import msgspec
from msgspec.structs import replace

from alliance.core.alerts.events import AlertAcknowledged, AlertRaised
from alliance.core.client import (
    ClientErased,
    FeedbackAnswered,
    FeedbackGiven,
    MeasurementEnteredInError,
    MeasurementInterpreted,
    MeasurementRecorded,
    RiskFlagAcknowledged,
    RiskFlagRaised,
    informant_of,
)
from alliance.core.events.envelope import RecordedEvent
from alliance.core.goal import (
    AttainmentScaleSet,
    ChangeAccepted,
    GoalActivated,
    GoalClosed,
    GoalDeclined,
    GoalEnteredInError,
    GoalMaintenanceStarted,
    GoalPaused,
    GoalProposed,
    GoalResumed,
    GoalState,
    GoalStatus,
    GoalWithdrawn,
    MeasureAttached,
    MeasureDetached,
    ReviewConfirmed,
    ReviewEnteredInError,
    ReviewRecorded,
    evolve_goal,
    initial_goal_state,
)
from alliance.core.plain_language import hints_for
from alliance.core.projections.base import FoldContext, Projection, to_builtins
from alliance.core.projections.outcomes import change_index, gas_summary, measure_indicators, paired_indicators
from alliance.core.projections.parts import Part
from alliance.core.projections.plain_words import add_plain_words
from alliance.core.projections.plan import Alert, RiskFlag, apply_alert, apply_risk, goal_id_of
from alliance.plugins.instruments import (
    InstrumentDefinition,
    clinically_significant_change,
    reliable_change,
    severity_band,
)

NAME = "progress"
#: 2: a point keeps its informant, the proxy's relationship and the channel (was ``reported_by``).
VERSION = 2
GAS_ID = "gas"


class Point(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    measurement_id: UUID
    instrument_id: str
    instrument_version: str
    scores: dict[str, float]
    band: str | None = None
    #: Whose answers: "self", "proxy" (with ``relationship``) or "clinician".
    informant: str
    relationship: str | None = None
    #: How they reached Alliance (app, link, session, import); None on entries from before it was kept.
    channel: str | None = None
    observed_at: datetime
    recorded_at: datetime
    goal_ids: tuple[UUID, ...] = ()
    entered_in_error: bool = False
    #: Why the answer set was incomplete ("risk_item_unanswered"), and whether the total was
    #: prorated by the instrument's rule: a reader must see both beside the total.
    incomplete: str | None = None
    prorated: bool = False
    #: The client's own reading of this entry (the latest), when and by whom (client or proxy).
    interpretation: str | None = None
    interpreted_at: datetime | None = None
    interpreted_by_role: str | None = None


class ReviewEntry(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    review_id: UUID
    goal_id: UUID
    outcome: str
    checkpoint_id: UUID | None = None
    measurement_ids: tuple[UUID, ...] = ()
    client_view: str | None = None
    summary: str | None = None
    by: UUID
    by_role: str
    occurred_at: datetime
    in_error: bool = False
    #: The client's confirmation (``goal.review_confirmed``): agrees or not, in their words.
    client_agrees: bool | None = None
    client_confirmation: str | None = None
    confirmed_by_role: str | None = None
    confirmed_at: datetime | None = None


class FeedbackAnswer(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    answer_id: UUID
    text: str
    #: The events of what changed because of the feedback.
    change_event_ids: tuple[UUID, ...] = ()
    by: UUID
    by_role: str
    occurred_at: datetime


class FeedbackEntry(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    feedback_id: UUID
    text: str
    rating: int | None = None
    resonates: tuple[str, ...] = ()
    misaligned: tuple[str, ...] = ()
    goal_ids: tuple[UUID, ...] = ()
    by_role: str
    occurred_at: datetime


class ProgressDoc(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    client_id: UUID
    tenant_id: UUID
    #: In recording order; ordered by observed-at when read.
    points: dict[UUID, Point] = {}
    goals: dict[UUID, GoalState] = {}
    reviews: dict[UUID, ReviewEntry] = {}
    feedback: tuple[FeedbackEntry, ...] = ()
    #: Answers by feedback id (kept apart: ``feedback`` is an append-only part).
    feedback_answers: dict[UUID, tuple[FeedbackAnswer, ...]] = {}
    risk_flags: dict[UUID, RiskFlag] = {}
    alerts: dict[UUID, Alert] = {}
    erased: bool = False


def initial_progress(client_id: UUID, tenant_id: UUID) -> ProgressDoc:
    return ProgressDoc(client_id=client_id, tenant_id=tenant_id)


# Goal events that change what progress shows (status, measures, attainment scale, reviews).
_GOAL_TYPES = (GoalProposed, GoalActivated, GoalDeclined, GoalWithdrawn, GoalPaused, GoalResumed,
               GoalClosed, GoalMaintenanceStarted, GoalEnteredInError, MeasureAttached, MeasureDetached,
               AttainmentScaleSet, ChangeAccepted, ReviewRecorded, ReviewConfirmed, ReviewEnteredInError)
_CLIENT_TYPES = (MeasurementRecorded, MeasurementEnteredInError, MeasurementInterpreted, FeedbackGiven,
                 FeedbackAnswered, RiskFlagRaised,
                 RiskFlagAcknowledged, ClientErased, AlertRaised, AlertAcknowledged)


def apply_progress(doc: ProgressDoc, event: RecordedEvent, context: FoldContext) -> ProgressDoc:
    """Fold one event into the progress document. Pure; never raises."""
    p = event.payload
    goal_id = goal_id_of(event)
    if goal_id is not None:
        goal = doc.goals.get(goal_id) or initial_goal_state(goal_id)
        goal = evolve_goal(goal, p)
        # Progress needs status, measures and the attainment scale, not the goal's words.
        goal = replace(goal, statement=None, client_words=None, facets={}, pace=None, last_reflection=None,
                       close_reason=None, milestones={}, checkpoints={}, barriers={},
                       contingencies={}, resources={}, interventions={})
        doc = replace(doc, goals={**doc.goals, goal_id: goal})
        match p:
            case ReviewRecorded():
                entry = ReviewEntry(review_id=p.review_id, goal_id=goal_id, outcome=p.outcome,
                                    checkpoint_id=p.checkpoint_id, measurement_ids=p.measurement_ids,
                                    client_view=p.client_view, summary=p.summary, by=p.by,
                                    by_role=str(p.by_role), occurred_at=event.occurred_at)
                return replace(doc, reviews={**doc.reviews, p.review_id: entry})
            case ReviewConfirmed() if p.review_id in doc.reviews:
                return replace(doc, reviews={**doc.reviews, p.review_id: replace(
                    doc.reviews[p.review_id], client_agrees=p.agrees, client_confirmation=p.client_view,
                    confirmed_by_role=str(p.by_role), confirmed_at=event.occurred_at)})
            case ReviewEnteredInError() if p.review_id in doc.reviews:
                return replace(doc, reviews={**doc.reviews, p.review_id: replace(
                    doc.reviews[p.review_id], in_error=True)})
        return doc
    match p:
        case MeasurementRecorded():
            point = Point(measurement_id=p.measurement_id, instrument_id=p.instrument_id,
                          instrument_version=p.instrument_version, scores=dict(p.scores), band=p.band,
                          informant=informant_of(p.reported_by, event.actor_role),
                          relationship=p.reported_by.relationship, channel=p.reported_by.channel,
                          observed_at=p.observed_at,
                          recorded_at=event.recorded_at, goal_ids=p.goal_ids,
                          incomplete=p.incomplete, prorated=p.prorated)
            return replace(doc, points={**doc.points, point.measurement_id: point})
        case MeasurementEnteredInError() if p.measurement_id in doc.points:
            return replace(doc, points={**doc.points, p.measurement_id: replace(
                doc.points[p.measurement_id], entered_in_error=True)})
        case MeasurementInterpreted() if p.measurement_id in doc.points:
            return replace(doc, points={**doc.points, p.measurement_id: replace(
                doc.points[p.measurement_id], interpretation=p.text, interpreted_at=event.occurred_at,
                interpreted_by_role=str(p.by_role))})
        case FeedbackGiven():
            feedback = FeedbackEntry(feedback_id=p.feedback_id, text=p.text, rating=p.rating,
                                  resonates=p.resonates, misaligned=p.misaligned, goal_ids=p.goal_ids,
                                  by_role=str(p.by_role), occurred_at=event.occurred_at)
            return replace(doc, feedback=(*doc.feedback, feedback))
        case FeedbackAnswered():
            answer = FeedbackAnswer(answer_id=p.answer_id, text=p.text, change_event_ids=p.change_event_ids,
                                    by=p.by, by_role=str(p.by_role), occurred_at=event.occurred_at)
            answers = (*doc.feedback_answers.get(p.feedback_id, ()), answer)
            return replace(doc, feedback_answers={**doc.feedback_answers, p.feedback_id: answers})
        case RiskFlagRaised() | RiskFlagAcknowledged():
            return replace(doc, risk_flags=apply_risk(doc.risk_flags, p))
        case AlertRaised() | AlertAcknowledged():
            return replace(doc, alerts=apply_alert(doc.alerts, p))
        case ClientErased():
            return replace(doc, erased=True)
    return doc


PROGRESS = Projection(name=NAME, version=VERSION,
                      handles=frozenset(t.type_name() for t in (*_GOAL_TYPES, *_CLIENT_TYPES)),
                      doc_type=ProgressDoc, initial=initial_progress, apply=apply_progress,
                      feed_kind="progress",
                      # The series grow with every measurement: one row per point, review and feedback.
                      parts=(Part("points", "map", Point, UUID), Part("reviews", "map", ReviewEntry, UUID),
                             Part("feedback", "seq", FeedbackEntry)))


# --- reading ------------------------------------------------------------------------------

class Instruments(Protocol):
    """What progress needs of the instrument registry (``plugins.manager.InstrumentRegistry``)."""

    def get(self, instrument_id: str, version: str | None = None) -> InstrumentDefinition: ...


def _definition(instruments: Instruments | None, instrument_id: str, version: str
                ) -> InstrumentDefinition | None:
    if instruments is None:
        return None
    for wanted in (version, None):
        try:
            return instruments.get(instrument_id, wanted)
        except Exception:  # NotFound: not installed (history still shows stored scores)
            continue
    return None


def per_goal(instruments: Instruments | None, instrument_id: str, version: str = "1") -> bool:
    """Whether the instrument rates one goal (declared ``per_goal``; GAS always does)."""
    definition = _definition(instruments, instrument_id, version)
    return definition.per_goal if definition is not None else instrument_id == GAS_ID


def series(doc: ProgressDoc, instrument_id: str, goal_id: UUID | None = None, *,
           own_goal_only: bool = False) -> list[Point]:
    """Valid points of one instrument ordered by observed-at (then recording order).

    With ``goal_id``: the points naming that goal, or naming no goal at all (a client-wide
    measure serves every goal); with ``own_goal_only`` too, only the points naming it (a
    rating of one goal never counts for another).
    """
    pts = [pt for pt in doc.points.values()
           if pt.instrument_id == instrument_id and not pt.entered_in_error
           and (goal_id is None or goal_id in pt.goal_ids or (not pt.goal_ids and not own_goal_only))]
    order = {m: i for i, m in enumerate(doc.points)}
    pts.sort(key=lambda pt: (pt.observed_at, order[pt.measurement_id]))
    return pts


def _reporter(pt: Point) -> dict[str, Any]:
    return {"informant": pt.informant, "relationship": pt.relationship, "channel": pt.channel}


_INFORMANT_WORDS = {"self": "the client", "proxy": "a proxy", "clinician": "a clinician"}


def _who(reporter: dict[str, Any]) -> str:
    if reporter["informant"] == "proxy" and reporter["relationship"]:
        return f"a proxy ({reporter['relationship']})"
    return _INFORMANT_WORDS.get(reporter["informant"], str(reporter["informant"]))


def _informants(first: Point, last: Point) -> dict[str, Any]:
    """Who gave the baseline and the latest answers, and whether they differ.

    A parent's rating and the client's own are not the same measurement: a change between
    them may be the informant's, not the client's. The channel alone (app, session) does not
    make another informant.
    """
    baseline, latest = _reporter(first), _reporter(last)
    differ = (baseline["informant"], baseline["relationship"]) != (latest["informant"], latest["relationship"])
    out: dict[str, Any] = {"baseline": baseline, "latest": latest, "differ": differ}
    if differ:
        out["note"] = (f"Baseline and latest come from different informants: {_who(baseline)} then "
                       f"{_who(latest)}; part of the change may be the informant's view.")
    return out


def summarise(points: list[Point], instruments: Instruments | None) -> dict[str, Any]:
    """Baseline, latest, change, reliable change, NHS TT indicators, change index, band, informants."""
    first, last = points[0], points[-1]
    definition = _definition(instruments, last.instrument_id, last.instrument_version)
    baseline = first.scores.get("total")
    latest = last.scores.get("total")
    out: dict[str, Any] = {
        "instrument_id": last.instrument_id,
        "instrument_installed": definition is not None,
        "points": [{"measurement_id": str(pt.measurement_id), "observed_at": pt.observed_at.isoformat(),
                    "recorded_at": pt.recorded_at.isoformat(), "instrument_version": pt.instrument_version,
                    "scores": pt.scores, "band": pt.band, "reported_by": _reporter(pt),
                    "incomplete": pt.incomplete, "prorated": pt.prorated,
                    "interpretation": None if pt.interpretation is None else {
                        "text": pt.interpretation, "at": pt.interpreted_at.isoformat() if pt.interpreted_at else None,
                        "by_role": pt.interpreted_by_role}}
                   for pt in points],
        "baseline": baseline, "latest": latest,
        "change": None, "reliable_change": None, "clinically_significant_change": None,
        "indicators": None, "change_index": None,
        "informants": _informants(first, last),
        "band": last.band,
        "direction": definition.direction if definition else None,
    }
    if baseline is None or latest is None:
        return out
    out["change"] = latest - baseline
    if definition is None:
        return out
    if definition.bands:
        out["band"] = severity_band(definition.bands, latest)
    if len(points) < 2:
        return out
    out["change_index"] = change_index(definition, baseline, latest)
    result = None
    if definition.reliable_change is not None:
        try:
            result = reliable_change(definition, baseline, latest)
        except ValueError as exc:  # a criterion lacking what it needs: say so, never show nothing
            out["reliable_change"] = {"status": None, "criterion": definition.reliable_change.method,
                                      "reason": str(exc), "source": definition.reliable_change.source}
    if result is not None:
        assert definition.reliable_change is not None
        out["reliable_change"] = {"status": result.status, "criterion": result.method,
                                  "threshold": result.threshold, "rci": result.rci,
                                  "source": definition.reliable_change.source}
    out["indicators"] = measure_indicators(definition, baseline, latest, result)
    if result is not None and definition.cutoffs:
        cutoff = definition.cutoffs[0]
        status = clinically_significant_change(baseline, latest, cutoff=cutoff.value, reliable=result.status,
                                               direction=definition.direction)
        # Jacobson & Truax call this "recovered"; in NHS Talking Therapies' words, which the
        # indicators use, it is *reliable* recovery (recovery alone needs no reliable change).
        out["clinically_significant_change"] = {
            "status": "reliable_recovery" if status == "recovered" else status,
            "criterion": f"reliable change and crossing the '{cutoff.name}' cut-off (Jacobson & Truax 1991)",
            "cutoff": cutoff.name, "cutoff_value": cutoff.value}
    return out


_ACHIEVEMENT_BY_STATUS = {GoalStatus.ACHIEVED: "achieved", GoalStatus.NOT_ACHIEVED: "not-achieved",
                          GoalStatus.MAINTENANCE: "sustaining"}
#: Goals whose GAS level is left out of the summary, and why (Kiresuk & Sherman score the goals
#: set with the client; one withdrawn, declined or entered in error is not one of them).
_GAS_LEFT_OUT = {GoalStatus.WITHDRAWN: "withdrawn", GoalStatus.DECLINED: "declined",
                 GoalStatus.ENTERED_IN_ERROR: "entered in error"}


def gas_left_out(goal: GoalState) -> str | None:
    """Why a goal does not count in the GAS summary, or None when it does (achieved goals count)."""
    if goal.status in _GAS_LEFT_OUT:
        return _GAS_LEFT_OUT[goal.status]
    if goal.activated_version is None:
        return "not agreed"
    return None


def achievement_status(goal: GoalState, measures: list[dict[str, Any]], gas: dict[str, Any] | None
                       ) -> str | None:
    """FHIR ``Goal.achievementStatus`` from the goal's status, measures and GAS level.

    Closed goals say how they ended; goals not yet agreed have none. For a goal in play, a
    reliable deterioration on any attached measure wins (safety first: "worsening"), then a
    reliable improvement or a GAS level above its baseline ("improving"); compared
    measures with no reliable change give "no-change"; otherwise "in-progress".
    """
    if goal.status in _ACHIEVEMENT_BY_STATUS:
        return _ACHIEVEMENT_BY_STATUS[goal.status]
    if goal.status not in (GoalStatus.ACTIVE, GoalStatus.PAUSED):
        return None
    statuses = [m["reliable_change"]["status"] for m in measures
                if m.get("reliable_change") and m["reliable_change"]["status"]]
    if gas is not None and gas.get("baseline_level") is not None:
        diff = gas["level"] - gas["baseline_level"]
        statuses.append("improved" if diff > 0 else "deteriorated" if diff < 0 else "no_reliable_change")
    if "deteriorated" in statuses:
        return "worsening"
    if "improved" in statuses:
        return "improving"
    if statuses:
        return "no-change"
    return "in-progress"


def render_goal_progress(doc: ProgressDoc, goal: GoalState, instruments: Instruments | None
                         ) -> dict[str, Any]:
    measures = []
    # The measures attached to the goal, then any rating of this one goal (per_goal, e.g. confidence)
    # recorded without being attached: the client-wide list no longer shows those, so the goal must.
    rated_here = [pt.instrument_id for pt in doc.points.values()
                  if goal.goal_id in pt.goal_ids and not pt.entered_in_error and pt.instrument_id != GAS_ID
                  and pt.instrument_id not in goal.measures and per_goal(instruments, pt.instrument_id)]
    schedules: dict[str, str | None] = {**dict(goal.measures), **dict.fromkeys(rated_here)}
    for instrument_id, schedule in schedules.items():
        if instrument_id == GAS_ID:
            continue
        pts = series(doc, instrument_id, goal.goal_id, own_goal_only=per_goal(instruments, instrument_id))
        row = summarise(pts, instruments) if pts else {"instrument_id": instrument_id, "points": []}
        row["schedule"] = schedule
        measures.append(row)
    gas_points = series(doc, GAS_ID, goal.goal_id, own_goal_only=True)
    gas = None
    if gas_points and "total" in gas_points[-1].scores:
        level = gas_points[-1].scores["total"]
        scale = goal.attainment_scale
        gas = {"level": level, "t_score": 50 + 10 * level if -2 <= level <= 2 else None,
               "weight": scale.weight if scale else 1.0,
               "baseline_level": scale.baseline_level if scale else None,
               "observed_at": gas_points[-1].observed_at.isoformat(),
               "reported_by": _reporter(gas_points[-1])}
    reviews = [{**to_builtins(r), "plain_language": hints_for((("summary", r.summary), ("client_view", r.client_view)))}
               for r in doc.reviews.values() if r.goal_id == goal.goal_id and not r.in_error]
    return {"goal_id": str(goal.goal_id), "status": str(goal.status), "version": goal.version,
            "measures": measures, "gas": gas, "reviews": reviews,
            "achievement_status": achievement_status(goal, measures, gas)}


def render_progress(doc: ProgressDoc, *, instruments: Instruments | None = None,
                    goal_id: UUID | None = None) -> dict[str, Any]:
    """The progress view (all goals, or one with ``goal_id``)."""
    goals = [g for g in doc.goals.values() if g.version > 0 and (goal_id is None or g.goal_id == goal_id)]
    rendered = [render_goal_progress(doc, g, instruments) for g in goals]
    gas = gas_summary(
        (r["goal_id"], r["gas"]["level"] if r["gas"] else None, r["gas"]["weight"] if r["gas"] else 1.0,
         gas_left_out(g))
        for g, r in zip(goals, rendered, strict=True)
        if r["gas"] is not None or GAS_ID in g.measures or g.attainment_scale is not None)
    rates_a_goal = {iid: per_goal(instruments, iid) for iid in dict.fromkeys(pt.instrument_id
                                                                              for pt in doc.points.values())}
    by_instrument: dict[str, list[Point]] = {}
    for instrument_id, one_goal in rates_a_goal.items():
        # A rating of one goal is shown with its goal; pooled across goals it would mean nothing.
        if one_goal:
            continue
        pts = series(doc, instrument_id)
        if pts:
            by_instrument[instrument_id] = pts
    summaries = [summarise(pts, instruments) for pts in by_instrument.values()]
    unattached = [pt for pt in doc.points.values()
                  if not pt.goal_ids and not pt.entered_in_error and rates_a_goal[pt.instrument_id]]
    view = {
        "client_id": str(doc.client_id),
        "tenant_id": str(doc.tenant_id),
        "erased": doc.erased,
        "goals": rendered,
        "measures": summaries,
        "paired_indicators": paired_indicators(
            (_definition(instruments, m["instrument_id"], by_instrument[m["instrument_id"]][-1].instrument_version), m)
            for m in summaries),
        "gas_t_score": gas["t_score"],
        "gas_summary": gas,
        "unattached_ratings": [
            {"measurement_id": str(pt.measurement_id), "instrument_id": pt.instrument_id,
             "observed_at": pt.observed_at.isoformat(), "scores": pt.scores,
             "note": "A rating of one goal that names no goal (recorded before ratings had to name one): "
                     "counted for no goal."} for pt in unattached],
        # Each piece of feedback with its answers and the events of what changed because of it.
        "feedback": [{**to_builtins(f),
                      "answers": [to_builtins(a) for a in doc.feedback_answers.get(f.feedback_id, ())]}
                     for f in doc.feedback],
        "risk_flags": [to_builtins(f) for f in doc.risk_flags.values()],
        "open_risk_flags": sum(1 for f in doc.risk_flags.values() if not f.acknowledged),
        # Not-on-track alerts, open and acknowledged, each with its rule and the data behind it.
        "alerts": [to_builtins(a) for a in doc.alerts.values()],
        "open_alerts": sum(1 for a in doc.alerts.values() if not a.acknowledged),
    }
    # Each measure, goal rating and the GAS summary also in words (English here; the route
    # describes them again in the reader's language when an instrument speaks it).
    return add_plain_words(view, instruments)
