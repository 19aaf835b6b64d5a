"""Every hook: a ``test_hook_<name>`` test here, and documented with its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from alliance.plugins import hookspecs
from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import InstrumentDefinition, ScoreRange, Scoring
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.plugins.helpers import MeasuresPlugin, manager_with, simple_definition

ROOT = Path(__file__).resolve().parents[2]


def hook_names() -> list[str]:
    return sorted(name for name, fn in vars(hookspecs).items()
                  if callable(fn) and hasattr(fn, "alliance_spec"))


def rendered_signature(name: str) -> str:
    """``name(arg: type, …) -> type`` from the spec, annotations exactly as written."""
    signature = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
    return f"{name}({params}) -> {signature.return_annotation}"


def test_every_hook_has_a_test() -> None:
    tests = set(re.findall(r"^def test_hook_(\w+)\(", Path(__file__).read_text(), re.M))
    assert set(hook_names()) <= tests, set(hook_names()) - tests


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    documented = re.findall(r"^### `(\w+)(\(.*)`$", (ROOT / "docs" / "plugins.md").read_text(), re.M)
    headings = {name: name + rest for name, rest in documented}
    assert sorted(headings) == hook_names()
    for name in hook_names():
        assert headings[name] == rendered_signature(name)


def test_every_spec_has_a_docstring_and_an_empty_body() -> None:
    for name in hook_names():
        spec = getattr(hookspecs, name)
        assert inspect.getdoc(spec)
        body = inspect.getsource(spec).split('"""')[-1].strip()
        assert body == "", name


def test_hook_register_measures() -> None:
    pm = manager_with(clinic_a=MeasuresPlugin(simple_definition()))
    results = pm.hook.register_measures()
    ids = {d.id for batch in results for d in batch}
    assert {"phq9", "gad7", "gas", "clinic_scale"} <= ids


def test_hook_score_measure() -> None:
    class Doubling:
        @hookimpl
        def register_measures(self) -> list[InstrumentDefinition]:
            return [simple_definition("doubling", scoring=Scoring(method="custom"),
                                      score_range=ScoreRange(min=0, max=20), bands=())]

        @hookimpl
        def score_measure(self, answers: dict[str, Any]) -> dict[str, float]:  # a subset of the spec's args
            return {"total": 2 * (answers["a"] + answers["b"])}

    registry = InstrumentRegistry.from_plugin_manager(manager_with(doubling=Doubling()))
    assert registry.score("doubling", {"a": 2, "b": 3}).scores == {"total": 10}
    # The built-in GAS answers for its own definition only.
    gas_plugin = get_plugin_manager().get_plugin("plugins.measures.gas")
    assert gas_plugin.score_measure(simple_definition(), {"level": 1}) is None


def test_hook_risk_flag_actions() -> None:
    class Clinic:
        @hookimpl
        def risk_flag_actions(self, flag: dict[str, Any]) -> list[str]:
            return [f"Call the duty clinician about {flag['instrument_id']}."]

    pm = manager_with(clinic=Clinic())
    flag = {"tenant_id": "t1", "instrument_id": "phq9", "instrument_version": "1", "item_ids": ["item9"],
            "goal_ids": []}
    actions = [line for lines in pm.hook.risk_flag_actions(flag=flag) for line in lines]
    assert "Call the duty clinician about phq9." in actions
    assert any("question 9" in line for line in actions)  # the built-in PHQ-9 suggestion
    other = {**flag, "instrument_id": "gad7"}
    assert [line for lines in pm.hook.risk_flag_actions(flag=other) for line in lines] == [
        "Call the duty clinician about gad7."]


def test_hook_glossary_terms() -> None:
    class Clinic:
        @hookimpl
        def glossary_terms(self) -> dict[str, str]:
            return {"psychoeducation": "learning how your mind and body work"}

    merged: dict[str, str] = {}
    for terms in manager_with(clinic=Clinic()).hook.glossary_terms():
        merged.update(terms)
    assert merged["anhedonia"] == "losing interest or pleasure in things you usually enjoy"
    assert merged["psychoeducation"] == "learning how your mind and body work"


@pytest.mark.parametrize("tenant", ["clinic-north", "elsewhere"])
def test_hook_crisis_information(tenant: str) -> None:
    class Clinic:
        @hookimpl
        def crisis_information(self, tenant_id: str) -> str | None:
            return "Call 0800 123 456, day or night." if tenant_id == "clinic-north" else None

    assert get_plugin_manager().hook.crisis_information(tenant_id=tenant) is None
    answer = manager_with(clinic=Clinic()).hook.crisis_information(tenant_id=tenant)
    assert answer == ("Call 0800 123 456, day or night." if tenant == "clinic-north" else None)


def test_hook_register_notification_channels() -> None:
    from alliance.core.errors import ConfigurationError
    from alliance.core.settings import Settings
    from alliance.plugins.channels.base import OutgoingMessage
    from alliance.plugins.channels.registry import ChannelRegistry

    class Pager:
        name = "pager"
        address_kind = None

        async def send(self, message: OutgoingMessage) -> None:
            return None

    class Clinic:
        @hookimpl
        def register_notification_channels(self) -> list[Any]:  # a subset of the spec's args
            return [Pager()]

    # The built-in email channel registers only when an SMTP host is set.
    assert ChannelRegistry.from_plugin_manager(get_plugin_manager(), settings=Settings()).names == []
    smtp = Settings(smtp_host="127.0.0.1", smtp_tls="none")
    assert ChannelRegistry.from_plugin_manager(manager_with(clinic=Clinic()), settings=smtp).names == [
        "email", "pager"]

    class Twin(Clinic):
        pass

    class Broken:
        @hookimpl
        def register_notification_channels(self) -> list[Any]:
            return [object()]

    for plugins, named in (({"clinic": Clinic(), "twin": Twin()}, "twin"), ({"broken": Broken()}, "broken")):
        with pytest.raises(ConfigurationError) as refused:
            ChannelRegistry.from_plugin_manager(manager_with(**plugins), settings=smtp)
        assert f"Plugin '{named}'" in str(refused.value)


def test_hook_expected_response() -> None:
    from datetime import UTC, datetime, timedelta
    from uuid import uuid4

    from alliance.core.alerts.follower import plugin_bands
    from alliance.core.alerts.rules import SeriesFacts, evaluate
    from alliance.plugins.expected_response import ResponseBand

    class Curve:
        @hookimpl
        def expected_response(self, instrument_id: str, baseline: float,
                              administration_index: int) -> ResponseBand | None:  # a subset of the args
            if instrument_id != "phq9" or administration_index < 2:
                return None
            return ResponseBand(upper=baseline - 3, source="test curve")

    # Nothing installed declares a curve: no lookup at all (the policy then skips the rule).
    assert plugin_bands(get_plugin_manager()) is None
    band = plugin_bands(manager_with(curve=Curve()))
    assert band is not None
    assert band("phq9", "1", 18, 2, 2.0) == ResponseBand(upper=15, source="test curve")
    assert band("phq9", "1", 18, 1, 1.0) is None
    assert band("gad7", "1", 18, 5, 5.0) is None
    phq9 = InstrumentRegistry.from_plugin_manager(get_plugin_manager()).get("phq9")
    start = datetime(2026, 3, 3, tzinfo=UTC)

    def facts(latest: float) -> SeriesFacts:
        return SeriesFacts(instrument_id="phq9", instrument_version=phq9.version, baseline_measurement_id=uuid4(),
                           measurement_id=uuid4(), baseline=18, latest=latest, baseline_observed_at=start,
                           latest_observed_at=start + timedelta(weeks=2), administrations=3)

    # 16 is above the band's worse bound (15): not on track; 15 is within it; better is no alert.
    held = evaluate(facts(16), phq9, after_administrations=8, after_weeks=None, band=band)
    assert list(held) == ["outside_expected_response"]
    assert held["outside_expected_response"].band_upper == 15
    assert held["outside_expected_response"].source == "test curve"
    assert evaluate(facts(15), phq9, after_administrations=8, after_weeks=None, band=band) == {}
