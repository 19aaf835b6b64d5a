"""Frequency count: how often a named behaviour happened in a period.

Whether more is better depends on the behaviour, so there are two definitions:
``frequency_count`` for something the client wants to do more (e.g. problem-solving, going
out) and ``frequency_count_reduce`` for something they want to do less (e.g. checking).
The behaviour's name is the client's words, kept as free text.
"""

from __future__ import annotations

from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import (
    ChoiceOption,
    ChoiceResponse,
    Direction,
    FreeTextResponse,
    InstrumentDefinition,
    IntegerResponse,
    Item,
    ScoreRange,
    Scoring,
)

MAX_COUNT = 1000

#: Period values are its length in days, so counts can be compared across periods.
PERIOD = ChoiceResponse(options=(
    ChoiceOption(value=1, label="Today"),
    ChoiceOption(value=7, label="This week"),
    ChoiceOption(value=30, label="This month"),
))


def _frequency(instrument_id: str, title: str, direction: Direction, aim: str
               ) -> InstrumentDefinition:
    return InstrumentDefinition(
        id=instrument_id,
        version="1",
        title=title,
        description=f"Count how many times something you want to do {aim} happened.",
        items=(
            Item(id="behaviour", prompt="What are you counting?",
                 response=FreeTextResponse(max_length=200)),
            Item(id="count", prompt="How many times did it happen?",
                 response=IntegerResponse(min=0, max=MAX_COUNT, unit="times")),
            Item(id="period", prompt="Over what time?", response=PERIOD),
        ),
        scoring=Scoring(method="sum", total=("count",)),
        direction=direction,
        score_range=ScoreRange(min=0, max=MAX_COUNT),
        licence="Alliance built-in; free to use.",
    )


FREQUENCY_COUNT = _frequency("frequency_count", "Frequency count", "higher_is_better", "more")
FREQUENCY_COUNT_REDUCE = _frequency("frequency_count_reduce", "Frequency count (doing less)",
                                    "lower_is_better", "less")


@hookimpl
def register_measures() -> list[InstrumentDefinition]:
    return [FREQUENCY_COUNT, FREQUENCY_COUNT_REDUCE]
