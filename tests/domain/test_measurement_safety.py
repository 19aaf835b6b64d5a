"""Scoring belongs to Alliance and a risk answer is never missed, through the domain API.

Given events / when a RecordMeasurement (answers only) / then the events the decider records:
scores, band and risk come from the installed instrument handed to the decider, never from
the caller, and a flag raised by a measurement is raised by role ``system`` naming it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance.core.client import (
    SYSTEM_ACTOR_ID,
    MeasurementRecorded,
    RecordMeasurement,
    ReportedBy,
    RiskFlagRaised,
    decide_client,
    informant_of,
    risk_flag_id_for,
    upcast_measurement_v1,
)
from alliance.core.consent import ConsentScope
from alliance.core.errors import ConfigurationError
from alliance.core.identity import Role
from alliance.plugins.instruments import ChoiceResponse, InstrumentDefinition, IntegerResponse, NumberResponse
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.domain.helpers import CLIENT, CLINICIAN, PROXY, T0, cmd, enrolled, fold_client, new_id, raises

REGISTRY = InstrumentRegistry.from_plugin_manager(get_plugin_manager())
SELF = ReportedBy(informant="self", channel="app")


def decide(events: list[Any], command: RecordMeasurement) -> list[Any]:
    return decide_client(command, fold_client(events), scorer=REGISTRY.score)


def record(answers: dict[str, Any], *, instrument: str = "phq9", actor: Any = CLIENT,
           reported_by: ReportedBy = SELF, **fields: Any) -> RecordMeasurement:
    return cmd(RecordMeasurement, actor, measurement_id=new_id(), instrument_id=instrument, answers=answers,
               reported_by=reported_by, observed_at=T0 - timedelta(hours=1), **fields)


def phq9(item9: int, others: int = 0) -> dict[str, int]:
    return {**{f"item{n}": others for n in range(1, 9)}, "item9": item9}


GIVEN = enrolled(ConsentScope.MEASUREMENT)


# --- observed failure 2: the domain trusted the caller's scores ------------------------------

def test_domain_command_with_item9_at_3_raises_a_flag_by_system_naming_the_measurement() -> None:
    # when: answers only, through the domain API (no HTTP route scoring first)
    command = record(phq9(item9=3))
    recorded, flag = decide(GIVEN, command)
    # then: scored by the instrument, and flagged by the system, not by the client
    assert isinstance(recorded, MeasurementRecorded)
    assert recorded.scores == {"total": 3.0} and recorded.band == "minimal"
    assert recorded.risk_items == ("item9",)
    assert flag == RiskFlagRaised(flag_id=risk_flag_id_for(command.measurement_id), source="measurement",
                                  measurement_id=command.measurement_id, items=("item9",), reason="risk_answer",
                                  raised_by=SYSTEM_ACTOR_ID, raised_by_role=Role.SYSTEM, raised_at=T0)


def test_caller_scores_band_and_risk_items_cannot_be_given() -> None:
    # given: what a caller once could send: all answers at 3 "scored" 0 minimal with no risk
    bogus = {"scores": {"total": 0.0}, "band": "minimal", "risk_items": (), "fingerprint": "x"}
    for name, value in bogus.items():
        with pytest.raises(TypeError):
            record(phq9(item9=3, others=3), **{name: value})
    # and decoded from JSON (a plugin or import building commands from data) the fields do not exist
    raw = msgspec.json.encode({**msgspec.to_builtins(record(phq9(3, 3))), **bogus})
    command = msgspec.json.decode(raw, type=RecordMeasurement)
    recorded, flag = decide(GIVEN, command)
    assert recorded.scores == {"total": 27.0} and recorded.band == "severe"
    assert isinstance(flag, RiskFlagRaised) and flag.items == ("item9",)


def test_a_measurement_is_never_decided_without_the_installed_instruments() -> None:
    with pytest.raises(ConfigurationError) as refused:
        decide_client(record(phq9(0)), fold_client(GIVEN))
    assert refused.value.code == "instruments_unavailable"


def test_unknown_instrument_and_bad_answers_are_refused_by_the_decider() -> None:
    raises("instrument_not_found", decide, GIVEN, record({"a": 1}, instrument="nope"))
    raises("invalid_answer", decide, GIVEN, record(phq9(item9=4)))
    raises("unknown_item", decide, GIVEN, record({**phq9(0), "item11": 1}))


# --- observed failure 1 (domain side): a skipped risk question -------------------------------

def test_item9_unanswered_is_recorded_incomplete_and_flagged_for_follow_up() -> None:
    answers = {f"item{n}": 2 for n in range(1, 9)}  # 16 without item 9
    command = record(answers)
    recorded, flag = decide(GIVEN, command)
    assert recorded.incomplete == "risk_item_unanswered"
    assert recorded.unanswered == ("item9", "item10")
    assert recorded.scores == {"total": 16.0}
    assert recorded.band is None  # a partial total never reads as "moderately severe"
    assert not recorded.prorated
    assert flag.reason == "risk_item_unanswered" and flag.items == ("item9",)
    assert (flag.raised_by, flag.raised_by_role) == (SYSTEM_ACTOR_ID, Role.SYSTEM)
    assert fold_client([*GIVEN, recorded, flag]).open_risk_flags == {flag.flag_id}


def test_other_required_items_still_need_an_answer_without_a_prorating_rule() -> None:
    raises("invalid_answer", decide, GIVEN, record({k: v for k, v in phq9(0).items() if k != "item1"}))


# --- observed failure 6 (schema): who reported it ----------------------------------------------

def test_a_proxy_reports_as_proxy_with_a_relationship_never_as_self() -> None:
    given = [*GIVEN, *decide_proxy()]
    proxy = ReportedBy(informant="proxy", relationship="parent", channel="app")
    [recorded] = decide(given, record(phq9(0), actor=PROXY, reported_by=proxy))
    assert recorded.reported_by == proxy
    raises("informant_mismatch", decide, given, record(phq9(0), actor=PROXY, reported_by=SELF))
    raises("relationship_required", decide, given,
           record(phq9(0), actor=PROXY, reported_by=ReportedBy(informant="proxy", channel="app")))
    raises("channel_required", decide, given, record(phq9(0), reported_by=ReportedBy(informant="self")))
    raises("informant_mismatch", decide, given, record(phq9(0), actor=CLINICIAN, reported_by=SELF))


def decide_proxy() -> list[Any]:
    from alliance.core.client import ProxyAuthorised

    return [ProxyAuthorised(proxy_id=PROXY.id, basis="minor", by=CLINICIAN.id, by_role=Role.CLINICIAN)]


def test_version_1_measurement_upcasts_with_its_informant_and_no_channel() -> None:
    old = {"type": "measurement.recorded", "reported_by": "self", "measurement_id": str(new_id())}
    assert upcast_measurement_v1(old)["reported_by"] == {"informant": "self"}
    assert upcast_measurement_v1({**old, "reported_by": "clinician"})["reported_by"] == {"informant": "clinician"}
    legacy = ReportedBy(informant="self")
    # An old proxy entry read "self": the envelope's actor role tells them apart.
    assert informant_of(legacy, Role.PROXY) == "proxy"
    assert informant_of(legacy, Role.CLIENT) == "self"
    assert informant_of(ReportedBy(informant="self", channel="app"), Role.PROXY) == "self"


# --- property: a risk answer above threshold always yields a flag (domain path) --------------

def _fhir_phq9_registry() -> InstrumentRegistry:
    """Installed instruments as a clinic whose PHQ-9 is a LOINC Questionnaire file would have
    them (the built-in PHQ-9 left out: it owns the same panel code)."""
    import atexit
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from tests.plugins.test_risk_recognition import loinc_phq9

    folder = Path(tempfile.mkdtemp(prefix="alliance-fhir-phq9-"))
    atexit.register(shutil.rmtree, folder, True)
    (folder / "phq9_loinc.json").write_text(json.dumps(loinc_phq9()))
    pm = get_plugin_manager(folder)
    pm.unregister(name="plugins.measures.phq9")
    return InstrumentRegistry.from_plugin_manager(pm)


FHIR_REGISTRY = _fhir_phq9_registry()
#: Every installed instrument with a risk rule: the built-ins, and a PHQ-9 read from a file.
RISK_DEFINITIONS = [(REGISTRY, d) for d in REGISTRY.definitions() if d.risk_items] + [
    (FHIR_REGISTRY, d) for d in FHIR_REGISTRY.definitions() if d.risk_items]


def _values(definition: InstrumentDefinition, item_id: str) -> list[float]:
    response = definition.item(item_id).response
    if isinstance(response, ChoiceResponse):
        return sorted(float(o.value) for o in response.options)
    if isinstance(response, IntegerResponse):
        return [float(v) for v in range(response.min, response.max + 1)]
    assert isinstance(response, NumberResponse)
    return [response.min, (response.min + response.max) / 2, response.max]


@st.composite
def answers_with_a_risk_answer(draw: st.DrawFn, definition: InstrumentDefinition) -> tuple[dict[str, Any], str]:
    """A valid answer set of ``definition`` in which one risk item fires."""
    from tests.plugins.test_properties import valid_answers

    answers = draw(valid_answers(definition))
    risk = draw(st.sampled_from(definition.risk_items))
    from alliance.plugins.instruments import _risk_fired

    firing = [v for v in _values(definition, risk.item_id) if _risk_fired(risk, v)]
    value = draw(st.sampled_from(firing))
    answers[risk.item_id] = int(value) if value.is_integer() else value
    return answers, risk.item_id


def test_installed_instruments_with_a_risk_rule_include_phq9() -> None:
    assert {"phq9", "phq-9-loinc"} <= {d.id for _, d in RISK_DEFINITIONS}


@pytest.mark.parametrize(("registry", "definition"), RISK_DEFINITIONS, ids=lambda d: getattr(d, "key", ""))
def test_any_risk_answer_above_threshold_raises_a_flag_through_the_domain(registry: InstrumentRegistry,
                                                                          definition: InstrumentDefinition) -> None:
    @settings(max_examples=80, deadline=None)
    @given(answers_with_a_risk_answer(definition))
    def check(case: tuple[dict[str, Any], str]) -> None:
        answers, item_id = case
        command = record(answers, instrument=definition.id, instrument_version=definition.version)
        events = decide_client(command, fold_client(GIVEN), scorer=registry.score)
        flags = [e for e in events if isinstance(e, RiskFlagRaised)]
        assert len(flags) == 1 and item_id in flags[0].items
        assert flags[0].raised_by_role is Role.SYSTEM and flags[0].measurement_id == command.measurement_id

    check()
