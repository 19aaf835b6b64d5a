"""The not-on-track rules over one client's series on one instrument. Pure.

A series is the client's valid administrations of the instrument ordered by observed-at; the
rules read its first (baseline) and latest totals, as progress does (``core/projections/
progress.py``), with the instrument's own reliable change criterion
(``plugins/instruments.reliable_change``: NHS Talking Therapies' points or the Jacobson &
Truax index, docs/clinical-sources.md §1):

* ``reliable_deterioration``: the change from baseline is reliable and for the worse.
* ``no_reliable_improvement``: no reliable change (either way) once the series has the
  clinic's number of administrations, or spans its number of weeks (``core/clinic.py``).
* ``outside_expected_response``: the latest total lies on the worse side of the band an
  instrument plugin declares for this baseline and administration (``expected_response``).

A rule *holds* at a moment; the policy raises an alert when it starts to hold (``policy.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from alliance.core.alerts.events import AlertRule
from alliance.core.projections.outcomes import RCI_CRITICAL
from alliance.plugins.expected_response import ResponseBand
from alliance.plugins.instruments import InstrumentDefinition, reliable_change

#: (instrument id, version, baseline, administration index, weeks since baseline) → band or None.
BandLookup = Callable[[str, str, float, int, float], ResponseBand | None]


@dataclass(frozen=True, slots=True)
class SeriesFacts:
    """What the rules read of a series: its ends and its length."""

    instrument_id: str
    instrument_version: str
    baseline_measurement_id: UUID
    measurement_id: UUID
    baseline: float
    latest: float
    baseline_observed_at: datetime
    latest_observed_at: datetime
    administrations: int

    @property
    def weeks(self) -> float:
        return (self.latest_observed_at - self.baseline_observed_at).total_seconds() / (7 * 86400)


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that holds, with the criterion and the figures it used (what the alert shows)."""

    rule: AlertRule
    criterion: str
    method: str | None = None
    threshold: float | None = None
    rci: float | None = None
    after_administrations: int | None = None
    after_weeks: float | None = None
    band_lower: float | None = None
    band_upper: float | None = None
    source: str = ""


def _num(value: float) -> str:
    return f"{value:g}"


def _change_criterion(definition: InstrumentDefinition, method: str, threshold: float | None, worse: bool) -> str:
    if method == "threshold":
        lower = definition.direction == "lower_is_better"
        verb = "rise" if lower == worse else "fall"
        return f"a {verb} of at least {_num(threshold or 0)} points from baseline (reliable change threshold)"
    return f"|RCI| > {RCI_CRITICAL} in the {'worse' if worse else 'better'} direction (Jacobson & Truax 1991)"


def evaluate(facts: SeriesFacts, definition: InstrumentDefinition, *, after_administrations: int,
             after_weeks: float | None, band: BandLookup | None = None) -> dict[AlertRule, Finding]:
    """The rules that hold for this series now (none for a series of one administration)."""
    held: dict[AlertRule, Finding] = {}
    if facts.administrations < 2:
        return held
    spec = definition.reliable_change
    if spec is not None:
        try:
            result: Any = reliable_change(definition, facts.baseline, facts.latest)
        except ValueError:  # a criterion lacking its figures: progress says so; no rule can hold
            result = None
        if result is not None and result.status == "deteriorated":
            held["reliable_deterioration"] = Finding(
                rule="reliable_deterioration", criterion=_change_criterion(definition, result.method,
                                                                           result.threshold, True),
                method=result.method, threshold=result.threshold, rci=result.rci, source=spec.source)
        elif result is not None and result.status == "no_reliable_change":
            by_count = facts.administrations >= after_administrations
            by_weeks = after_weeks is not None and facts.weeks >= after_weeks
            if by_count or by_weeks:
                when = f"{after_administrations} administrations" + (
                    f" or {_num(after_weeks)} weeks" if after_weeks is not None else "")
                held["no_reliable_improvement"] = Finding(
                    rule="no_reliable_improvement",
                    criterion=f"no reliable change after {when} (the clinic's setting); reliable change is "
                              + _change_criterion(definition, result.method, result.threshold, False),
                    method=result.method, threshold=result.threshold, rci=result.rci,
                    after_administrations=after_administrations, after_weeks=after_weeks,
                    source=f"{spec.source}; Howard et al. 1986 (dose-effect)".lstrip("; "))
    if band is not None:
        expected = band(facts.instrument_id, facts.instrument_version, facts.baseline,
                        facts.administrations - 1, facts.weeks)
        if expected is not None and expected.worse_than(facts.latest, definition.direction):
            bound = expected.upper if definition.direction == "lower_is_better" else expected.lower
            side = "above" if definition.direction == "lower_is_better" else "below"
            held["outside_expected_response"] = Finding(
                rule="outside_expected_response",
                criterion=f"the latest total is {side} {_num(bound or 0)}, the worse bound of the "
                          f"{expected.label} for a baseline of {_num(facts.baseline)} at administration "
                          f"{facts.administrations - 1}",
                band_lower=expected.lower, band_upper=expected.upper, source=expected.source)
    return held
