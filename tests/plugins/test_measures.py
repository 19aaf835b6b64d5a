"""Every built-in scores the published examples right: bands, risk flag, cut-offs, codings."""

from __future__ import annotations

import math

import msgspec
import pytest

from alliance.core.errors import ValidationError
from alliance.plugins.instruments import InstrumentDefinition, reliable_change
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager


@pytest.fixture(scope="module")
def registry() -> InstrumentRegistry:
    return InstrumentRegistry.from_plugin_manager(get_plugin_manager())


def answers_for_total(item_ids: list[str], total: int, top: int = 3) -> dict[str, int]:
    """Spread ``total`` over items, filling each up to ``top`` in order (item 9 last)."""
    answers = {}
    for item_id in item_ids:
        answers[item_id] = min(top, total)
        total -= answers[item_id]
    assert total == 0
    return answers


PHQ9_BANDS = [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"),
              (14, "moderate"), (15, "moderately severe"), (19, "moderately severe"),
              (20, "severe"), (27, "severe")]


@pytest.mark.parametrize(("total", "band"), PHQ9_BANDS)
def test_phq9_band_boundaries(registry: InstrumentRegistry, total: int, band: str) -> None:
    result = registry.score("phq9", answers_for_total([f"item{i}" for i in range(1, 10)], total))
    assert result.scores == {"total": total}
    assert result.band == band


GAD7_BANDS = [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"),
              (14, "moderate"), (15, "severe"), (21, "severe")]


@pytest.mark.parametrize(("total", "band"), GAD7_BANDS)
def test_gad7_band_boundaries(registry: InstrumentRegistry, total: int, band: str) -> None:
    result = registry.score("gad7", answers_for_total([f"item{i}" for i in range(1, 8)], total))
    assert result.scores == {"total": total}
    assert result.band == band


def test_phq9_item9_above_zero_is_a_risk_whatever_the_total(registry: InstrumentRegistry) -> None:
    answers = {f"item{i}": 0 for i in range(1, 10)}
    assert registry.score("phq9", answers).risk_items == ()
    answers["item9"] = 1
    result = registry.score("phq9", answers)
    assert result.risk_items == ("item9",)
    assert result.band == "minimal"


def test_phq9_and_gad7_published_facts(registry: InstrumentRegistry) -> None:
    phq9, gad7 = registry.get("phq9"), registry.get("gad7")
    assert (phq9.version, gad7.version) == ("2", "2")
    anchors = ["Not at all", "Several days", "More than half the days", "Nearly every day"]
    for definition, n in ((phq9, 9), (gad7, 7)):
        scored = [definition.item(i) for i in definition.scoring.total]
        assert len(scored) == n
        for item in scored:
            assert [o.label for o in item.response.options] == anchors  # type: ignore[union-attr]
            assert [o.value for o in item.response.options] == [0, 1, 2, 3]  # type: ignore[union-attr]
        assert definition.direction == "lower_is_better"
    assert "Not at all sure" not in msgspec.json.encode(gad7).decode()
    assert (phq9.score_range.min, phq9.score_range.max) == (0, 27)
    assert (gad7.score_range.min, gad7.score_range.max) == (0, 21)
    # LOINC: PHQ-9 panel 44249-1, total 44261-6, items 44250-9 … 44260-8, difficulty 69722-7;
    # GAD-7 panel 69737-5, total 70274-6, items 69725-0 … 69736-7 (68509-9: its check digit is 9).
    assert {(c.target, c.code) for c in phq9.codings} == {
        ("panel", "44249-1"), ("total", "44261-6"), ("item1", "44250-9"), ("item2", "44255-8"),
        ("item3", "44259-0"), ("item4", "44254-1"), ("item5", "44251-7"), ("item6", "44258-2"),
        ("item7", "44252-5"), ("item8", "44253-3"), ("item9", "44260-8"), ("item10", "69722-7")}
    assert {(c.target, c.code) for c in gad7.codings} == {
        ("panel", "69737-5"), ("total", "70274-6"), ("item1", "69725-0"), ("item2", "68509-9"),
        ("item3", "69733-4"), ("item4", "69734-2"), ("item5", "69735-9"), ("item6", "69689-8"),
        ("item7", "69736-7")}
    assert [(c.name, c.value) for c in phq9.cutoffs] == [("caseness", 10)]
    assert [(c.name, c.value) for c in gad7.cutoffs] == [("caseness", 8), ("screening", 10)]
    assert phq9.reliable_change is not None and gad7.reliable_change is not None
    assert (phq9.reliable_change.threshold, phq9.reliable_change.reliability) == (6, 0.89)
    assert (gad7.reliable_change.threshold, gad7.reliable_change.reliability) == (4, 0.92)
    assert phq9.licence and gad7.licence


def test_loinc_codes_carry_valid_check_digits(registry: InstrumentRegistry) -> None:
    def check_digit(number: str) -> int:  # LOINC's mod 10 check digit
        total = 0
        for i, digit in enumerate(reversed([int(c) for c in number])):
            doubled = digit * 2 if i % 2 == 0 else digit
            total += doubled - 9 if doubled > 9 else doubled
        return (10 - total % 10) % 10

    for definition in (registry.get("phq9"), registry.get("gad7")):
        for coding in definition.codings:
            number, digit = coding.code.split("-")
            assert check_digit(number) == int(digit), coding.code


def test_phq9_difficulty_question_is_recorded_and_never_scored(registry: InstrumentRegistry) -> None:
    answers = {f"item{n}": 1 for n in range(1, 10)}
    plain = registry.score("phq9", answers)
    with_difficulty = registry.score("phq9", {**answers, "item10": 3})
    assert with_difficulty.answers["item10"] == 3
    assert with_difficulty.scores == plain.scores == {"total": 9.0}
    assert "item10" not in registry.get("phq9").scoring.total
    assert not registry.get("phq9").item("item10").required


def test_version_one_stays_installed_with_its_fingerprint(registry: InstrumentRegistry) -> None:
    # The fingerprint phq9@1 / gad7@1 had before version 2 existed: their measurements re-verify.
    assert registry.get("phq9", "1").fingerprint == \
        "46d358267be0675090c0b7fb663ac17c76bc41ac065ffd3b62a1e555b0676f04"
    assert registry.get("gad7", "1").fingerprint == \
        "1caf4dbcc1d0113f1610ddbf31e89b2743e9842a76fffb7f4849848bbcf43a0d"
    assert len(registry.get("phq9", "1").items) == 9


def test_no_gbo_or_ors_bundled(registry: InstrumentRegistry) -> None:
    ids = {d.id for d in registry.definitions()}
    assert ids == {"phq9", "gad7", "gas", "mood_diary", "frequency_count", "frequency_count_reduce",
                   "confidence", "sleep_quality", "social_engagement"}


@pytest.mark.parametrize(("baseline", "current", "status"), [
    (18, 12, "improved"),  # exactly 6 points: reliable (NHS TT "6 or more")
    (18, 13, "no_reliable_change"),
    (10, 16, "deteriorated"),
])
def test_phq9_reliable_change_by_threshold(registry: InstrumentRegistry, baseline: int, current: int,
                                           status: str) -> None:
    result = reliable_change(registry.get("phq9"), baseline, current)
    assert (result.method, result.status) == ("threshold", status)


def test_gad7_reliable_change_by_threshold_and_by_index(registry: InstrumentRegistry) -> None:
    gad7 = registry.get("gad7")
    assert reliable_change(gad7, 12, 8).status == "improved"
    assert reliable_change(gad7, 12, 9).status == "no_reliable_change"
    # Index with α = .92 and an SD of 5: S_diff = √2·5·√.08 = 2.0; 3 points → RCI −1.5.
    by_index = reliable_change(gad7, 12, 9, method="index", sd=5.0)
    assert by_index.method == "index"
    assert by_index.rci == pytest.approx(-3 / (math.sqrt(2) * 5 * math.sqrt(0.08)))
    assert by_index.status == "no_reliable_change"
    assert reliable_change(gad7, 12, 7, method="index", sd=5.0).status == "improved"


@pytest.mark.parametrize(("level", "t_score", "band"), [
    (-2, 30, "much less than expected"), (-1, 40, "somewhat less than expected"),
    (0, 50, "the expected outcome"), (1, 60, "somewhat more than expected"), (2, 70, "much more than expected"),
])
def test_gas_single_goal(registry: InstrumentRegistry, level: int, t_score: float, band: str) -> None:
    result = registry.score("gas", {"level": level})
    assert result.scores == {"total": level, "t_score": t_score}
    assert result.band == band


def test_mood_diary_keeps_the_note_apart(registry: InstrumentRegistry) -> None:
    result = registry.score("mood_diary", {"mood": 7, "note": "Walked to the park with my sister"})
    assert result.scores == {"total": 7}
    assert result.answers == {"mood": 7}
    assert result.free_text == {"note": "Walked to the park with my sister"}
    assert registry.score("mood_diary", {"mood": 3}).free_text == {}


def test_frequency_count(registry: InstrumentRegistry) -> None:
    result = registry.score("frequency_count", {"behaviour": "Phoned a friend", "count": 4, "period": 7})
    assert result.scores == {"total": 4}
    assert result.answers == {"count": 4, "period": 7}
    assert result.free_text == {"behaviour": "Phoned a friend"}
    assert registry.get("frequency_count").direction == "higher_is_better"
    assert registry.get("frequency_count_reduce").direction == "lower_is_better"
    with pytest.raises(ValidationError) as refused:
        registry.score("frequency_count", {"behaviour": "x", "count": -1, "period": 7})
    assert refused.value.field == "answers.count"


def test_confidence_rating(registry: InstrumentRegistry) -> None:
    assert registry.score("confidence", {"confidence": 6}).scores == {"total": 6}


@pytest.mark.parametrize(("quality", "band"), [(0, "terrible"), (1, "poor"), (3, "poor"), (4, "fair"),
                                               (6, "fair"), (7, "good"), (9, "good"), (10, "excellent")])
def test_sleep_quality_bands(registry: InstrumentRegistry, quality: int, band: str) -> None:
    result = registry.score("sleep_quality", {"quality": quality, "hours": 6.5})
    assert result.scores == {"total": quality}
    assert result.band == band


def test_social_engagement_subscale(registry: InstrumentRegistry) -> None:
    result = registry.score("social_engagement", {"connected": 5, "contacts": 12})
    assert result.scores == {"total": 5, "contacts": 12}


def test_definitions_encode_to_json_for_the_api(registry: InstrumentRegistry) -> None:
    for definition in registry.definitions():
        encoded = msgspec.json.encode(definition)
        decoded = msgspec.json.decode(encoded, type=InstrumentDefinition)
        assert decoded.fingerprint == definition.fingerprint
        assert b"<function" not in encoded
