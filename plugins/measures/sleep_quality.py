"""Sleep quality: one 0–10 rating of the past week's sleep, plus optional hours slept.

Why a single 0–10 item: it is quick enough to answer every week, and a single-item 0–10
sleep quality rating has been validated against longer questionnaires (Snyder et al. 2018,
*J Clin Sleep Med* 14(11):1849–57, the Sleep Quality Scale), whose bands we use: 0 terrible,
1–3 poor, 4–6 fair, 7–9 good, 10 excellent. The wording here is Alliance's own. Hours slept
is kept as context and not scored.
"""

from __future__ import annotations

from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import (
    Band,
    InstrumentDefinition,
    IntegerResponse,
    Item,
    NumberResponse,
    ScoreRange,
    Scoring,
)

SLEEP_QUALITY = InstrumentDefinition(
    id="sleep_quality",
    version="1",
    title="Sleep quality",
    description="How well you have slept over the past week, from 0 (terrible) to 10 "
                "(excellent), and roughly how many hours a night.",
    items=(
        Item(id="quality", prompt="Over the past 7 days, how would you rate your sleep overall?",
             response=IntegerResponse(min=0, max=10, min_label="Terrible",
                                      max_label="Excellent")),
        Item(id="hours", prompt="About how many hours did you sleep on a usual night?",
             response=NumberResponse(min=0, max=24, unit="hours"), required=False),
    ),
    scoring=Scoring(method="sum", total=("quality",)),
    direction="higher_is_better",
    score_range=ScoreRange(min=0, max=10),
    bands=(
        Band(label="terrible", min=0, max=0),
        Band(label="poor", min=1, max=3),
        Band(label="fair", min=4, max=6),
        Band(label="good", min=7, max=9),
        Band(label="excellent", min=10, max=10),
    ),
    licence="Alliance wording; bands after Snyder et al. 2018.",
)


@hookimpl
def register_measures() -> list[InstrumentDefinition]:
    return [SLEEP_QUALITY]


@hookimpl
def glossary_terms() -> dict[str, str]:
    return {
        "insomnia": "trouble getting to sleep or staying asleep",
        "sleep hygiene": "habits that help you sleep",
        "sleep onset latency": "how long it takes you to fall asleep",
    }
