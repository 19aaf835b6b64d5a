"""Risk can never be missed by where a definition came from (observed failure 1).

A LOINC PHQ-9 Questionnaire dropped into the plugins directory, with none of Alliance's own
extensions, gets PHQ-9's item 9 risk rule; a Questionnaire Alliance cannot classify must say
which items are risk items or that it has none; a panel code belongs to one instrument.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from alliance.core.errors import ConfigurationError
from alliance.plugins.fhir_questionnaire import NO_RISK_ITEMS, PRORATING, RISK_ABOVE
from alliance.plugins.instruments import LOINC, Coding, Prorating, RiskItem
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.plugins.helpers import MeasuresPlugin, registry_with, simple_definition

PHQ9_ITEMS = ("44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8")
ANSWERS = (("LA6568-5", "Not at all"), ("LA6569-3", "Several days"), ("LA6570-1", "More than half the days"),
           ("LA6571-9", "Nearly every day"))


def loinc_phq9(*, panel: bool = True, item_codes: bool = True, link_prefix: str = "/",
               extra_items: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """A PHQ-9 Questionnaire as LOINC-based form tools write it: no Alliance extensions, and
    FHIR's ``required`` left out (so every item is optional)."""
    def option(index: int, code: str, display: str) -> dict[str, Any]:
        return {"valueCoding": {"system": LOINC, "code": code, "display": display},
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/ordinalValue", "valueDecimal": index}]}

    items = []
    for n, code in enumerate(PHQ9_ITEMS, start=1):
        item: dict[str, Any] = {"linkId": f"{link_prefix}{code}" if link_prefix is not None else f"q{n}",
                                "type": "choice", "text": f"Question {n}",
                                "answerOption": [option(i, c, d) for i, (c, d) in enumerate(ANSWERS)]}
        if item_codes:
            item["code"] = [{"system": LOINC, "code": code}]
        items.append(item)
    resource: dict[str, Any] = {"resourceType": "Questionnaire", "id": "phq-9-loinc", "version": "2.0",
                                "status": "active", "title": "PHQ-9 quick depression assessment panel",
                                "item": [{"linkId": "/44249-1", "type": "group", "item": [*items, *extra_items]}]}
    if panel:
        resource["code"] = [{"system": LOINC, "code": "44249-1", "display": "PHQ-9 quick depression assessment panel"}]
    return resource


def start(tmp_path: Path, resource: dict[str, Any], name: str = "phq9_loinc.json", *,
          builtin_phq9: bool = False) -> InstrumentRegistry:
    """Start-up with ``resource`` in the plugins directory. Without the built-in PHQ-9 unless
    asked: with it, a second PHQ-9 panel code is refused (see the duplicate test), so a clinic
    whose PHQ-9 is its own file is modelled by leaving the built-in out."""
    (tmp_path / name).write_text(json.dumps(resource))
    pm = get_plugin_manager(tmp_path)
    if not builtin_phq9:
        pm.unregister(name="plugins.measures.phq9")
    return InstrumentRegistry.from_plugin_manager(pm)


def refused(tmp_path: Path, resource: dict[str, Any], name: str, *, builtin_phq9: bool = False
            ) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as error:
        start(tmp_path, resource, name, builtin_phq9=builtin_phq9)
    assert name in error.value.message  # start-up names the file
    return error.value


def answers(item9: int | None, others: int = 2) -> dict[str, int]:
    given = {f"/{code}": others for code in PHQ9_ITEMS[:8]}
    return given if item9 is None else {**given, "/44260-8": item9}


# --- given a LOINC PHQ-9 with no extension, item 9 is a risk item -------------------------------

def test_loinc_phq9_file_without_extensions_gets_item9_as_its_risk_item(tmp_path: Path) -> None:
    registry = start(tmp_path, loinc_phq9())
    definition = registry.get("phq-9-loinc")
    assert definition.risk_items == (RiskItem(item_id="/44260-8", operator=">", value=0,
                                              label="Thoughts of being better off dead or of self-harm"),)
    assert registry.score("phq-9-loinc", answers(item9=1)).risk_items == ("/44260-8",)
    assert registry.score("phq-9-loinc", answers(item9=0)).risk_items == ()


@pytest.mark.parametrize("variant", [
    {"panel": False},                        # recognised by the item-9 code alone
    {"item_codes": False},                   # by the panel, the item by its LOINC link id
    {"panel": False, "item_codes": False},   # by the LOINC link id alone
])
def test_phq9_is_recognised_whatever_the_file_carries(tmp_path: Path, variant: dict[str, bool]) -> None:
    registry = start(tmp_path, loinc_phq9(**variant))
    assert registry.score("phq-9-loinc", answers(item9=3)).risk_items == ("/44260-8",)


def test_a_looser_declared_threshold_on_item9_is_replaced_by_phq9s_rule(tmp_path: Path) -> None:
    resource = loinc_phq9()
    resource["item"][0]["item"][8]["extension"] = [{"url": RISK_ABOVE, "valueDecimal": 2}]
    registry = start(tmp_path, resource)
    assert registry.score("phq-9-loinc", answers(item9=1)).risk_items == ("/44260-8",)


def test_phq9_by_panel_with_item9_unidentifiable_is_refused_naming_the_file(tmp_path: Path) -> None:
    error = refused(tmp_path, loinc_phq9(item_codes=False, link_prefix=None), "phq9_plain_links.json")
    assert "44260-8" in error.message


def test_phq9_declaring_no_risk_items_is_refused(tmp_path: Path) -> None:
    resource = loinc_phq9()
    resource["extension"] = [{"url": NO_RISK_ITEMS, "valueBoolean": True}]
    error = refused(tmp_path, resource, "phq9_no_risk.json")
    assert "no-risk-items" in error.message


# --- a Questionnaire Alliance cannot classify must declare its risk items or that it has none ---

def unclassified() -> dict[str, Any]:
    option = [{"valueInteger": 0}, {"valueInteger": 1}]
    return {"resourceType": "Questionnaire", "id": "sleep-check", "version": "1", "status": "active",
            "item": [{"linkId": "a", "type": "choice", "text": "Slept badly?", "answerOption": option},
                     {"linkId": "b", "type": "choice", "text": "Woke early?", "answerOption": option}]}


def test_an_unclassifiable_questionnaire_without_a_risk_declaration_is_refused(tmp_path: Path) -> None:
    error = refused(tmp_path, unclassified(), "sleep_check.json")
    assert "risk-above" in error.message and "no-risk-items" in error.message


def test_declaring_no_risk_items_or_a_risk_item_is_accepted(tmp_path: Path) -> None:
    none = {**unclassified(), "extension": [{"url": NO_RISK_ITEMS, "valueBoolean": True}]}
    assert start(tmp_path, none, "sleep_check.json").get("sleep-check").risk_items == ()
    marked = unclassified()
    marked["id"] = "sleep-check-2"
    marked["item"][1]["extension"] = [{"url": RISK_ABOVE, "valueDecimal": 0}]
    registry = start(tmp_path, marked, "sleep_check_2.json")
    assert registry.score("sleep-check-2", {"a": 0, "b": 1}).risk_items == ("b",)


# --- item 9 unanswered: incomplete, flagged, never "moderately severe" --------------------------

def test_loinc_phq9_with_item9_unanswered_is_incomplete_and_flagged(tmp_path: Path) -> None:
    registry = start(tmp_path, loinc_phq9())
    scored = registry.score("phq-9-loinc", answers(item9=None))  # 8 items at 2: 16
    assert scored.incomplete == "risk_item_unanswered"
    assert scored.risk_unanswered == ("/44260-8",)
    assert scored.band is None  # today's main said "moderately severe" with nothing else
    assert not scored.prorated


def test_a_declared_prorating_rule_completes_the_total_and_says_so(tmp_path: Path) -> None:
    resource = loinc_phq9()
    resource["extension"] = [{"url": PRORATING, "valueInteger": 1}]
    for item in resource["item"][0]["item"]:
        item["required"] = True
    registry = start(tmp_path, resource)
    assert registry.get("phq-9-loinc").prorating == Prorating(max_missing=1)
    partial = {k: v for k, v in answers(item9=0, others=1).items() if k != "/44250-9"}  # 7 of 8 at 1, item 9 at 0
    scored = registry.score("phq-9-loinc", partial)
    assert scored.prorated and scored.scores["total"] == 8.0  # 7 × 9 / 8 = 7.875, rounded half up
    assert scored.incomplete is None
    two_missing = {k: v for k, v in partial.items() if k != "/44255-8"}
    with pytest.raises(Exception) as too_many:
        registry.score("phq-9-loinc", two_missing)
    assert getattr(too_many.value, "code", None) == "invalid_answer"
    # item 9 skipped as well: prorated total, still incomplete and flagged
    scored = registry.score("phq-9-loinc", answers(item9=None, others=1))
    assert scored.prorated and scored.scores["total"] == 9.0 and scored.incomplete == "risk_item_unanswered"
    # item 9 and another item skipped: more than the rule allows, yet the set is never refused
    # for the skipped risk question: recorded as a partial total, incomplete and flagged
    scored = registry.score("phq-9-loinc", {k: v for k, v in answers(item9=None, others=1).items()
                                            if k != "/44250-9"})
    assert not scored.prorated and scored.scores["total"] == 7.0 and scored.band is None
    assert scored.incomplete == "risk_item_unanswered" and scored.risk_unanswered == ("/44260-8",)


def test_the_difficulty_question_of_a_loinc_phq9_is_recorded_not_scored(tmp_path: Path) -> None:
    difficulty = {"linkId": "/69722-7", "type": "choice", "text": "How difficult?",
                  "code": [{"system": LOINC, "code": "69722-7"}],
                  "answerOption": [{"valueCoding": {"system": LOINC, "code": c}, "extension": [
                      {"url": "http://hl7.org/fhir/StructureDefinition/ordinalValue", "valueDecimal": i}]}
                      for i, c in enumerate(("LA6572-7", "LA6573-5", "LA6575-0", "LA6574-3"))]}
    registry = start(tmp_path, loinc_phq9(extra_items=(difficulty,)))
    definition = registry.get("phq-9-loinc")
    assert definition.score_range.max == 27
    scored = registry.score("phq-9-loinc", {**answers(item9=0, others=1), "/69722-7": 3})
    assert scored.scores["total"] == 8.0 and scored.answers["/69722-7"] == 3


# --- a panel code registered twice is a start-up error ----------------------------------------

def test_a_panel_code_registered_by_two_instruments_is_a_start_up_error(tmp_path: Path) -> None:
    # The built-in PHQ-9 owns LOINC 44249-1; a clinic's file claiming it too is refused.
    error = refused(tmp_path, {**loinc_phq9(), "id": "phq9-copy"}, "phq9_copy.json", builtin_phq9=True)
    assert "44249-1" in error.message and "phq9" in error.message
    panel = Coding(system="https://clinic.example/codes", code="C1", target="panel")
    with pytest.raises(ConfigurationError) as twice:
        registry_with(clinic_a=MeasuresPlugin(simple_definition("scale_a", codings=(panel,))),
                      clinic_b=MeasuresPlugin(simple_definition("scale_b", codings=(panel,))))
    assert "C1" in twice.value.message and "clinic_b" in twice.value.message and "scale_a" in twice.value.message
    # two versions of one instrument share their panel code
    both = registry_with(clinic_a=MeasuresPlugin(simple_definition("scale_a", codings=(panel,)),
                                                 simple_definition("scale_a", "2", codings=(panel,))))
    assert both.get("scale_a").version == "2"


def test_a_python_plugin_asking_phq9_item9_without_its_risk_rule_is_refused() -> None:
    coded = simple_definition("my_phq", codings=(Coding(system=LOINC, code="44260-8", target="b"),))
    with pytest.raises(ConfigurationError) as error:
        registry_with(clinic_a=MeasuresPlugin(coded))
    assert "clinic_a" in error.value.message and "44260-8" in error.value.message
    fixed = msgspec.structs.replace(coded, risk_items=(RiskItem(item_id="b", operator=">", value=0),))
    assert registry_with(clinic_a=MeasuresPlugin(fixed)).score("my_phq", {"a": 0, "b": 1}).risk_items == ("b",)
