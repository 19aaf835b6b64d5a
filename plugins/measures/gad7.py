"""GAD-7, the Generalized Anxiety Disorder scale (Spitzer, Kroenke, Williams & Löwe 2006).

Free to reproduce. The lowest anchor is "Not at all" (a known transcription error writes
"Not at all sure"). Facts: ``docs/clinical-sources.md`` §1.

Version 2 adds the LOINC code of every item (panel 69737-5). Version 1 stays installed so
measurements recorded with it keep verifying against the definition they used.
"""

from __future__ import annotations

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
    ScoreRange,
    Scoring,
)

STEM = "Over the last 2 weeks, how often have you been bothered by the following problems?"

ANSWERS = ChoiceResponse(options=(
    ChoiceOption(value=0, label="Not at all", code="LA6568-5"),
    ChoiceOption(value=1, label="Several days", code="LA6569-3"),
    ChoiceOption(value=2, label="More than half the days", code="LA6570-1"),
    ChoiceOption(value=3, label="Nearly every day", code="LA6571-9"),
))

PROMPTS = (
    "Feeling nervous, anxious, or on edge",
    "Not being able to stop or control worrying",
    "Worrying too much about different things",
    "Trouble relaxing",
    "Being so restless that it is hard to sit still",
    "Becoming easily annoyed or irritable",
    "Feeling afraid, as if something awful might happen",
)

ITEM_IDS = tuple(f"item{n}" for n in range(1, 8))

#: LOINC codes of items 1–7, in order (panel 69737-5). Item 2 is 68509-9: the LOINC mod-10
#: check digit of 68509 is 9 (68509-7 is not a valid LOINC code).
ITEM_LOINC = ("69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7")

GAD7_V1 = InstrumentDefinition(
    id="gad7",
    version="1",
    title="GAD-7 (Generalized Anxiety Disorder scale)",
    description=(f"Seven questions about how often worry and anxiety have bothered you. {STEM} "
                 "Higher scores mean more difficulties."),
    items=tuple(Item(id=item_id, prompt=prompt, response=ANSWERS)
                for item_id, prompt in zip(ITEM_IDS, PROMPTS, strict=True)),
    scoring=Scoring(method="sum", total=ITEM_IDS),
    direction="lower_is_better",
    score_range=ScoreRange(min=0, max=21),
    bands=(
        Band(label="minimal", min=0, max=4),
        Band(label="mild", min=5, max=9),
        Band(label="moderate", min=10, max=14),
        Band(label="severe", min=15, max=21),
    ),
    cutoffs=(
        CutOff(name="caseness", value=8, description="Total of 8 or more (NHS Talking "
               "Therapies caseness).", source="NHS Talking Therapies"),
        CutOff(name="screening", value=10, description="Total of 10 or more: likely "
               "generalised anxiety disorder.", source="Spitzer 2006"),
    ),
    reliable_change=ReliableChange(method="threshold", threshold=4, reliability=0.92,
                                   source="Threshold: NHS Talking Therapies (4 points). "
                                          "Reliability: Cronbach's α = .92, Spitzer 2006."),
    codings=(
        Coding(system=LOINC, code="69737-5", display="Generalized anxiety disorder 7 item "
                                                     "(GAD-7)", target="panel"),
        Coding(system=LOINC, code="70274-6", display="Generalized anxiety disorder 7 item "
                                                     "(GAD-7) total score", target="total"),
    ),
    licence="Free to reproduce, translate, display or distribute; no permission required "
            "(Spitzer et al. 2006; Pfizer).",
)


GAD7 = msgspec.structs.replace(
    GAD7_V1,
    version="2",
    codings=(*GAD7_V1.codings,
             *(Coding(system=LOINC, code=code, target=item_id)
               for item_id, code in zip(ITEM_IDS, ITEM_LOINC, strict=True))),
)


@hookimpl
def register_measures() -> list[InstrumentDefinition]:
    return [GAD7_V1, GAD7]


@hookimpl
def glossary_terms() -> dict[str, str]:
    return {
        "generalised anxiety": "worrying a lot about many things, most days",
        "generalized anxiety": "worrying a lot about many things, most days",
        "somatic symptoms": "signs felt in the body",
        "hypervigilance": "being on the lookout for danger all the time",
    }
