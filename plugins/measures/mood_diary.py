"""Mood diary: a 0–10 rating of today's mood with an optional note in the client's words."""

from __future__ import annotations

from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import (
    FreeTextResponse,
    InstrumentDefinition,
    IntegerResponse,
    Item,
    ScoreRange,
    Scoring,
)

MOOD_DIARY = InstrumentDefinition(
    id="mood_diary",
    version="1",
    title="Mood diary",
    description="A quick note of how your mood has been today, from 0 (very low) to 10 "
                "(very good), with a few words if you like.",
    items=(
        Item(id="mood", prompt="How has your mood been today?",
             response=IntegerResponse(min=0, max=10, min_label="Very low",
                                      max_label="Very good")),
        Item(id="note", prompt="Anything you want to remember about today?",
             response=FreeTextResponse(max_length=2000), required=False),
    ),
    scoring=Scoring(method="sum", total=("mood",)),
    direction="higher_is_better",
    score_range=ScoreRange(min=0, max=10),
    licence="Alliance built-in; free to use.",
)


@hookimpl
def register_measures() -> list[InstrumentDefinition]:
    return [MOOD_DIARY]


@hookimpl
def glossary_terms() -> dict[str, str]:
    return {"affect": "mood or feelings", "dysphoria": "feeling low or uneasy"}
