"""FHIR export: PHQ-9 and GAD-7 items carry their LOINC codes, which each QuestionnaireResponse
item reaches through its linkId (QuestionnaireResponse.item itself has no code element)."""

from __future__ import annotations

import pytest

from alliance.core.compliance.fhir import build_bundle, check_codes, validate_resources
from alliance.plugins.measures.gad7 import GAD7
from alliance.plugins.measures.phq9 import PHQ9
from tests.compliance.helpers import History
from tests.compliance.test_fhir import history_events, resources

INSTRUMENTS = [PHQ9, GAD7]


@pytest.mark.parametrize("version", ["R5", "R4B"])
def test_questionnaire_items_carry_loinc_codes_that_responses_link_to(version: str) -> None:
    h = History()
    bundle = build_bundle(h.client, history_events(h), instruments=INSTRUMENTS, fhir_version=version)
    assert validate_resources(bundle) == []
    assert check_codes(bundle, instruments=INSTRUMENTS) == []
    questionnaires = {q["title"]: q for q in resources(bundle, "Questionnaire")}
    phq9 = questionnaires[PHQ9.title]
    codes = {item["linkId"]: [c["code"] for c in item.get("code", [])] for item in phq9["item"]}
    assert codes["item1"] == ["44250-9"] and codes["item9"] == ["44260-8"] and codes["item10"] == ["69722-7"]
    gad7 = questionnaires[GAD7.title]
    assert {item["linkId"]: item["code"][0]["code"] for item in gad7["item"]}["item2"] == "68509-9"
    for response in resources(bundle, "QuestionnaireResponse"):
        linked = next(q for q in resources(bundle, "Questionnaire")
                      if response["questionnaire"] == f"{q['url']}|{q['version']}")
        known = {item["linkId"] for item in linked["item"]}
        scored = [item for item in response["item"] if item["linkId"].startswith("item")]
        assert scored and all(item["linkId"] in known for item in scored)
        assert all("code" not in item for item in response["item"])
