"""The shared scoring helpers and the pure ``score`` function."""

from __future__ import annotations

import math

import msgspec
import pytest

from alliance.core.errors import ValidationError
from alliance.plugins.instruments import (
    Band,
    FreeTextResponse,
    Item,
    ScoreRange,
    Subscale,
    YesNoResponse,
    change_from_baseline,
    clinically_significant_change,
    compute_fingerprint,
    crossed_cutoff,
    cutoff_a,
    cutoff_b,
    cutoff_c,
    gas_t_score,
    reliable_change_by_index,
    reliable_change_by_threshold,
    reliable_change_index,
    rescore,
    score,
    severity_band,
    subscale_scores,
    total,
)
from alliance.plugins.measures.phq9 import PHQ9
from tests.plugins.helpers import simple_definition


def test_gas_t_score_worked_examples() -> None:
    # All goals at the expected level → 50, whatever the weights.
    assert gas_t_score([0, 0, 0]) == 50
    assert gas_t_score([(0, 3), (0, 1)]) == 50
    # Unweighted, n goals: T = 50 + 10·Σx / √(0.7n + 0.3n²); for n = 3 the published
    # multiplier is 10/√4.8 ≈ 4.56 per level point.
    assert gas_t_score([1, 1, 0]) == pytest.approx(50 + 2 * 10 / math.sqrt(4.8))
    assert gas_t_score([1, 1, 0]) == pytest.approx(59.13, abs=0.01)
    # Weighted by hand: levels (+1, 0, −1, +2), weights (1, 2, 1, 3):
    # Σwx = 6, Σw = 7, Σw² = 15 → T = 50 + 60/√(0.7·15 + 0.3·49) = 50 + 60/√25.2.
    assert gas_t_score([(1, 1), (0, 2), (-1, 1), (2, 3)]) == pytest.approx(61.952, abs=0.001)
    # A single goal: T = 50 + 10·x.
    assert gas_t_score([-1]) == pytest.approx(40)
    # Another ρ.
    assert gas_t_score([1, 1], rho=0.0) == pytest.approx(50 + 20 / math.sqrt(2))
    with pytest.raises(ValueError):
        gas_t_score([3])
    with pytest.raises(ValueError):
        gas_t_score([])


def test_reliable_change_index_formula() -> None:
    # SE = 5·√(1 − .89), S_diff = √2·SE
    s_diff = math.sqrt(2) * 5 * math.sqrt(0.11)
    assert reliable_change_index(18, 10, sd=5, reliability=0.89) == pytest.approx(-8 / s_diff)
    # 5 points: below the 6-point threshold, but |RCI| = 2.13 > 1.96 by the index.
    assert reliable_change_by_threshold(18, 13, 6, "lower_is_better") == "no_reliable_change"
    assert reliable_change_by_index(18, 13, 5, 0.89, "lower_is_better") == "improved"
    assert reliable_change_by_index(18, 14, 5, 0.89, "lower_is_better") == "no_reliable_change"
    assert reliable_change_by_index(4, 9, 5, 0.89, "lower_is_better") == "deteriorated"
    assert reliable_change_by_index(4, 9, 5, 0.89, "higher_is_better") == "improved"
    assert reliable_change_by_threshold(3, 9, 6, "higher_is_better") == "improved"
    assert change_from_baseline(18, 10) == -8


def test_clinically_significant_change() -> None:
    assert cutoff_a(20, 4) == 12
    assert cutoff_b(5, 3) == 11
    assert cutoff_c(20, 4, 5, 3) == pytest.approx((4 * 5 + 3 * 20) / 7)
    assert crossed_cutoff(12, 9, 10, "lower_is_better")
    assert not crossed_cutoff(12, 10, 10, "lower_is_better")
    assert crossed_cutoff(4, 7, 7, "higher_is_better")
    # NHS TT: reliable improvement (≥ 6) and moving from ≥ 10 to < 10 = recovery.
    reliable = reliable_change_by_threshold(16, 9, 6, "lower_is_better")
    assert clinically_significant_change(16, 9, cutoff="caseness", reliable=reliable,
                                         direction="lower_is_better", definition=PHQ9) == "recovered"
    reliable = reliable_change_by_threshold(16, 11, 6, "lower_is_better")
    assert clinically_significant_change(16, 11, cutoff=10, reliable=reliable,
                                         direction="lower_is_better") == "no_reliable_change"
    reliable = reliable_change_by_threshold(22, 12, 6, "lower_is_better")
    assert clinically_significant_change(22, 12, cutoff=10, reliable=reliable,
                                         direction="lower_is_better") == "improved"


def test_totals_subscales_and_bands() -> None:
    assert total([1, 2, None, True]) == 4
    subscales = (Subscale(id="x", title="X", item_ids=("a", "b")), Subscale(id="y", title="Y", item_ids=("c",)))
    assert subscale_scores({"a": 1, "b": 2}, subscales) == {"x": 3}
    bands = (Band(label="low", min=0, max=2.5), Band(label="high", min=2.5, max=5))
    assert severity_band(bands, 2.4) == "low"
    assert severity_band(bands, 2.5) == "high"
    assert severity_band(bands, 6) is None
    assert severity_band((), 1) is None


def test_score_validates_before_scoring() -> None:
    definition = simple_definition()
    assert score(definition, {"a": 2, "b": 3}).scores == {"total": 5}
    assert rescore(definition, {"a": 2, "b": 3}) == {"total": 5}
    cases = [
        ({"a": 2}, "invalid_answer", "answers.b"),  # missing required
        ({"a": 6, "b": 0}, "invalid_answer", "answers.a"),  # out of range
        ({"a": "2", "b": 0}, "invalid_answer", "answers.a"),  # wrong type
        ({"a": True, "b": 0}, "invalid_answer", "answers.a"),  # bool is not a number here
        ({"a": 1.5, "b": 0}, "invalid_answer", "answers.a"),
        ({"a": 1, "b": 0, "c": 1}, "unknown_item", "answers.c"),
    ]
    for answers, code, field in cases:
        with pytest.raises(ValidationError) as refused:
            score(definition, answers)
        assert (refused.value.code, refused.value.field) == (code, field)
        assert field.removeprefix("answers.") in refused.value.message


def test_yes_no_and_free_text_answers() -> None:
    definition = simple_definition(items=(
        Item(id="a", prompt="A?", response=YesNoResponse()),
        Item(id="b", prompt="B?", response=YesNoResponse()),
        Item(id="why", prompt="Why?", response=FreeTextResponse(max_length=10), required=False),
    ), score_range=ScoreRange(min=0, max=2), bands=())
    result = score(definition, {"a": True, "b": False, "why": "because"})
    assert result.scores == {"total": 1}
    assert result.answers == {"a": True, "b": False}
    assert result.free_text == {"why": "because"}
    with pytest.raises(ValidationError):
        score(definition, {"a": 1, "b": False})
    with pytest.raises(ValidationError):
        score(definition, {"a": True, "b": False, "why": "x" * 11})


def test_fingerprint_covers_content_only() -> None:
    definition = simple_definition()
    assert definition.fingerprint == compute_fingerprint(definition)
    assert simple_definition().fingerprint == definition.fingerprint
    reworded = simple_definition(description="Two other questions.")
    assert reworded.fingerprint != definition.fingerprint
    # A fingerprint given in input is never trusted.
    raw = msgspec.json.encode(definition).replace(definition.fingerprint.encode(), b"0" * 64)
    assert msgspec.json.decode(raw, type=type(definition)).fingerprint == definition.fingerprint
