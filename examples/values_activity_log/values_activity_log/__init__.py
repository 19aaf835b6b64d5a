"""A values-based activity log: an example of a clinic's own Alliance measure.

In behavioural activation and ACT, clients plan and log activities that serve what matters
to them. Each entry records the activity in the client's words, which area of life it
serves, how long it took, and how much it felt in line with their values (0–10, the total).
"""

from __future__ import annotations

from typing import Any

from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import (
    ChoiceOption,
    ChoiceResponse,
    FreeTextResponse,
    InstrumentDefinition,
    IntegerResponse,
    Item,
    ReliableChange,
    ScoreRange,
    Scoring,
    Subscale,
)

#: Areas of life; the values are codes, not scores (this item is not in the total).
VALUE_AREAS = ChoiceResponse(options=(
    ChoiceOption(value=1, label="Family and relationships"),
    ChoiceOption(value=2, label="Friends and community"),
    ChoiceOption(value=3, label="Work, study or volunteering"),
    ChoiceOption(value=4, label="Health and body"),
    ChoiceOption(value=5, label="Fun, rest and creativity"),
    ChoiceOption(value=6, label="Learning and growing"),
))

VALUES_ACTIVITY_LOG = InstrumentDefinition(
    id="values_activity_log",
    version="1.0",
    title="Values-based activity log",
    description="Write down something you did, which part of your life it was for, and how "
                "much it felt like living the way you want to (0 = not at all, 10 = completely).",
    items=(
        Item(id="activity", prompt="What did you do?", response=FreeTextResponse(max_length=500),
             translations={"nl": "Wat heb je gedaan?"}),
        Item(id="value_area", prompt="Which part of your life was it for?", response=VALUE_AREAS),
        Item(id="minutes", prompt="About how many minutes did it take?",
             response=IntegerResponse(min=0, max=1440, unit="minutes"), required=False),
        Item(id="in_line", prompt="How much did it feel in line with what matters to you?",
             response=IntegerResponse(min=0, max=10, min_label="Not at all",
                                      max_label="Completely"),
             translations={"nl": "Hoeveel paste het bij wat voor jou belangrijk is?"}),
    ),
    scoring=Scoring(method="sum", total=("in_line",),
                    subscales=(Subscale(id="minutes", title="Minutes spent",
                                        item_ids=("minutes",)),)),
    direction="higher_is_better",
    score_range=ScoreRange(min=0, max=10),
    reliable_change=ReliableChange(method="threshold", threshold=3,
                                   source="Clinic's own rule of thumb (3 points)."),
    licence="Example code, Apache-2.0.",
)


@hookimpl
def register_measures() -> list[InstrumentDefinition]:
    return [VALUES_ACTIVITY_LOG]


@hookimpl
def glossary_terms() -> dict[str, str]:
    return {"behavioural activation": "planning things to do that lift your mood"}


@hookimpl
def risk_flag_actions(flag: dict[str, Any]) -> list[str]:
    return []
