"""Outcome statistics a clinician acts on, each named and with the criterion it used.

Computed when progress is read, from baseline and latest totals and the instrument's declared
criteria; nothing here is stored.

Sources (``docs/clinical-sources.md`` §1):

* NHS Talking Therapies for anxiety and depression Manual (NHS England; formerly the IAPT
  Manual), outcome definitions: *caseness* at or above the clinical cut-off (PHQ-9 ≥ 10,
  GAD-7 ≥ 8); *reliable improvement* / *reliable deterioration* a change of at least the
  reliable change threshold (PHQ-9 6 points, GAD-7 4 points) in the better / worse
  direction; *recovery* a case at the first score and not a case at the last; *reliable
  recovery* both. With PHQ-9 and GAD-7 both recorded, the Manual pairs them: a case when
  either is at caseness; recovery when both are below caseness at the end, having been a case
  at the start; reliable improvement when at least one improves reliably and neither
  deteriorates reliably; reliable deterioration when either deteriorates reliably.
* Jacobson & Truax (1991): the Reliable Change Index ``RCI = (x2 − x1) / (√2 · SD · √(1 − r))``,
  reliable when |RCI| > 1.96; it needs a pre-treatment SD, which an instrument must declare
  with its source (none is declared for the built-in PHQ-9 and GAD-7, whose services use the
  fixed thresholds; the view says so rather than showing nothing).
* Kiresuk & Sherman (1968): the GAS summary T-score
  ``T = 50 + 10·Σwᵢxᵢ / √((1−ρ)·Σwᵢ² + ρ·(Σwᵢ)²)``, ρ = 0.3.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from alliance.plugins.instruments import (
    ChangeResult,
    InstrumentDefinition,
    gas_t_score,
    reliable_change_by_index,
    reliable_change_index,
)

NHS_TT_SOURCE = ("NHS Talking Therapies for anxiety and depression Manual (NHS England), "
                 "outcome definitions")
JACOBSON_TRUAX_SOURCE = "Jacobson & Truax 1991"
KIRESUK_SHERMAN_SOURCE = "Kiresuk & Sherman 1968"
GAS_RHO = 0.3  # Kiresuk & Sherman 1968: the default inter-goal correlation
CASENESS = "caseness"
#: |RCI| above this is a reliable change (Jacobson & Truax 1991).
RCI_CRITICAL = 1.96

#: The instruments the NHS TT paired indicators are defined over, by LOINC panel code (a PHQ-9
#: or GAD-7 from a FHIR file is recognised like the built-in one) and by built-in id.
DEPRESSION = ("44249-1", "phq9")
ANXIETY = ("69737-5", "gad7")


def _num(value: float) -> str:
    return f"{value:g}"


def is_case(definition: InstrumentDefinition, total: float, cutoff: float) -> bool:
    """On the clinical side of the caseness cut-off (at or above it when lower is better)."""
    if definition.direction == "lower_is_better":
        return total >= cutoff
    return total < cutoff


def _caseness(definition: InstrumentDefinition) -> Any:
    try:
        return definition.cutoff(CASENESS)
    except KeyError:
        return None


def _change_words(definition: InstrumentDefinition, result: ChangeResult, better: bool) -> str:
    if result.method == "threshold":
        lower = definition.direction == "lower_is_better"
        verb = "fell" if lower == better else "rose"
        return (f"the total {verb} by at least {_num(result.threshold or 0)} points "
                f"(reliable change threshold)")
    sign = "better" if better else "worse"
    return f"|RCI| > {RCI_CRITICAL} in the {sign} direction (Jacobson & Truax 1991 change index)"


def measure_indicators(definition: InstrumentDefinition, baseline: float, latest: float,
                       result: ChangeResult | None) -> dict[str, Any]:
    """NHS TT's four indicators for one instrument, each with the criterion it used.

    ``result``: the reliable change by the instrument's declared criterion (None when it
    declares none). ``met`` is None when an indicator does not apply, with the reason.
    """
    rc_source = definition.reliable_change.source if definition.reliable_change else ""
    out: dict[str, Any] = {"source": NHS_TT_SOURCE}
    if result is None:
        missing = {"met": None, "criterion": "this instrument declares no reliable change criterion"}
        out["reliable_improvement"] = dict(missing)
        out["reliable_deterioration"] = dict(missing)
    else:
        out["reliable_improvement"] = {"met": result.status == "improved",
                                       "criterion": _change_words(definition, result, True),
                                       "source": rc_source}
        out["reliable_deterioration"] = {"met": result.status == "deteriorated",
                                         "criterion": _change_words(definition, result, False),
                                         "source": rc_source}
    cutoff = _caseness(definition)
    if cutoff is None:
        out["caseness"] = None
        out["recovery"] = {"met": None, "criterion": "this instrument declares no caseness cut-off"}
        out["reliable_recovery"] = {"met": None, "criterion": "needs a caseness cut-off"}
        return out
    side = "at or above" if definition.direction == "lower_is_better" else "below"
    other = "below" if definition.direction == "lower_is_better" else "at or above"
    value = _num(cutoff.value)
    case_then, case_now = is_case(definition, baseline, cutoff.value), is_case(definition, latest, cutoff.value)
    out["caseness"] = {"cutoff": cutoff.value, "baseline_case": case_then, "latest_case": case_now,
                       "criterion": f"a total {side} {value}", "source": cutoff.source or NHS_TT_SOURCE}
    recovery_words = f"a case at baseline ({side} {value}) and not at the latest score ({other} {value})"
    recovery: dict[str, Any] = {"met": case_then and not case_now, "criterion": recovery_words}
    if not case_then:
        recovery = {"met": None, "criterion": recovery_words, "reason": "not a case at baseline"}
    out["recovery"] = recovery
    reliable_words = "recovery and reliable improvement, both"
    if recovery["met"] is None or result is None:
        out["reliable_recovery"] = {"met": None, "criterion": reliable_words,
                                    "reason": recovery.get("reason") or "no reliable change criterion"}
    else:
        out["reliable_recovery"] = {"met": bool(recovery["met"] and out["reliable_improvement"]["met"]),
                                    "criterion": reliable_words}
    return out


def change_index(definition: InstrumentDefinition, baseline: float, latest: float) -> dict[str, Any]:
    """The Jacobson–Truax index, or plainly why it is not shown (no declared SD or reliability)."""
    spec = definition.reliable_change
    if spec is None or spec.sd is None or spec.reliability is None:
        lacking = "a reliable change criterion" if spec is None else \
            " and ".join(w for w, v in (("a pre-treatment SD", spec.sd), ("a reliability", spec.reliability))
                         if v is None)
        return {"rci": None, "status": None, "source": JACOBSON_TRUAX_SOURCE,
                "reason": f"Not computed: this instrument declares no {lacking.removeprefix('a ')} "
                          f"for the change index."}
    rci = reliable_change_index(baseline, latest, spec.sd, spec.reliability)
    status = reliable_change_by_index(baseline, latest, spec.sd, spec.reliability, definition.direction)
    return {"rci": rci, "status": status, "sd": spec.sd, "reliability": spec.reliability,
            "criterion": f"|RCI| > {RCI_CRITICAL}", "source": f"{JACOBSON_TRUAX_SOURCE}; {spec.source}".rstrip("; ")}


def _role_of(definition: InstrumentDefinition | None, instrument_id: str) -> str | None:
    panels = {c.code for c in definition.codings if c.target == "panel"} if definition else set()
    for role, (panel, builtin) in (("depression", DEPRESSION), ("anxiety", ANXIETY)):
        if panel in panels or instrument_id == builtin:
            return role
    return None


def paired_indicators(measures: Iterable[tuple[InstrumentDefinition | None, Mapping[str, Any]]]
                      ) -> dict[str, Any] | None:
    """NHS TT's paired PHQ-9 + GAD-7 indicators, when both have a baseline and a latest score.

    ``measures``: (definition, rendered measure summary) pairs; the summaries carry the single
    instrument ``indicators``.
    """
    by_role: dict[str, Mapping[str, Any]] = {}
    for definition, summary in measures:
        role = _role_of(definition, str(summary.get("instrument_id")))
        if role and role not in by_role and summary.get("indicators") and summary["indicators"].get("caseness"):
            by_role[role] = summary
    if set(by_role) != {"depression", "anxiety"}:
        return None
    dep, anx = by_role["depression"]["indicators"], by_role["anxiety"]["indicators"]
    case_then = dep["caseness"]["baseline_case"] or anx["caseness"]["baseline_case"]
    case_now = dep["caseness"]["latest_case"] or anx["caseness"]["latest_case"]
    improved = [bool(x["reliable_improvement"]["met"]) for x in (dep, anx)]
    worse = [bool(x["reliable_deterioration"]["met"]) for x in (dep, anx)]
    reliable_improvement = any(improved) and not any(worse)
    recovery: dict[str, Any] = {
        "met": case_then and not case_now,
        "criterion": "a case at baseline on either measure, and below caseness on both at the latest scores"}
    if not case_then:
        recovery = {**recovery, "met": None, "reason": "not a case at baseline on either measure"}
    reliable_recovery: dict[str, Any] = {"met": None, "criterion": "recovery and reliable improvement, both"}
    if recovery["met"] is None:
        reliable_recovery["reason"] = recovery["reason"]
    else:
        reliable_recovery["met"] = bool(recovery["met"] and reliable_improvement)
    cutoffs = f"PHQ-9 {_num(dep['caseness']['cutoff'])}, GAD-7 {_num(anx['caseness']['cutoff'])}"
    return {
        "instruments": {"depression": by_role["depression"]["instrument_id"],
                        "anxiety": by_role["anxiety"]["instrument_id"]},
        "source": NHS_TT_SOURCE,
        "caseness": {"baseline_case": case_then, "latest_case": case_now,
                     "criterion": f"a case when either measure is at or above its caseness cut-off ({cutoffs})"},
        "reliable_improvement": {"met": reliable_improvement,
                                 "criterion": "at least one measure improved reliably and neither "
                                              "deteriorated reliably"},
        "reliable_deterioration": {"met": any(worse), "criterion": "either measure deteriorated reliably"},
        "recovery": recovery,
        "reliable_recovery": reliable_recovery,
    }


def gas_summary(entries: Iterable[tuple[str, float | None, float, str | None]]) -> dict[str, Any]:
    """The GAS summary over the goals that count, with each goal's inclusion and why.

    ``entries``: (goal id, latest level or None, weight, reason it is left out or None).
    """
    goals: list[dict[str, Any]] = []
    pairs: list[tuple[float, float]] = []
    for goal_id, level, weight, reason in entries:
        if reason is None and level is None:
            reason = "no rating yet"
        if reason is None and not (-2 <= level <= 2 and weight > 0):  # type: ignore[operator]
            reason = "level or weight outside the scale"
        goals.append({"goal_id": goal_id, "level": level, "weight": weight,
                      "included": reason is None, "reason": reason})
        if reason is None:
            pairs.append((float(level), float(weight)))  # type: ignore[arg-type]
    return {"t_score": gas_t_score(pairs, rho=GAS_RHO) if pairs else None, "rho": GAS_RHO,
            "formula": "T = 50 + 10·Σwᵢxᵢ / √((1−ρ)·Σwᵢ² + ρ·(Σwᵢ)²)",
            "criterion": "agreed goals not withdrawn, declined or entered in error (achieved goals count), "
                         "each at its latest level",
            "source": KIRESUK_SHERMAN_SOURCE, "goals": goals}
