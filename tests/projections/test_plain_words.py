"""Progress in plain words, generated from the instrument's declarations: given a series, then
the client's sentence; the clinician's criteria; an instrument's own language."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from alliance.core.errors import ConfigurationError
from alliance.core.projections.plain_words import (
    ENGLISH,
    add_plain_words,
    describe_gas_summary,
    describe_measure,
    language_of,
    languages,
)
from alliance.core.projections.progress import Point, summarise
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.plugins.helpers import MeasuresPlugin, registry_with, simple_definition

REGISTRY = InstrumentRegistry.from_plugin_manager(get_plugin_manager())
MARCH_3 = datetime(2026, 3, 3, 18, 0, tzinfo=UTC)


def points(instrument: str, *totals: float, start: datetime = MARCH_3) -> list[Point]:
    return [Point(measurement_id=uuid.uuid4(), instrument_id=instrument, instrument_version="1",
                  scores={"total": float(t)}, informant="self", channel="app", observed_at=start + timedelta(weeks=i),
                  recorded_at=start + timedelta(weeks=i)) for i, t in enumerate(totals)]


def words(instrument: str, *totals: float, registry: Any = REGISTRY, language: str = "en") -> dict[str, Any]:
    summary = summarise(points(instrument, *totals), registry)
    return describe_measure(summary, registry.get(instrument), language)


def test_a_reliable_improvement_in_words() -> None:
    said = words("phq9", 16, 12, 7)
    assert said["text"] == ("Since 3 March your PHQ-9 score has gone from 16 to 7. That is a reliable improvement. "
                            "It is now in the mild range.")
    # the clinician's criteria: the threshold and its source, why no change index, bands, cut-off
    criteria = " | ".join(said["criteria"])
    assert "Reliable change: a change of at least 6 points (Threshold: NHS Talking Therapies" in criteria
    assert "Change index: Not computed" in criteria
    assert "Bands: minimal 0–4, mild 5–9, moderate 10–14, moderately severe 15–19, severe 20–27." in criteria
    assert "Cut-off 'caseness': 10" in criteria


def test_worse_within_noise_first_and_no_criterion() -> None:
    assert words("phq9", 8, 15)["text"] == ("Since 3 March your PHQ-9 score has gone from 8 to 15. That is a "
                                            "reliable change for the worse. It is now in the moderately severe range.")
    assert words("gad7", 9, 7)["text"] == ("Since 3 March your GAD-7 score has gone from 9 to 7. That is within the "
                                           "usual ups and downs of this questionnaire: not yet a reliable change. "
                                           "It is now in the mild range.")
    assert words("phq9", 16)["text"] == ("Your first PHQ-9 score, on 3 March, was 16. That is in the moderately "
                                         "severe range. On this questionnaire a lower score means things are better.")
    # the mood diary declares no reliable change criterion: no verdict, but which way is better
    diary = words("mood_diary", 3, 3)["text"]
    assert diary.startswith("Since 3 March your Mood diary score has stayed at 3.")
    assert "higher score means things are better" in diary
    # a series across a new year names the years
    across = summarise(points("phq9", 16, 7, start=datetime(2025, 12, 29, tzinfo=UTC)), REGISTRY)
    assert describe_measure(across, REGISTRY.get("phq9"))["text"].startswith(
        "Since 29 December 2025 your PHQ-9 score")


def test_the_view_carries_words_beside_the_machine_fields() -> None:
    summary = summarise(points("phq9", 16, 7), REGISTRY)
    view = add_plain_words({"goals": [{"measures": [summary], "gas": {"level": 1}}], "measures": [summary],
                            "gas_summary": {"t_score": 61.2}}, REGISTRY)
    assert view["measures"][0]["reliable_change"]["status"] == "improved"  # kept for programs
    assert view["measures"][0]["plain_words"]["text"].endswith("mild range.")
    assert view["goals"][0]["gas"]["plain_words"] == 'On this goal you are at the level you called "more than ' \
                                                     'expected".'
    assert view["gas_summary"]["plain_words"] == "Across your goals you are doing better than you expected to."
    assert describe_gas_summary(50.0) == "Across your goals you are about where you expected to be."
    assert describe_gas_summary(38.4) == "Across your goals you are not yet where you expected to be."


SPANISH = {**ENGLISH, "name": "Escala de la clínica",
           "first": "Tu primera puntuación en la {name}, el {date}, fue {latest}.",
           "since": "Desde el {date} tu puntuación en la {name} ha pasado de {baseline} a {latest}.",
           "same": "Desde el {date} tu puntuación en la {name} sigue en {latest}.",
           "band.now": "Ahora está en el rango {band}.", "band.first": "Está en el rango {band}.",
           "direction.lower_is_better": "En este cuestionario, una puntuación más baja significa que vas mejor.",
           "date": "{day} de {month}", "date.year": "{day} de {month} de {year}",
           "months": "enero,febrero,marzo,abril,mayo,junio,julio,agosto,septiembre,octubre,noviembre,diciembre",
           "band.low": "bajo", "band.high": "alto"}


def test_an_instrument_speaks_the_clients_language_when_it_declares_one() -> None:
    scale = simple_definition(words={"es": SPANISH})
    registry = registry_with(clinic=MeasuresPlugin(scale))
    assert languages(registry) == {"en", "es"}
    assert language_of("es-ES,es;q=0.9,en;q=0.5", {"en", "es"}) == "es"
    assert language_of("fr-CH, fr;q=0.9, en;q=0.8", {"en", "es"}) == "en"
    assert language_of("es;q=0, de", {"en", "es"}) == "en"
    assert language_of(None, {"en", "es"}) == "en"
    summary = summarise(points("clinic_scale", 8, 3), registry)
    said = describe_measure(summary, scale, "es")
    assert said["text"] == ("Desde el 3 de marzo tu puntuación en la Escala de la clínica ha pasado de 8 a 3. "
                            "Ahora está en el rango bajo. En este cuestionario, una puntuación más baja significa "
                            "que vas mejor.")
    # and in English to a reader who asks for nothing else
    assert describe_measure(summary, scale)["text"].startswith("Since 3 March your Clinic scale score")
    # the fingerprint of a definition without words is what it was before the field existed
    assert simple_definition().fingerprint == msgspec.structs.replace(simple_definition(), words={}).fingerprint


@pytest.mark.parametrize(("words", "problem"), [
    ({"es": {**SPANISH, "band.high": None}}, "lacks band.high"),
    ({"es": {k: v for k, v in SPANISH.items() if k != "since"}}, "lacks since"),
    ({"es": {**SPANISH, "months": "enero,febrero"}}, "months must be 12 names"),
    ({"en": SPANISH}, "not a language tag other than 'en'"),
])
def test_an_incomplete_language_stops_start_up(words: dict[str, Any], problem: str) -> None:
    cleaned = {lang: {k: v for k, v in w.items() if v is not None} for lang, w in words.items()}
    with pytest.raises(ConfigurationError) as refused:
        registry_with(clinic=MeasuresPlugin(simple_definition(words=cleaned)))
    assert problem in str(refused.value)
