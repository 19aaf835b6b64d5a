"""Small builders shared by the plugin tests."""

from __future__ import annotations

from typing import Any

import msgspec
import pluggy

from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.instruments import (
    Band,
    InstrumentDefinition,
    IntegerResponse,
    Item,
    ScoreRange,
    Scoring,
)
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager


def simple_definition(instrument_id: str = "clinic_scale", version: str = "1", **changes: Any
                      ) -> InstrumentDefinition:
    """Two 0–5 items summed to 0–10, bands low 0–4 / high 5–10."""
    definition = InstrumentDefinition(
        id=instrument_id, version=version, title="Clinic scale", description="Two questions.",
        items=(Item(id="a", prompt="A?", response=IntegerResponse(min=0, max=5)),
               Item(id="b", prompt="B?", response=IntegerResponse(min=0, max=5))),
        scoring=Scoring(total=("a", "b")), direction="lower_is_better",
        score_range=ScoreRange(min=0, max=10),
        bands=(Band(label="low", min=0, max=4), Band(label="high", min=5, max=10)))
    return msgspec.structs.replace(definition, **changes)


class MeasuresPlugin:
    """A clinic plugin object returning the definitions it is given."""

    def __init__(self, *definitions: InstrumentDefinition) -> None:
        self.definitions = list(definitions)

    @hookimpl
    def register_measures(self) -> list[InstrumentDefinition]:
        return self.definitions


def manager_with(**plugins: object) -> pluggy.PluginManager:
    pm = get_plugin_manager()
    for name, plugin in plugins.items():
        pm.register(plugin, name=name)
    return pm


def registry_with(**plugins: object) -> InstrumentRegistry:
    return InstrumentRegistry.from_plugin_manager(manager_with(**plugins), timeout=0.5)
