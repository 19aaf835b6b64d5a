"""Start-up validation: every registration is checked and a problem names its plugin."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from alliance.core.errors import ConfigurationError, NotFound
from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import Band, ScoreRange, Scoring
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager, load_fingerprints, write_fingerprints
from tests.plugins.helpers import MeasuresPlugin, manager_with, registry_with, simple_definition


def refusal(**plugins: object) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as refused:
        registry_with(**plugins)
    return refused.value


def test_a_sound_clinic_plugin_is_registered() -> None:
    registry = registry_with(clinic_a=MeasuresPlugin(simple_definition()))
    assert registry.plugin_of("clinic_scale", "1") == "clinic_a"
    assert registry.score("clinic_scale", {"a": 1, "b": 4}).band == "high"


def test_duplicate_id_and_version_names_the_plugin() -> None:
    error = refusal(clinic_a=MeasuresPlugin(simple_definition()),
                    clinic_b=MeasuresPlugin(simple_definition(title="Other")))
    assert "clinic_b" in error.message and "clinic_a" in error.message
    assert "already registered" in error.message
    # A clinic plugin cannot take over a built-in either.
    error = refusal(clinic_c=MeasuresPlugin(simple_definition("phq9")))
    assert "'clinic_c'" in error.message and "plugins.measures.phq9" in error.message


def test_two_versions_of_one_instrument_coexist() -> None:
    registry = registry_with(clinic_a=MeasuresPlugin(simple_definition(version="1"),
                                                     simple_definition(version="2", title="Clinic scale v2")))
    assert registry.get("clinic_scale").version == "2"
    assert registry.get("clinic_scale", "1").title == "Clinic scale"


@pytest.mark.parametrize(("changes", "expected"), [
    ({"score_range": ScoreRange(min=10, max=0)}, "not a range"),
    ({"score_range": ScoreRange(min=0, max=12), "bands": ()}, "does not match"),
    ({"bands": (Band(label="low", min=0, max=4), Band(label="high", min=6, max=10))}, "gap or overlap"),
    ({"bands": (Band(label="low", min=0, max=4), Band(label="high", min=5, max=9))}, "do not cover"),
    ({"scoring": Scoring(total=())}, "no scoring"),
    ({"scoring": Scoring(total=("a", "zz"))}, "unknown item 'zz'"),
])
def test_bad_definitions_name_the_plugin(changes: dict[str, object], expected: str) -> None:
    error = refusal(clinic_bad=MeasuresPlugin(simple_definition(**changes)))
    assert "Plugin 'clinic_bad'" in error.message
    assert expected in error.message
    assert error.details["plugins"] == ["clinic_bad"]


def test_custom_scoring_without_score_measure_is_missing_scoring() -> None:
    error = refusal(clinic_custom=MeasuresPlugin(simple_definition(scoring=Scoring(method="custom"))))
    assert "Plugin 'clinic_custom'" in error.message and "no scoring" in error.message


def test_register_measures_that_raises_or_returns_garbage() -> None:
    class Raises:
        @hookimpl
        def register_measures(self) -> list[object]:
            raise RuntimeError("boom")

    class Garbage:
        @hookimpl
        def register_measures(self) -> object:
            return [{"id": "x"}]

    assert "Plugin 'clinic_raises'" in refusal(clinic_raises=Raises()).message
    assert "Plugin 'clinic_garbage'" in refusal(clinic_garbage=Garbage()).message


def test_changed_definition_under_an_existing_version(tmp_path: Path) -> None:
    first = registry_with(clinic_a=MeasuresPlugin(simple_definition()))
    record = tmp_path / "fingerprints.json"
    write_fingerprints(record, first.fingerprint_record())
    assert load_fingerprints(record)["clinic_scale@1"] == simple_definition().fingerprint

    # Same content: fine.
    InstrumentRegistry.from_plugin_manager(manager_with(clinic_a=MeasuresPlugin(simple_definition())),
                                           known_fingerprints=record)
    # Reworded under the same version: refused, naming the plugin.
    changed = simple_definition(description="Two questions, reworded.")
    with pytest.raises(ConfigurationError) as refused:
        InstrumentRegistry.from_plugin_manager(manager_with(clinic_a=MeasuresPlugin(changed)),
                                               known_fingerprints=record)
    assert "Plugin 'clinic_a'" in refused.value.message
    assert "new version" in refused.value.message
    # A new version is the way to change it.
    bumped = msgspec.structs.replace(changed, version="2")
    registry = InstrumentRegistry.from_plugin_manager(
        manager_with(clinic_a=MeasuresPlugin(simple_definition(), bumped)), known_fingerprints=record)
    assert set(registry.fingerprint_record(load_fingerprints(record))) >= {"clinic_scale@1", "clinic_scale@2"}


def test_missing_instrument_is_reported_and_refused() -> None:
    registry = InstrumentRegistry.from_plugin_manager(get_plugin_manager(),
                                                      known_fingerprints={"retired_scale@3": "ab" * 32})
    assert registry.missing == ("retired_scale@3",)
    with pytest.raises(NotFound) as refused:
        registry.score("retired_scale", {}, version="3")
    assert refused.value.code == "instrument_not_found"


def test_misspelled_hook_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "typo.py").write_text(
        "from alliance.plugins.hookspecs import hookimpl\n\n@hookimpl\ndef register_measure():\n    return []\n")
    with pytest.raises(ConfigurationError) as refused:
        get_plugin_manager(tmp_path)
    assert "plugins_dir:typo.py" in refused.value.message


def test_python_plugin_in_plugins_dir(tmp_path: Path) -> None:
    (tmp_path / "local_scale.py").write_text(
        "from alliance.plugins.hookspecs import hookimpl\n"
        "from tests.plugins.helpers import simple_definition\n\n"
        "@hookimpl\ndef register_measures():\n    return [simple_definition('local_scale')]\n")
    (tmp_path / "_ignored.py").write_text("raise SystemExit('must not be imported')\n")
    registry = InstrumentRegistry.from_plugin_manager(get_plugin_manager(tmp_path))
    assert registry.plugin_of("local_scale", "1") == "plugins_dir:local_scale.py"


def test_broken_python_plugin_in_plugins_dir(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    with pytest.raises(ConfigurationError) as refused:
        get_plugin_manager(tmp_path)
    assert "plugins_dir:broken.py" in refused.value.message


def test_fingerprint_file_must_be_json(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text(json.dumps(["nope"]))
    with pytest.raises(ConfigurationError):
        load_fingerprints(path)
    assert load_fingerprints(tmp_path / "absent.json") == {}
