"""PHQ-9, the Patient Health Questionnaire depression scale (Kroenke, Spitzer & Williams 2001).

Free to reproduce, no permission required. Facts: ``docs/clinical-sources.md`` §1.

Version 2 adds the optional tenth question (how difficult the problems have made things),
recorded and never scored, and the LOINC code of every item (panel 44249-1: items 44250-9 …
44260-8, difficulty 69722-7). Version 1 (nine items, panel and total codes only) stays
installed so measurements recorded with it keep verifying against the definition they used.
"""

from __future__ import annotations

from typing import Any

import msgspec

from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import (
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

#: LOINC codes of items 1–9, in order (panel 44249-1). Item 9, 44260-8, is the risk question.
ITEM_LOINC = ("44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5",
              "44253-3", "44260-8")
DIFFICULTY_ID = "item10"
DIFFICULTY_LOINC = "69722-7"
DIFFICULTY_PROMPT = ("If you checked off any problems, how difficult have these problems made it "
                     "for you to do your work, take care of things at home, or get along with "
                     "other people?")
#: The difficulty question's anchors as published, with their LOINC answer codes.
DIFFICULTY_ANSWERS = ChoiceResponse(options=(
    ChoiceOption(value=0, label="Not difficult at all", code="LA6572-7"),
    ChoiceOption(value=1, label="Somewhat difficult", code="LA6573-5"),
    ChoiceOption(value=2, label="Very difficult", code="LA6575-0"),
    ChoiceOption(value=3, label="Extremely difficult", code="LA6574-3"),
))

PHQ9_V1 = InstrumentDefinition(
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


PHQ9 = msgspec.structs.replace(
    PHQ9_V1,
    version="2",
    description=(f"Nine questions about how often low mood has bothered you. {STEM} "
                 "Higher scores mean more difficulties. A last question asks how difficult "
                 "these problems have made daily life; it is not part of the score."),
    items=(*PHQ9_V1.items,
           Item(id=DIFFICULTY_ID, prompt=DIFFICULTY_PROMPT, response=DIFFICULTY_ANSWERS,
                required=False)),
    codings=(*PHQ9_V1.codings,
             *(Coding(system=LOINC, code=code, target=item_id)
               for item_id, code in zip(ITEM_IDS, ITEM_LOINC, strict=True)),
             Coding(system=LOINC, code=DIFFICULTY_LOINC, target=DIFFICULTY_ID)),
)


@hookimpl
def register_measures() -> list[InstrumentDefinition]:
    return [PHQ9_V1, PHQ9]


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
