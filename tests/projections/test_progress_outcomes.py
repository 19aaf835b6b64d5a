"""NHS Talking Therapies indicators and the change index in the progress view.

Definitions (NHS Talking Therapies Manual; docs/clinical-sources.md §1): PHQ-9 caseness ≥ 10 and
reliable change 6 points; GAD-7 caseness ≥ 8 and reliable change 4 points; recovery = a case
at baseline and not at the latest score; reliable recovery = recovery and reliable
improvement. Every indicator is tried at its boundary. Observed failure #5 of issue 13 is
the first test.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from alliance.plugins.instruments import ReliableChange
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.plugins.helpers import MeasuresPlugin, manager_with, simple_definition
from tests.projections.helpers import Client
from tests.projections.progress_support import progress_of, record


async def measured(pairs: dict[str, tuple[float, float]], *, instruments: Any = None) -> dict[str, Any]:
    """A client whose instruments went from baseline to latest, as the progress view reads it."""
    c = Client().enrol()
    for instrument, (baseline, latest) in pairs.items():
        record(c, instrument, baseline)
        record(c, instrument, latest)
    if instruments is None:
        return await progress_of(c)
    return await progress_of(c, instruments=instruments)


def met(indicators: dict[str, Any]) -> dict[str, bool | None]:
    return {name: indicators[name]["met"] for name in
            ("reliable_improvement", "reliable_deterioration", "recovery", "reliable_recovery")}


async def test_phq9_from_12_to_9_shows_recovery_by_name() -> None:
    # Given a PHQ-9 of 12 then 9 (a drop of 3: below the 6-point reliable change)
    view = await measured({"phq9": (12, 9)})
    [m] = view["measures"]
    # Then it is not a reliable change, but it is a recovery (a case at 12, not at 9), by name
    assert m["reliable_change"]["status"] == "no_reliable_change"
    assert met(m["indicators"]) == {"reliable_improvement": False, "reliable_deterioration": False,
                                    "recovery": True, "reliable_recovery": False}
    assert "at or above 10" in m["indicators"]["recovery"]["criterion"]
    assert "6 points" in m["indicators"]["reliable_improvement"]["criterion"]
    assert "NHS Talking Therapies" in m["indicators"]["source"]
    # and the Jacobson–Truax category is named as what it is in NHS TT's words
    assert m["clinically_significant_change"]["status"] == "no_reliable_change"


PHQ9_BOUNDARIES = [
    # baseline, latest, reliable improvement, reliable deterioration, recovery, reliable recovery
    (10, 9, False, False, True, False),    # caseness boundary: 10 is a case, 9 is not
    (15, 9, True, False, True, True),      # a drop of exactly 6 is reliable
    (15, 10, False, False, False, False),  # a drop of 5 is not; 10 is still a case
    (16, 10, True, False, False, False),   # reliable, but still a case: no recovery
    (9, 3, True, False, None, None),       # not a case at baseline: recovery does not apply
    (4, 10, False, True, None, None),      # a rise of exactly 6 is a reliable deterioration
    (4, 9, False, False, None, None),      # a rise of 5 is not
]


@pytest.mark.parametrize(("baseline", "latest", "ri", "rd", "rec", "rrec"), PHQ9_BOUNDARIES)
async def test_phq9_indicators_at_their_boundaries(baseline: float, latest: float, ri: bool, rd: bool,
                                                   rec: bool | None, rrec: bool | None) -> None:
    [m] = (await measured({"phq9": (baseline, latest)}))["measures"]
    assert met(m["indicators"]) == {"reliable_improvement": ri, "reliable_deterioration": rd,
                                    "recovery": rec, "reliable_recovery": rrec}
    assert m["indicators"]["caseness"]["cutoff"] == 10
    if rec is None:
        assert m["indicators"]["recovery"]["reason"] == "not a case at baseline"


GAD7_BOUNDARIES = [
    (8, 7, False, False, True, False),     # caseness 8 (NHS TT): 8 is a case, 7 is not
    (11, 7, True, False, True, True),      # a drop of exactly 4 is reliable
    (10, 8, False, False, False, False),   # 8 is still a case
    (7, 3, True, False, None, None),       # not a case at baseline
    (3, 7, False, True, None, None),       # a rise of exactly 4
    (3, 6, False, False, None, None),      # a rise of 3 is not
]


@pytest.mark.parametrize(("baseline", "latest", "ri", "rd", "rec", "rrec"), GAD7_BOUNDARIES)
async def test_gad7_indicators_at_their_boundaries(baseline: float, latest: float, ri: bool, rd: bool,
                                                   rec: bool | None, rrec: bool | None) -> None:
    [m] = (await measured({"gad7": (baseline, latest)}))["measures"]
    assert met(m["indicators"]) == {"reliable_improvement": ri, "reliable_deterioration": rd,
                                    "recovery": rec, "reliable_recovery": rrec}
    assert m["indicators"]["caseness"]["cutoff"] == 8
    assert "4 points" in m["indicators"]["reliable_improvement"]["criterion"]


PAIRED = [
    # PHQ-9, GAD-7, reliable improvement, reliable deterioration, recovery, reliable recovery
    ((12, 9), (9, 7), False, False, True, False),   # both below caseness at the end; nothing reliable
    ((12, 6), (6, 10), False, True, False, False),  # one improves, the other deteriorates: not improvement
    ((9, 3), (9, 7), True, False, True, True),      # a case by GAD-7 alone; PHQ-9 improves reliably
    ((12, 6), (9, 8), True, False, False, False),   # GAD-7 8 is still a case: no recovery
    ((7, 5), (5, 7), False, False, None, None),     # a case on neither at baseline
]


@pytest.mark.parametrize(("phq9", "gad7", "ri", "rd", "rec", "rrec"), PAIRED)
async def test_paired_phq9_gad7_indicators(phq9: tuple[float, float], gad7: tuple[float, float], ri: bool, rd: bool,
                                           rec: bool | None, rrec: bool | None) -> None:
    paired = (await measured({"phq9": phq9, "gad7": gad7}))["paired_indicators"]
    assert paired["instruments"] == {"depression": "phq9", "anxiety": "gad7"}
    assert met(paired) == {"reliable_improvement": ri, "reliable_deterioration": rd, "recovery": rec,
                           "reliable_recovery": rrec}
    assert "either" in paired["caseness"]["criterion"] and "GAD-7 8" in paired["caseness"]["criterion"]


async def test_no_paired_indicators_with_one_of_the_pair() -> None:
    assert (await measured({"phq9": (12, 9)}))["paired_indicators"] is None


async def test_the_view_says_plainly_why_no_change_index_is_shown() -> None:
    [m] = (await measured({"phq9": (20, 10)}))["measures"]
    assert m["change_index"]["rci"] is None
    assert "pre-treatment SD" in m["change_index"]["reason"]


async def test_a_declared_sd_gives_the_jacobson_truax_index_at_its_boundary() -> None:
    # S_diff = √2 · 5 · √(1 − 0.8) = 3.1623; |RCI| > 1.96 needs a change above 6.198 points
    declared = simple_definition(reliable_change=ReliableChange(method="index", reliability=0.8, sd=5.0,
                                                                source="Clinic audit 2024 (n = 212)"))
    registry = InstrumentRegistry.from_plugin_manager(manager_with(clinic=MeasuresPlugin(declared)))
    c = Client().enrol()
    for total in (10, 4, 3):
        record(c, "clinic_scale", total)
    view = await progress_of(c, instruments=registry)
    [m] = view["measures"]
    assert m["change_index"]["rci"] == pytest.approx(-7 / 3.16228, abs=1e-4)
    assert m["change_index"]["status"] == "improved"
    assert "Clinic audit 2024" in m["change_index"]["source"]
    assert m["reliable_change"]["criterion"] == "index"
    # six points (|RCI| 1.897) is not reliable
    c2 = Client().enrol()
    record(c2, "clinic_scale", 10)
    record(c2, "clinic_scale", 4)
    [m2] = (await progress_of(c2, instruments=registry))["measures"]
    assert m2["change_index"]["status"] == "no_reliable_change"
    assert m2["indicators"]["reliable_improvement"]["met"] is False
    assert "|RCI| > 1.96" in m2["indicators"]["reliable_improvement"]["criterion"]
    # no caseness cut-off declared: recovery says so
    assert m2["indicators"]["recovery"] == {"met": None, "criterion": "this instrument declares no caseness cut-off"}


def test_builtin_registry_is_unchanged_by_index_declarations() -> None:
    # Declaring an SD is a clinic's choice in its own definition; PHQ-9 and GAD-7 keep their
    # fingerprints (a changed definition under a recorded version stops start-up).
    registry = InstrumentRegistry.from_plugin_manager(get_plugin_manager())
    for instrument_id in ("phq9", "gad7"):
        spec = registry.get(instrument_id).reliable_change
        assert spec is not None and spec.method == "threshold" and spec.sd is None
    assert msgspec.structs.replace(registry.get("gas"), per_goal=False).fingerprint == registry.get("gas").fingerprint
