"""SMART assessment and the plain-language check: guidance, never a gate."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from alliance.core.plain_language import DEFAULT_GLOSSARY, check_plain_language, merged_glossary
from alliance.core.smart import FACETS, assess_smart


def test_empty_goal_gets_every_suggestion():
    result = assess_smart({})
    assert result.present == () and result.missing == FACETS and len(result.suggestions) == len(FACETS)
    assert not result.complete


def test_facets_present_and_due_date_counts_as_time_bound():
    facets = {"specific": "walk", "measure": "diary", "target": "3 a week", "achievable": "I have time",
              "relevant": "I want to see friends"}
    assert assess_smart(facets, due_date=date(2025, 6, 1)).complete
    partial = assess_smart({"specific": "walk", "measure": "  "})
    assert partial.present == ("specific",) and "measure" in partial.missing
    assert all(isinstance(s, str) and s for s in partial.suggestions)


def test_plain_language_flags_jargon_with_suggestions():
    # The built-in glossary alone: an app started earlier in the run may have put the plugins'
    # glossaries in force (GAD-7's "somatic symptoms" would then be the longer match).
    hints = check_plain_language("Use Cognitive Restructuring to reduce rumination and somatic symptoms",
                                 DEFAULT_GLOSSARY)
    assert [h.term for h in hints] == ["cognitive restructuring", "rumination", "somatic"]
    assert hints[0].suggestion == "changing unhelpful thoughts" and hints[0].found == "Cognitive Restructuring"


def test_plain_language_whole_words_only():
    assert check_plain_language("This will affectionately ruminate") == []
    assert check_plain_language("Walk to the shop") == []


def test_clinics_extend_the_glossary():
    glossary = merged_glossary({"DBT": "a skills course for strong feelings"})
    hints = check_plain_language("Start DBT and behavioural activation", glossary)
    assert [h.term for h in hints] == ["dbt", "behavioural activation"]
    assert "dbt" not in DEFAULT_GLOSSARY


@given(st.text(max_size=200))
def test_plain_language_never_fails_and_spans_match(text):
    for hint in check_plain_language(text):
        assert text[hint.start:hint.end] == hint.found
