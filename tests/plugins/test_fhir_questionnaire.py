"""A FHIR Questionnaire JSON file in the plugins directory becomes a working instrument."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from alliance.core.errors import ConfigurationError
from alliance.plugins.fhir_questionnaire import QuestionnaireError, questionnaire_to_definition
from alliance.plugins.instruments import ChoiceResponse, reliable_change
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager

FIXTURE = Path(__file__).parent / "fixtures" / "wellbeing_check.json"


def test_questionnaire_file_is_a_working_instrument(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "wellbeing_check.json")
    registry = InstrumentRegistry.from_plugin_manager(get_plugin_manager(tmp_path))
    definition = registry.get("wellbeing-check")
    assert definition.version == "2024.1"
    assert registry.plugin_of("wellbeing-check", "2024.1") == "plugins_dir:wellbeing_check.json"
    assert [i.id for i in definition.items] == ["sleep", "worry", "safe", "comment"]
    assert definition.items[0].translations == {"nl": "Heb je slecht geslapen?"}
    sleep = definition.items[0].response
    assert isinstance(sleep, ChoiceResponse)
    assert [(o.value, o.label) for o in sleep.options] == [(0, "No"), (1, "Some nights"), (2, "Most nights")]
    assert (definition.score_range.min, definition.score_range.max) == (0, 6)
    assert definition.licence.startswith("Clinic Example")

    result = registry.score("wellbeing-check", {"sleep": 2, "worry": 1, "safe": 0, "comment": "ok"})
    assert result.scores == {"total": 3}
    assert result.band == "struggling"
    assert result.free_text == {"comment": "ok"}
    assert result.risk_items == ()
    assert registry.score("wellbeing-check", {"sleep": 0, "worry": 0, "safe": 1}).risk_items == ("safe",)
    assert registry.score("wellbeing-check", {"sleep": 0, "worry": 1, "safe": 1}).band == "doing well"
    assert definition.cutoff("follow_up").value == 3
    assert reliable_change(definition, 5, 3).status == "improved"


def test_questionnaire_with_bad_bands_fails_start_up_naming_the_file(tmp_path: Path) -> None:
    resource = json.loads(FIXTURE.read_text())
    resource["extension"][2]["extension"][2]["valueDecimal"] = 5  # struggling 3–5, range is 0–6
    (tmp_path / "bad_bands.json").write_text(json.dumps(resource))
    with pytest.raises(ConfigurationError) as refused:
        InstrumentRegistry.from_plugin_manager(get_plugin_manager(tmp_path))
    assert "plugins_dir:bad_bands.json" in refused.value.message
    assert "do not cover" in refused.value.message


def test_unscorable_questionnaire_fails_start_up_naming_the_file(tmp_path: Path) -> None:
    resource = json.loads(FIXTURE.read_text())
    del resource["item"][1]["item"][0]["answerOption"][0]["valueCoding"]["extension"]
    (tmp_path / "no_weights.json").write_text(json.dumps(resource))
    with pytest.raises(ConfigurationError) as refused:
        get_plugin_manager(tmp_path)
    assert "no_weights.json" in refused.value.message
    assert "ordinal value" in refused.value.message


def test_questionnaire_needs_a_version_and_a_questionnaire() -> None:
    resource = json.loads(FIXTURE.read_text())
    del resource["version"]
    with pytest.raises(QuestionnaireError, match="version"):
        questionnaire_to_definition(resource)
    with pytest.raises(QuestionnaireError, match="resourceType"):
        questionnaire_to_definition({"resourceType": "Patient"})


def test_fixture_is_a_valid_fhir_r4b_questionnaire() -> None:
    from fhir.resources.R4B.questionnaire import Questionnaire

    Questionnaire.model_validate(json.loads(FIXTURE.read_text()))
