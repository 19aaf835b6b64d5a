"""Plugin glossaries feed the plain-language check, over every client-facing text.

Observed failure #7 of issue 13: the ``glossary_terms`` hook was never called, so plugin
jargon ("hypervigilance", "dysphoria", "suicidal ideation") was never flagged.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from alliance.core.errors import ConfigurationError
from alliance.core.events.crypto import MemoryKeyRing
from alliance.core.events.memory import MemoryEventStore
from alliance.core.plain_language import (
    DEFAULT_GLOSSARY,
    check_plain_language,
    glossary_from_plugins,
    glossary_in_force,
    use_glossary,
)
from alliance.core.projections.base import fold
from alliance.core.projections.plan import PLAN, render_plan
from alliance.plugins.hookspecs import hookimpl
from alliance.plugins.manager import get_plugin_manager
from tests.plugins.helpers import manager_with
from tests.projections.helpers import Client, domain_codec

JARGON = "Less hypervigilance, dysphoria and suicidal ideation"


@pytest.fixture
def plugin_glossary() -> Iterator[None]:
    """The built-in plugins' glossary in force, as start-up puts it; the previous one after."""
    before = dict(glossary_in_force())
    use_glossary(glossary_from_plugins(get_plugin_manager()))
    yield
    use_glossary(before)


def test_plugin_jargon_is_flagged_once_start_up_has_gathered_the_glossaries(plugin_glossary: None) -> None:
    # Given the built-in measure plugins (PHQ-9, GAD-7, mood diary) and their glossaries
    # When a client-facing text uses their jargon
    hints = check_plain_language(JARGON)
    # Then every term is flagged with the plugin's everyday words
    assert [(h.term, h.suggestion) for h in hints] == [
        ("hypervigilance", "being on the lookout for danger all the time"),
        ("dysphoria", "feeling low or uneasy"),
        ("suicidal ideation", "thoughts of ending your life"),
    ]


def test_a_later_plugin_adds_words_never_replaces_them() -> None:
    glossary = glossary_from_plugins(get_plugin_manager())
    # "anhedonia" is in the default glossary and in PHQ-9's: the default's words stay first
    assert glossary["anhedonia"] == (DEFAULT_GLOSSARY["anhedonia"],
                                     "losing interest or pleasure in things you usually enjoy")
    [hint] = check_plain_language("anhedonia", glossary)
    assert hint.suggestion == DEFAULT_GLOSSARY["anhedonia"] and len(hint.alternatives) == 1


def test_a_malformed_glossary_stops_start_up_naming_the_plugin() -> None:
    class Broken:
        @hookimpl
        def glossary_terms(self) -> dict[str, str]:
            return {"tic": ""}

    with pytest.raises(ConfigurationError) as caught:
        glossary_from_plugins(manager_with(broken_clinic=Broken()))
    assert "broken_clinic" in caught.value.message


async def test_every_client_facing_text_of_the_plan_goes_through_the_check(plugin_glossary: None) -> None:
    # Given a goal, a milestone and a relapse plan, each using plugin jargon
    c = Client(canary="hypervigilance").enrol()
    c.goal()
    c.relapse_plan()
    store = MemoryEventStore(domain_codec(), MemoryKeyRing())
    await c.flush(store)
    # When the plan is read
    plan = render_plan(fold(PLAN, await store.read_all(limit=10_000))[c.client], now=datetime(2025, 4, 1, tzinfo=UTC))
    # Then each text is checked and the hint names its field
    [goal] = plan["goals"]
    fields = {h["field"].split(".")[0] for h in goal["plain_language"] if h["term"] == "hypervigilance"}
    assert fields == {"statement", "client_words", "milestones"}
    relapse = {h["field"].split(".")[0] for h in plan["relapse_plan"]["plain_language"]}
    assert relapse == {"warning_signs", "actions", "supports"}
