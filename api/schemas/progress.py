"""The progress view (``GET /clients/{id}/progress``), as ``core/projections/progress.py`` renders it.

Every number that interprets a score says which criterion it applied and cites its source.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from alliance.api.schemas.shared import AlertView, CrisisInformation, PlainLanguageHint, RiskFlagView
from alliance.core.schedules import Administration

Scores = Annotated[dict[str, float], Meta(
    description="Scores by name: `total` and the instrument's own subscales (open-ended, per instrument)")]


class Reporter(msgspec.Struct, kw_only=True):
    """Who gave the answers and how they reached Alliance."""

    informant: Annotated[str, Meta(description="`self`, `proxy` or `clinician`")]
    relationship: Annotated[str | None, Meta(description="A proxy's relationship to the client")]
    channel: Annotated[str | None, Meta(description="`app`, `link`, `session` or `import` (null on old entries)")]


class Interpretation(msgspec.Struct, kw_only=True):
    """What the client made of an entry, in their words."""

    text: Annotated[str, Meta(description="In the client's words")]
    at: Annotated[datetime | None, Meta(description="When")]
    by_role: Annotated[str | None, Meta(description="Who wrote it (the client or a proxy)")]


class PlainWords(msgspec.Struct, kw_only=True):
    """A measure described for the client in plain words, with the criteria for the clinician."""

    language: Annotated[str, Meta(description="The words' language (`Accept-Language`, where the instrument "
                                              "speaks it)")]
    text: Annotated[str | None, Meta(description="e.g. 'Since 3 March your PHQ-9 score has gone from 16 to 7. "
                                                 "That is a reliable improvement.'")]
    criteria: Annotated[list[str], Meta(description="The criteria behind the words, each with its source")]


class MeasurePoint(msgspec.Struct, kw_only=True):
    """One administration, as stored (never re-scored)."""

    measurement_id: Annotated[UUID, Meta(description="The measurement")]
    observed_at: Annotated[datetime, Meta(description="When the answers were given")]
    recorded_at: Annotated[datetime, Meta(description="When Alliance recorded them")]
    instrument_version: Annotated[str, Meta(description="The instrument version that scored it")]
    scores: Scores
    band: Annotated[str | None, Meta(description="The severity band stored with it")]
    reported_by: Annotated[Reporter, Meta(description="Who answered")]
    incomplete: Annotated[str | None, Meta(description="Why the answer set was incomplete")]
    prorated: Annotated[bool, Meta(description="Whether the total was prorated")]
    interpretation: Annotated[Interpretation | None, Meta(description="The client's own reading of this entry")]


class ReliableChangeView(msgspec.Struct, kw_only=True):
    """Reliable change by the instrument's declared criterion (or why it could not be applied)."""

    status: Annotated[str | None, Meta(description="`improved`, `deteriorated` or `no_reliable_change`")]
    criterion: Annotated[str, Meta(description="The method applied (`threshold` or `index`)")]
    source: Annotated[str, Meta(description="Where the criterion comes from")]
    threshold: Annotated[float | UnsetType | None, Meta(description="The change that counts as reliable")] = UNSET
    rci: Annotated[float | UnsetType | None, Meta(description="The reliable change index, when computed")] = UNSET
    reason: Annotated[str | UnsetType, Meta(description="Why no status (the criterion lacks what it needs)")] = UNSET


class SignificantChange(msgspec.Struct, kw_only=True):
    """Clinically significant change (Jacobson & Truax 1991) against the instrument's first cut-off."""

    status: Annotated[str, Meta(description="e.g. `reliable_recovery`, `improved`, `no_reliable_change`")]
    criterion: Annotated[str, Meta(description="The criterion in words")]
    cutoff: Annotated[str, Meta(description="The cut-off's name")]
    cutoff_value: Annotated[float, Meta(description="The cut-off's value")]


class Indicator(msgspec.Struct, kw_only=True):
    """One NHS Talking Therapies indicator: met, not met, or not applicable (null, with the reason)."""

    met: Annotated[bool | None, Meta(description="Whether it is met (null: does not apply)")]
    criterion: Annotated[str, Meta(description="The criterion in words")]
    source: Annotated[str | UnsetType, Meta(description="Where the criterion comes from")] = UNSET
    reason: Annotated[str | UnsetType, Meta(description="Why it does not apply")] = UNSET


class Caseness(msgspec.Struct, kw_only=True):
    """Whether baseline and latest scores are at caseness."""

    cutoff: Annotated[float, Meta(description="The caseness cut-off")]
    baseline_case: Annotated[bool, Meta(description="A case at baseline")]
    latest_case: Annotated[bool, Meta(description="A case at the latest score")]
    criterion: Annotated[str, Meta(description="The criterion in words")]
    source: Annotated[str, Meta(description="Where the cut-off comes from")]


class MeasureIndicators(msgspec.Struct, kw_only=True):
    """NHS Talking Therapies' indicators for one instrument."""

    source: Annotated[str, Meta(description="NHS Talking Therapies manual")]
    reliable_improvement: Annotated[Indicator, Meta(description="Reliable improvement")]
    reliable_deterioration: Annotated[Indicator, Meta(description="Reliable deterioration")]
    caseness: Annotated[Caseness | None, Meta(description="Caseness (null: no caseness cut-off declared)")]
    recovery: Annotated[Indicator, Meta(description="Recovery")]
    reliable_recovery: Annotated[Indicator, Meta(description="Reliable recovery")]


class ChangeIndex(msgspec.Struct, kw_only=True):
    """The Jacobson–Truax reliable change index, or plainly why it is not shown."""

    rci: Annotated[float | None, Meta(description="The index")]
    status: Annotated[str | None, Meta(description="`improved`, `deteriorated` or `no_reliable_change`")]
    source: Annotated[str, Meta(description="Jacobson & Truax 1991, and the instrument's SD and reliability source")]
    sd: Annotated[float | UnsetType, Meta(description="The pre-treatment SD used")] = UNSET
    reliability: Annotated[float | UnsetType, Meta(description="The reliability used")] = UNSET
    criterion: Annotated[str | UnsetType, Meta(description="|RCI| > 1.96")] = UNSET
    reason: Annotated[str | UnsetType, Meta(description="Why it is not computed")] = UNSET


class Informants(msgspec.Struct, kw_only=True):
    """Who gave the baseline and the latest answers, and whether they differ."""

    baseline: Annotated[Reporter, Meta(description="The baseline's informant")]
    latest: Annotated[Reporter, Meta(description="The latest's informant")]
    differ: Annotated[bool, Meta(description="Different informants: part of the change may be theirs")]
    note: Annotated[str | UnsetType, Meta(description="Says so in words, when they differ")] = UNSET


class MeasureSummary(msgspec.Struct, kw_only=True):
    """One instrument's series and what it shows. A goal's attached measure with no points yet
    has only `instrument_id`, `points` and `schedule`."""

    instrument_id: Annotated[str, Meta(description="The instrument", examples=["phq9"])]
    points: Annotated[list[MeasurePoint], Meta(description="The series, ordered by observed-at")]
    instrument_installed: Annotated[bool | UnsetType, Meta(description="Whether its definition is installed")] = UNSET
    baseline: Annotated[float | UnsetType | None, Meta(description="The first total")] = UNSET
    latest: Annotated[float | UnsetType | None, Meta(description="The latest total")] = UNSET
    change: Annotated[float | UnsetType | None, Meta(description="latest − baseline")] = UNSET
    reliable_change: Annotated[ReliableChangeView | UnsetType | None, Meta(
        description="Reliable change (two points or more)")] = UNSET
    clinically_significant_change: Annotated[SignificantChange | UnsetType | None, Meta(
        description="Clinically significant change")] = UNSET
    indicators: Annotated[MeasureIndicators | UnsetType | None, Meta(description="NHS TT indicators")] = UNSET
    change_index: Annotated[ChangeIndex | UnsetType | None, Meta(description="Jacobson–Truax index")] = UNSET
    informants: Annotated[Informants | UnsetType, Meta(description="Who answered, baseline and latest")] = UNSET
    band: Annotated[str | UnsetType | None, Meta(description="Severity band of the latest total")] = UNSET
    direction: Annotated[str | UnsetType | None, Meta(
        description="`lower_is_better` or `higher_is_better`")] = UNSET
    schedule: Annotated[str | UnsetType | None, Meta(
        description="On a goal: the schedule it was attached with (null: rated without being attached)")] = UNSET
    next_due: Annotated[date | UnsetType | None, Meta(
        description="On a goal being worked on: the next date the client is asked (by the app's clock)")] = UNSET
    administration: Annotated[Administration | UnsetType | None, Meta(
        description="On a goal being worked on: today's administration and its state (due, overdue, done…)")] = UNSET
    plain_words: Annotated[PlainWords, Meta(description="The measure in plain words")]


class GasLevel(msgspec.Struct, kw_only=True):
    """The goal's latest goal-attainment level."""

    level: Annotated[float, Meta(description="The level, −2…+2")]
    t_score: Annotated[float | None, Meta(description="50 + 10·level (Kiresuk & Sherman)")]
    weight: Annotated[float, Meta(description="The goal's weight")]
    baseline_level: Annotated[int | None, Meta(description="The level at the start")]
    observed_at: Annotated[datetime, Meta(description="When it was rated")]
    reported_by: Annotated[Reporter, Meta(description="Who rated it")]
    plain_words: Annotated[str | None, Meta(description="The level in the client's words")]


class ReviewView(msgspec.Struct, kw_only=True):
    """A review of the goal at a checkpoint."""

    review_id: Annotated[UUID, Meta(description="The review")]
    goal_id: Annotated[UUID, Meta(description="The goal")]
    outcome: Annotated[str, Meta(description="One of `celebrate`, `continue`, `adjust_pace`, `adjust_target`, "
                                             "`reframe`, `pause` (core/goal.py ReviewOutcome)")]
    checkpoint_id: Annotated[UUID | None, Meta(description="The checkpoint it was held at")]
    measurement_ids: Annotated[list[UUID], Meta(description="The measurements looked at")]
    client_view: Annotated[str | None, Meta(description="The client's view, in their words")]
    summary: Annotated[str | None, Meta(description="The summary")]
    by: Annotated[UUID, Meta(description="Who recorded it")]
    by_role: Annotated[str, Meta(description="Their role")]
    occurred_at: Annotated[datetime, Meta(description="When")]
    in_error: Annotated[bool, Meta(description="Always false here (reviews in error are left out)")]
    plain_language: Annotated[list[PlainLanguageHint], Meta(description="Plain-language hints")]
    client_agrees: Annotated[bool | None, Meta(
        description="The client's confirmation of the review: agrees or not (null: not yet)")]
    client_confirmation: Annotated[str | None, Meta(description="The client's view of the review, in their words")]
    confirmed_by_role: Annotated[str | None, Meta(description="Who confirmed (client or proxy)")]
    confirmed_at: Annotated[datetime | None, Meta(description="When it was confirmed")]


class GoalProgress(msgspec.Struct, kw_only=True):
    """Progress on one goal."""

    goal_id: Annotated[UUID, Meta(description="The goal")]
    status: Annotated[str, Meta(description="The goal's status")]
    version: Annotated[int, Meta(description="The goal's content version")]
    measures: Annotated[list[MeasureSummary], Meta(description="Its measures")]
    gas: Annotated[GasLevel | None, Meta(description="Its latest GAS level")]
    reviews: Annotated[list[ReviewView], Meta(description="Its reviews")]
    achievement_status: Annotated[str | None, Meta(
        description="FHIR Goal.achievementStatus (`improving`, `worsening`, `no-change`, `in-progress`, …)")]


class PairedInstruments(msgspec.Struct, kw_only=True):
    """The pair of instruments the paired indicators use."""

    depression: Annotated[str, Meta(description="The depression measure (PHQ-9)")]
    anxiety: Annotated[str, Meta(description="The anxiety measure (GAD-7)")]


class PairedCaseness(msgspec.Struct, kw_only=True):
    """Caseness over both measures."""

    baseline_case: Annotated[bool, Meta(description="A case at baseline on either measure")]
    latest_case: Annotated[bool, Meta(description="A case at the latest scores on either")]
    criterion: Annotated[str, Meta(description="The criterion in words")]


class PairedIndicators(msgspec.Struct, kw_only=True):
    """NHS Talking Therapies' paired PHQ-9 + GAD-7 indicators."""

    instruments: Annotated[PairedInstruments, Meta(description="The pair")]
    source: Annotated[str, Meta(description="NHS Talking Therapies manual")]
    caseness: Annotated[PairedCaseness, Meta(description="Caseness over both")]
    reliable_improvement: Annotated[Indicator, Meta(description="Reliable improvement")]
    reliable_deterioration: Annotated[Indicator, Meta(description="Reliable deterioration")]
    recovery: Annotated[Indicator, Meta(description="Recovery")]
    reliable_recovery: Annotated[Indicator, Meta(description="Reliable recovery")]


class GasGoal(msgspec.Struct, kw_only=True):
    """One goal in the GAS summary."""

    goal_id: Annotated[UUID, Meta(description="The goal")]
    level: Annotated[float | None, Meta(description="Its latest level")]
    weight: Annotated[float, Meta(description="Its weight")]
    included: Annotated[bool, Meta(description="Whether it counts")]
    reason: Annotated[str | None, Meta(description="Why not")]


class GasSummary(msgspec.Struct, kw_only=True):
    """The GAS T-score over the goals that count (Kiresuk & Sherman)."""

    t_score: Annotated[float | None, Meta(description="The summary T-score")]
    rho: Annotated[float, Meta(description="The inter-goal correlation assumed")]
    formula: Annotated[str, Meta(description="The formula")]
    criterion: Annotated[str, Meta(description="Which goals count")]
    source: Annotated[str, Meta(description="Kiresuk & Sherman 1968")]
    goals: Annotated[list[GasGoal], Meta(description="Each goal, counted or not")]
    plain_words: Annotated[str | None, Meta(description="The summary in plain words")]


class UnattachedRating(msgspec.Struct, kw_only=True):
    """A rating of one goal that names no goal: counted for none."""

    measurement_id: Annotated[UUID, Meta(description="The measurement")]
    instrument_id: Annotated[str, Meta(description="The instrument")]
    observed_at: Annotated[datetime, Meta(description="When")]
    scores: Scores
    note: Annotated[str, Meta(description="Why it counts for no goal")]


class FeedbackAnswerView(msgspec.Struct, kw_only=True):
    """A clinician's answer to the client's feedback."""

    answer_id: Annotated[UUID, Meta(description="The answer")]
    text: Annotated[str, Meta(description="In the clinician's words")]
    change_event_ids: Annotated[list[UUID], Meta(description="The events of what changed because of it")]
    by: Annotated[UUID, Meta(description="Who answered")]
    by_role: Annotated[str, Meta(description="Their role")]
    occurred_at: Annotated[datetime, Meta(description="When")]


class FeedbackView(msgspec.Struct, kw_only=True):
    """The client's feedback on the work."""

    feedback_id: Annotated[UUID, Meta(description="The feedback")]
    text: Annotated[str, Meta(description="In the client's words")]
    rating: Annotated[int | None, Meta(description="A rating, when given")]
    resonates: Annotated[list[str], Meta(description="What resonates")]
    misaligned: Annotated[list[str], Meta(description="What feels misaligned")]
    goal_ids: Annotated[list[UUID], Meta(description="The goals it is about")]
    by_role: Annotated[str, Meta(description="Who gave it")]
    occurred_at: Annotated[datetime, Meta(description="When")]
    answers: Annotated[list[FeedbackAnswerView], Meta(
        description="The care team's answers, each naming the events of what changed because of it")]


class ProgressView(msgspec.Struct, kw_only=True):
    """Progress per goal and measure: series, change, reliable change, NHS TT indicators, band, GAS."""

    client_id: Annotated[UUID, Meta(description="The client")]
    tenant_id: Annotated[UUID, Meta(description="The clinic")]
    erased: Annotated[bool, Meta(description="Whether the client's data was erased")]
    goals: Annotated[list[GoalProgress], Meta(description="Each goal's progress")]
    measures: Annotated[list[MeasureSummary], Meta(description="Client-wide measures (ratings of one goal are "
                                                               "shown with their goal)")]
    paired_indicators: Annotated[PairedIndicators | None, Meta(
        description="Paired PHQ-9 + GAD-7 indicators, when both were recorded")]
    gas_t_score: Annotated[float | None, Meta(description="The GAS summary T-score")]
    gas_summary: Annotated[GasSummary, Meta(description="How the GAS T-score was computed")]
    unattached_ratings: Annotated[list[UnattachedRating], Meta(description="Ratings of one goal naming none")]
    feedback: Annotated[list[FeedbackView], Meta(description="The client's feedback")]
    risk_flags: Annotated[list[RiskFlagView], Meta(description="Every risk flag, acknowledged or not")]
    open_risk_flags: Annotated[int, Meta(description="How many are not acknowledged")]
    alerts: Annotated[list[AlertView], Meta(description="Not-on-track alerts, open and acknowledged")]
    open_alerts: Annotated[int, Meta(description="How many alerts are not acknowledged")]
    language: Annotated[str, Meta(description="The language of the plain words")]
    crisis_information: Annotated[CrisisInformation | UnsetType, Meta(
        description="While a risk flag is open: the clinic's crisis information")] = UNSET
