"""Failure isolation: a plugin that raises, returns garbage or hangs is cut off alone."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import structlog

from alliance.core.errors import ValidationError
from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import InstrumentDefinition, Scoring
from alliance.plugins.scoring_guard import InstrumentFailed
from tests.plugins.helpers import registry_with, simple_definition

release = threading.Event()


class CustomPlugin:
    """Registers ``clinic_<behaviour>`` with custom scoring that misbehaves as asked."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.calls = 0
        self.definition = simple_definition(f"clinic_{behaviour}", scoring=Scoring(method="custom"))

    @hookimpl
    def register_measures(self) -> list[InstrumentDefinition]:
        return [self.definition]

    @hookimpl
    def score_measure(self, definition: InstrumentDefinition, answers: dict[str, Any]) -> object:
        self.calls += 1
        match self.behaviour:
            case "ok":
                return {"total": answers["a"] + answers["b"], "a_only": answers["a"]}
            case "raises":
                raise ZeroDivisionError(f"secret answers {answers}")
            case "garbage":
                return {"total": "lots"}
            case "out_of_range":
                return {"total": 99}
            case "none":
                return None
            case "hangs":
                release.wait(5)
                return {"total": 1}
        raise AssertionError(self.behaviour)


@pytest.fixture(autouse=True)
def _release_hung_threads() -> Any:
    release.clear()
    yield
    release.set()


@pytest.mark.parametrize(("behaviour", "reason"), [
    ("raises", "raised"), ("garbage", "malformed"), ("out_of_range", "malformed"), ("none", "malformed"),
    ("hangs", "timeout"),
])
def test_misbehaving_scorer_is_refused_naming_the_plugin(behaviour: str, reason: str) -> None:
    plugins = {f"clinic_{behaviour}_plugin": CustomPlugin(behaviour), "clinic_ok_plugin": CustomPlugin("ok")}
    registry = registry_with(**plugins)  # 0.5 s limit
    started = time.perf_counter()
    with structlog.testing.capture_logs() as logs, pytest.raises(InstrumentFailed) as refused:
        registry.score(f"clinic_{behaviour}", {"a": 1, "b": 2})
    assert time.perf_counter() - started < 2
    error = refused.value
    assert isinstance(error, ValidationError)
    assert error.code == "instrument_failed"
    assert f"clinic_{behaviour}_plugin" in error.message
    assert error.details["reason"] == reason
    assert "secret" not in error.message
    [entry] = [e for e in logs if e["event"] == "instrument_failed"]
    assert entry["plugin"] == f"clinic_{behaviour}_plugin"
    assert entry["reason"] == reason
    assert "answers" not in entry and "secret" not in repr(entry)
    # Everything else keeps working.
    assert registry.score("clinic_ok", {"a": 1, "b": 2}).scores == {"total": 3, "a_only": 1}
    assert registry.score("phq9", {f"item{i}": 0 for i in range(1, 10)}).scores == {"total": 0}


def test_invalid_answers_never_reach_the_plugin() -> None:
    plugin = CustomPlugin("ok")
    registry = registry_with(clinic_ok_plugin=plugin)
    with pytest.raises(ValidationError) as refused:
        registry.score("clinic_ok", {"a": 9, "b": 2})
    assert refused.value.code == "invalid_answer"
    assert plugin.calls == 0


def test_a_plugin_stuck_too_often_is_refused_at_once() -> None:
    registry = registry_with(clinic_stuck_plugin=CustomPlugin("hangs"))  # a name no other test uses
    reasons = []
    for _ in range(5):
        with pytest.raises(InstrumentFailed) as refused:
            registry.score("clinic_hangs", {"a": 0, "b": 0})
        reasons.append(refused.value.reason)
    assert reasons[:4] == ["timeout"] * 4
    assert reasons[4] == "unavailable"
    release.set()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # the stuck calls finish and the plugin is asked again
        try:
            assert registry.score("clinic_hangs", {"a": 0, "b": 0}).scores == {"total": 1}
            break
        except InstrumentFailed:
            time.sleep(0.05)
    else:
        pytest.fail("plugin never recovered")
