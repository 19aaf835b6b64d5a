"""Confidence rating: 0–10, how sure the client is of reaching a named goal.

The goal is the one the measurement serves (the event's ``goal_ids``), so the prompt says
"this goal" and the form shows the goal's own words beside it.
"""

from __future__ import annotations

from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import InstrumentDefinition, IntegerResponse, Item, ScoreRange, Scoring

CONFIDENCE = InstrumentDefinition(
    id="confidence",
    version="1",
    title="Confidence rating",
    description="How sure you feel that you can reach this goal, from 0 (not at all) to 10 "
                "(completely sure).",
    items=(Item(id="confidence", prompt="How confident are you that you can reach this goal?",
                response=IntegerResponse(min=0, max=10, min_label="Not at all confident",
                                         max_label="Completely confident")),),
    scoring=Scoring(method="sum", total=("confidence",)),
    direction="higher_is_better",
    score_range=ScoreRange(min=0, max=10),
    licence="Alliance built-in; free to use.",
    per_goal=True,  # a level of one goal: never counted for another
)


@hookimpl
def register_measures() -> list[InstrumentDefinition]:
    return [CONFIDENCE]


@hookimpl
def glossary_terms() -> dict[str, str]:
    return {"self-efficacy": "how sure you are that you can do it"}
