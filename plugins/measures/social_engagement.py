"""Social engagement: how connected the client felt this week, and how often they met people.

The total is the 0–10 connectedness rating (comparable week to week); the number of contacts
is a subscale, because a count and a rating should not be added together.
"""

from __future__ import annotations

from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import (
    InstrumentDefinition,
    IntegerResponse,
    Item,
    ScoreRange,
    Scoring,
    Subscale,
)

SOCIAL_ENGAGEMENT = InstrumentDefinition(
    id="social_engagement",
    version="1",
    title="Social engagement",
    description="How connected to other people you felt this week, and how many times you "
                "spent time with or talked to someone you care about.",
    items=(
        Item(id="connected", prompt="This week, how connected did you feel to other people?",
             response=IntegerResponse(min=0, max=10, min_label="Not at all",
                                      max_label="Very connected")),
        Item(id="contacts",
             prompt="This week, how many times did you spend time with or talk to someone you "
                    "care about (in person, by phone or video)?",
             response=IntegerResponse(min=0, max=100, unit="times")),
    ),
    scoring=Scoring(method="sum", total=("connected",),
                    subscales=(Subscale(id="contacts", title="Times in contact",
                                        item_ids=("contacts",)),)),
    direction="higher_is_better",
    score_range=ScoreRange(min=0, max=10),
    licence="Alliance built-in; free to use.",
)


@hookimpl
def register_measures() -> list[InstrumentDefinition]:
    return [SOCIAL_ENGAGEMENT]


@hookimpl
def glossary_terms() -> dict[str, str]:
    return {"social withdrawal": "spending less time with other people"}
