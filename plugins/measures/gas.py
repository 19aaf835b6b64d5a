"""Goal Attainment Scaling (Kiresuk & Sherman 1968): one rating per goal, −2 … +2.

Each goal carries its own five-level scale (the goal domain, issue 3); a measurement records
the level reached for the goal(s) it serves. A single goal's T-score is ``50 + 10·level``;
the summary over several goals is :func:`plugins.instruments.gas_t_score` (ρ = 0.3), which
projections compute from the stored levels. Scored by this plugin's ``score_measure`` hook:
the built-in example of custom scoring.
"""

from __future__ import annotations

from typing import Any

from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import (
    Band,
    ChoiceOption,
    ChoiceResponse,
    InstrumentDefinition,
    Item,
    ScoreRange,
    Scoring,
    Subscale,
    gas_t_score,
)

LEVELS = (
    (-2, "Much less than expected"),
    (-1, "Somewhat less than expected"),
    (0, "The expected outcome"),
    (1, "Somewhat more than expected"),
    (2, "Much more than expected"),
)

GAS = InstrumentDefinition(
    id="gas",
    version="1",
    title="Goal Attainment Scaling",
    description=("How far you got with this goal, on the five steps you and your clinician "
                 "wrote for it: 0 is what you expected to reach, below 0 is less, above 0 "
                 "is more. Many people start at −1."),
    items=(Item(id="level", prompt="Which step best describes where you are with this goal now?",
                response=ChoiceResponse(options=tuple(ChoiceOption(value=v, label=label)
                                                      for v, label in LEVELS))),),
    scoring=Scoring(method="custom", total=("level",),
                    subscales=(Subscale(id="t_score", title="T-score for this goal (50 = "
                                        "expected outcome)", item_ids=("level",)),)),
    direction="higher_is_better",
    score_range=ScoreRange(min=-2, max=2),
    bands=tuple(Band(label=label.lower(), min=v, max=v) for v, label in LEVELS),
    licence="Method in the public domain (Kiresuk & Sherman 1968).",
    per_goal=True,  # a level of one goal: never counted for another
)


@hookimpl
def register_measures() -> list[InstrumentDefinition]:
    return [GAS]


@hookimpl
def score_measure(definition: InstrumentDefinition, answers: dict[str, Any]
                  ) -> dict[str, float] | None:
    if definition.id != GAS.id:
        return None
    level = float(answers["level"])
    return {"total": level, "t_score": gas_t_score([level])}


@hookimpl
def glossary_terms() -> dict[str, str]:
    return {
        "goal attainment scaling": "rating how far you got with a goal",
        "t-score": "a score where 50 means you reached what you expected",
    }
