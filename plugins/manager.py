"""The plugin manager and the instrument registry built from it.

``get_plugin_manager()`` is the one way plugins are loaded: the built-in measures are
registered as plugins like any clinic's, then the ``alliance`` entry-point group, then
(optionally) a plugins directory of ``*.py`` modules and FHIR Questionnaire ``*.json``
files, then ``check_pending()`` so a misspelled hook fails loudly.

``InstrumentRegistry.from_plugin_manager()`` asks every plugin for its measures and
validates them all at start-up; any problem is a ``ConfigurationError`` naming the plugin.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy
import structlog

from alliance.core.errors import ConfigurationError, NotFound
from alliance.plugins import hookspecs
from alliance.plugins.fhir_questionnaire import QuestionnairePlugin, questionnaire_plugin
from alliance.plugins.instruments import (
    InstrumentDefinition,
    ScoredMeasurement,
    Scorer,
    definition_problems,
    instrument_key,
    score,
)
from alliance.plugins.scoring_guard import DEFAULT_TIMEOUT, InstrumentFailed, guarded_scorer

log = structlog.get_logger("alliance.plugins")

PROJECT_NAME = "alliance"

#: Built-in plugins, registered by module name before any installed plugin.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "plugins.measures.phq9",
    "plugins.measures.gad7",
    "plugins.measures.gas",
    "plugins.measures.mood_diary",
    "plugins.measures.frequency_count",
    "plugins.measures.confidence",
    "plugins.measures.sleep_quality",
    "plugins.measures.social_engagement",
    "plugins.channels.smtp",
    "plugins.channels.webhook",
)


def get_plugin_manager(plugins_dir: Path | None = None) -> pluggy.PluginManager:
    """A fresh plugin manager with built-ins, installed plugins and ``plugins_dir`` loaded."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        # Registered under their historical names (stable identifiers); imported from the `alliance` package.
        pm.register(importlib.import_module(f"alliance.{module_name}"), name=module_name)
    try:
        pm.load_setuptools_entrypoints(PROJECT_NAME)
    except Exception as exc:
        raise ConfigurationError(
            f"An installed plugin (entry point group '{PROJECT_NAME}') could not be loaded: "
            f"{type(exc).__name__}: {exc}", code="plugin_load_failed") from exc
    if plugins_dir is not None:
        load_plugins_dir(pm, Path(plugins_dir))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise ConfigurationError(f"Plugin '{name}': {exc}", code="plugin_invalid",
                                 plugin=name) from exc
    return pm


def load_plugins_dir(pm: pluggy.PluginManager, plugins_dir: Path) -> list[str]:
    """Register every ``*.py`` module and FHIR Questionnaire ``*.json`` in ``plugins_dir``.

    Files are loaded in name order; names starting with ``_`` or ``.`` are skipped. Each is
    registered under ``plugins_dir:<file name>``. Returns the names registered.
    """
    if not plugins_dir.is_dir():
        raise ConfigurationError(f"Plugins directory '{plugins_dir}' does not exist.",
                                 code="plugin_load_failed")
    names: list[str] = []
    for path in sorted(plugins_dir.iterdir()):
        if path.name.startswith(("_", ".")) or path.suffix not in (".py", ".json"):
            continue
        name = f"plugins_dir:{path.name}"
        plugin: object
        if path.suffix == ".json":
            plugin = questionnaire_plugin(path, plugin_name=name)
        else:
            plugin = _import_file(path, plugin_name=name)
        pm.register(plugin, name=name)
        names.append(name)
    return names


def _import_file(path: Path, *, plugin_name: str) -> object:
    module_name = "alliance_plugins_dir." + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"Plugin '{plugin_name}' cannot be imported.",
                                 code="plugin_load_failed", plugin=plugin_name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ConfigurationError(f"Plugin '{plugin_name}' failed to import: "
                                 f"{type(exc).__name__}: {exc}", code="plugin_load_failed",
                                 plugin=plugin_name) from exc
    return module


# --- The registry ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RegisteredInstrument:
    """A validated definition, the plugin it came from, and its guarded custom scorer."""

    definition: InstrumentDefinition
    plugin: str
    scorer: Scorer | None = None


def load_fingerprints(path: Path) -> dict[str, str]:
    """Read a fingerprint registry file (JSON ``{"id@version": "sha256 hex"}``); {} if absent."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"Fingerprint file '{path}' cannot be read: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigurationError(f"Fingerprint file '{path}' is not a JSON object of strings.")
    return data


def write_fingerprints(path: Path, fingerprints: Mapping[str, str]) -> None:
    """Write the fingerprint registry atomically (sorted keys, so diffs stay readable)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(sorted(fingerprints.items())), indent=2) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def _version_key(version: str) -> tuple[tuple[int, Any], ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"[.\-]", version))


def _scorer_for(pm: pluggy.PluginManager, plugin: str, timeout: float) -> Scorer | None:
    impls = [i for i in pm.hook.score_measure.get_hookimpls() if i.plugin_name == plugin]
    if not impls:
        return None
    impl = impls[0]

    def call(definition: InstrumentDefinition, answers: dict[str, Any]) -> Any:
        given = {"definition": definition, "answers": answers}
        return impl.function(**{k: v for k, v in given.items() if k in impl.argnames})

    return guarded_scorer(plugin, call, timeout=timeout)


class InstrumentRegistry:
    """Every instrument the running service can score, validated at start-up."""

    def __init__(self, instruments: Iterable[RegisteredInstrument], *,
                 missing: Iterable[str] = ()) -> None:
        self._by_key: dict[str, RegisteredInstrument] = {}
        for registered in instruments:
            self._by_key[registered.definition.key] = registered
        #: ``id@version`` keys recorded before (fingerprint file) but not installed now:
        #: history still reads (scores are stored) but new recordings are refused.
        self.missing: tuple[str, ...] = tuple(sorted(missing))

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager, *,
                            known_fingerprints: Mapping[str, str] | Path | None = None,
                            timeout: float = DEFAULT_TIMEOUT) -> InstrumentRegistry:
        """Collect ``register_measures`` from every plugin and validate them all.

        ``known_fingerprints`` (a mapping or the path of a fingerprint file) holds the
        fingerprint of every id@version seen before; a definition whose content changed under
        a known version is refused. Raises ``ConfigurationError`` listing every problem, each
        naming its plugin.
        """
        if isinstance(known_fingerprints, Path):
            known_fingerprints = load_fingerprints(known_fingerprints)
        known = dict(known_fingerprints or {})
        problems: list[str] = []
        plugins_at_fault: list[str] = []
        instruments: list[RegisteredInstrument] = []
        owner: dict[str, str] = {}
        #: (system, panel code) → (instrument id, plugin) that registered it first.
        panel_owner: dict[tuple[str, str], tuple[str, str]] = {}

        def problem(plugin: str, text: str) -> None:
            problems.append(f"Plugin '{plugin}': {text}")
            if plugin not in plugins_at_fault:
                plugins_at_fault.append(plugin)

        # Called one implementation at a time so each definition is tied to its plugin.
        for impl in pm.hook.register_measures.get_hookimpls():  # registration order
            plugin = impl.plugin_name
            try:
                result = impl.function()
            except Exception as exc:
                problem(plugin, f"register_measures() raised {type(exc).__name__}: {exc}")
                continue
            if not isinstance(result, list | tuple) or not all(
                    isinstance(d, InstrumentDefinition) for d in result):
                problem(plugin, "register_measures() must return a list of "
                                "InstrumentDefinition")
                continue
            scorer = _scorer_for(pm, plugin, timeout)
            for definition in result:
                label = f"measure '{definition.id}' version {definition.version}"
                for text in definition_problems(definition):
                    problem(plugin, f"{label}: {text}")
                if definition.scoring.method == "custom" and scorer is None:
                    problem(plugin, f"{label}: has no scoring (custom scoring declared but the "
                                    "plugin does not implement score_measure)")
                key = definition.key
                if key in owner:
                    problem(plugin, f"{label} is already registered by plugin '{owner[key]}'")
                    continue
                if key in known and known[key] != definition.fingerprint:
                    problem(plugin, f"{label} has changed since it was first recorded; a changed "
                                    "definition needs a new version")
                # One panel code, one instrument (its versions share it): otherwise a code read
                # from an EHR could name either, with different scoring or risk rules.
                for coding in definition.codings:
                    if coding.target != "panel":
                        continue
                    panel = (coding.system, coding.code)
                    first = panel_owner.setdefault(panel, (definition.id, plugin))
                    if first[0] != definition.id:
                        problem(plugin, f"{label} has panel code {coding.code} ({coding.system}), "
                                        f"already registered for measure '{first[0]}' by plugin "
                                        f"'{first[1]}'")
                owner[key] = plugin
                instruments.append(RegisteredInstrument(
                    definition=definition, plugin=plugin,
                    scorer=scorer if definition.scoring.method == "custom" else None))
        if problems:
            log.error("plugins_invalid", plugins=plugins_at_fault, problems=len(problems))
            raise ConfigurationError(" ".join(problems), code="plugin_invalid",
                                     plugins=plugins_at_fault, problems=problems)
        missing = [key for key in known if key not in owner]
        if missing:
            log.warning("measures_not_installed", measures=sorted(missing))
        log.info("measures_registered", count=len(instruments))
        return cls(instruments, missing=missing)

    # --- look-ups

    def definitions(self) -> list[InstrumentDefinition]:
        """Every installed definition, by id then version."""
        return [r.definition for r in sorted(
            self._by_key.values(),
            key=lambda r: (r.definition.id, _version_key(r.definition.version)))]

    def has(self, instrument_id: str, version: str) -> bool:
        return instrument_key(instrument_id, version) in self._by_key

    def registered(self, instrument_id: str, version: str | None = None) -> RegisteredInstrument:
        """The registration of ``instrument_id`` at ``version`` (the latest when None)."""
        if version is None:
            versions = [r for r in self._by_key.values() if r.definition.id == instrument_id]
            if versions:
                return max(versions, key=lambda r: _version_key(r.definition.version))
        elif (found := self._by_key.get(instrument_key(instrument_id, version))) is not None:
            return found
        shown = instrument_id if version is None else f"{instrument_id} version {version}"
        raise NotFound(f"Measure '{shown}' is not installed.", code="instrument_not_found",
                       field="instrument_id")

    def get(self, instrument_id: str, version: str | None = None) -> InstrumentDefinition:
        """The definition of ``instrument_id`` at ``version`` (the latest when None)."""
        return self.registered(instrument_id, version).definition

    def plugin_of(self, instrument_id: str, version: str) -> str:
        return self.registered(instrument_id, version).plugin

    def fingerprints(self) -> dict[str, str]:
        """``id@version`` → fingerprint of every installed definition."""
        return {key: r.definition.fingerprint for key, r in sorted(self._by_key.items())}

    def fingerprint_record(self, known: Mapping[str, str] | None = None) -> dict[str, str]:
        """What to persist: every fingerprint ever seen (``known``) plus the installed ones.

        Old entries are kept so that a definition removed and later re-installed with other
        content under the same version is still caught.
        """
        return dict(sorted({**(known or {}), **self.fingerprints()}.items()))

    # --- scoring

    def score(self, instrument_id: str, answers: Mapping[str, Any], *,
              version: str | None = None) -> ScoredMeasurement:
        """Validate and score ``answers`` (latest version unless ``version``).

        Raises ``NotFound`` (``instrument_not_found``), ``ValidationError``
        (``invalid_answer``/``unknown_item``) or ``InstrumentFailed`` (``instrument_failed``).
        """
        registered = self.registered(instrument_id, version)
        return score(registered.definition, answers, scorer=registered.scorer)

    def rescore(self, instrument_id: str, version: str, answers: Mapping[str, Any]
                ) -> dict[str, float]:
        """Scores for stored answers with the recorded version (``alliance verify --scores``)."""
        return self.score(instrument_id, answers, version=version).scores


__all__ = [
    "DEFAULT_PLUGINS", "InstrumentFailed", "InstrumentRegistry", "QuestionnairePlugin",
    "RegisteredInstrument", "get_plugin_manager", "load_fingerprints", "load_plugins_dir",
    "write_fingerprints",
]
