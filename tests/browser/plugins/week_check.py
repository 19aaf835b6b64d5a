"""A clinic's own one-question check-in with a Dutch translation, loaded through
ALLIANCE_PLUGINS_DIR by the browser tests: the web app's form shows the client's language
where the instrument has it."""

from __future__ import annotations

from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import (
    ChoiceOption,
    ChoiceResponse,
    InstrumentDefinition,
    Item,
    ScoreRange,
    Scoring,
)

WEEK_CHECK = InstrumentDefinition(
    id="week_check", version="1", title="How was your week?",
    description="One question about the past week.",
    items=(Item(id="week", prompt="How was your week overall?",
                translations={"nl": "Hoe was je week in het algemeen?"},
                response=ChoiceResponse(options=(
                    ChoiceOption(value=0, label="Hard", translations={"nl": "Zwaar"}),
                    ChoiceOption(value=1, label="Mixed", translations={"nl": "Wisselend"}),
                    ChoiceOption(value=2, label="Good", translations={"nl": "Goed"})))),),
    scoring=Scoring(method="sum", total=("week",)),
    direction="higher_is_better",
    score_range=ScoreRange(min=0, max=2),
    licence="Test instrument, Apache-2.0.",
)


@hookimpl
def register_measures() -> list[InstrumentDefinition]:
    return [WEEK_CHECK]
