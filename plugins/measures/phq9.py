"""PHQ-9, the Patient Health Questionnaire depression scale (Kroenke, Spitzer & Williams 2001).

Free to reproduce, no permission required. The optional tenth question (how difficult the
problems have made things) is not scored and not included. Facts: ``shared/DOMAIN.md`` §2.
"""

from __future__ import annotations

from typing import Any

from plugins.hookspecs import hookimpl
from plugins.instruments import (
    LOINC,
    Band,
    ChoiceOption,
    ChoiceResponse,
    Coding,
    CutOff,
    InstrumentDefinition,
    Item,
    ReliableChange,
    RiskItem,
    ScoreRange,
    Scoring,
)

STEM = "Over the last 2 weeks, how often have you been bothered by any of the following problems?"

#: The four anchors, exactly as published, with their LOINC answer codes.
ANSWERS = ChoiceResponse(options=(
    ChoiceOption(value=0, label="Not at all", code="LA6568-5"),
    ChoiceOption(value=1, label="Several days", code="LA6569-3"),
    ChoiceOption(value=2, label="More than half the days", code="LA6570-1"),
    ChoiceOption(value=3, label="Nearly every day", code="LA6571-9"),
))

PROMPTS = (
    "Little interest or pleasure in doing things",
    "Feeling down, depressed, or hopeless",
    "Trouble falling or staying asleep, or sleeping too much",
    "Feeling tired or having little energy",
    "Poor appetite or overeating",
    "Feeling bad about yourself — or that you are a failure or have let yourself or your "
    "family down",
    "Trouble concentrating on things, such as reading the newspaper or watching television",
    "Moving or speaking so slowly that other people could have noticed? Or the opposite — "
    "being so fidgety or restless that you have been moving around a lot more than usual",
    "Thoughts that you would be better off dead or of hurting yourself in some way",
)

ITEM_IDS = tuple(f"item{n}" for n in range(1, 10))

PHQ9 = InstrumentDefinition(
    id="phq9",
    version="1",
    title="PHQ-9 (Patient Health Questionnaire)",
    description=(f"Nine questions about how often low mood has bothered you. {STEM} "
                 "Higher scores mean more difficulties."),
    items=tuple(Item(id=item_id, prompt=prompt, response=ANSWERS)
                for item_id, prompt in zip(ITEM_IDS, PROMPTS, strict=True)),
    scoring=Scoring(method="sum", total=ITEM_IDS),
    direction="lower_is_better",
    score_range=ScoreRange(min=0, max=27),
    bands=(
        Band(label="minimal", min=0, max=4),
        Band(label="mild", min=5, max=9),
        Band(label="moderate", min=10, max=14),
        Band(label="moderately severe", min=15, max=19),
        Band(label="severe", min=20, max=27),
    ),
    cutoffs=(CutOff(name="caseness", value=10,
                    description="Total of 10 or more: likely depression (recovery = moving "
                                "from 10 or more to below 10).",
                    source="Kroenke 2001; NHS Talking Therapies"),),
    reliable_change=ReliableChange(method="threshold", threshold=6, reliability=0.89,
                                   source="Threshold: NHS Talking Therapies (6 points). "
                                          "Reliability: Cronbach's α = .89, Kroenke 2001."),
    risk_items=(RiskItem(item_id="item9", operator=">", value=0,
                         label="Thoughts of being better off dead or of self-harm"),),
    codings=(
        Coding(system=LOINC, code="44249-1", display="PHQ-9 quick depression assessment panel",
               target="panel"),
        Coding(system=LOINC, code="44261-6", display="Patient Health Questionnaire 9 item "
                                                     "(PHQ-9) total score", target="total"),
    ),
    licence="Free to reproduce, translate, display or distribute; no permission required "
            "(Kroenke, Spitzer & Williams 2001; Pfizer).",
)


@hookimpl
def register_measures() -> list[InstrumentDefinition]:
    return [PHQ9]


@hookimpl
def risk_flag_actions(flag: dict[str, Any]) -> list[str]:
    if flag.get("instrument_id") != PHQ9.id:
        return []
    return [
        "Talk with the client about their answer to question 9 today, in session or by phone.",
        "Follow your service's risk procedure and write down what you agreed together.",
    ]


@hookimpl
def glossary_terms() -> dict[str, str]:
    return {
        "anhedonia": "losing interest or pleasure in things you usually enjoy",
        "psychomotor retardation": "moving or speaking more slowly than usual",
        "suicidal ideation": "thoughts of ending your life",
        "depressive symptoms": "signs of low mood",
    }
