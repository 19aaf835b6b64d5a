"""Progress in plain words: one summary per measure, generated from the instrument's own
declarations (its name, bands, direction and reliable change criterion), for the client, and
the same with the criteria used for the clinician.

    "Since 3 March your PHQ-9 score has gone from 16 to 7. That is a reliable improvement.
    It is now in the mild range."

The statistics stay in the view for programs (``reliable_change.status``, ``t_score``); these
words sit beside them. English is built in (:data:`ENGLISH`); an instrument that declares a
language in its ``words`` (``plugins/instruments.py``, checked at start-up to hold every key of
:data:`ENGLISH` and a word for each band) is described in that language to a reader who asks for
it (``Accept-Language``). Pure: the caller passes the rendered summary and the definition.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

#: The sentences, by key; ``{name}`` etc. are filled in. An instrument's ``words[language]``
#: gives every one of these keys plus ``band.<label>`` for each of its bands.
ENGLISH: dict[str, str] = {
    "name": "",  # the instrument's short name; in English the title before any "(…)"
    "first": "Your first {name} score, on {date}, was {latest}.",
    "since": "Since {date} your {name} score has gone from {baseline} to {latest}.",
    "same": "Since {date} your {name} score has stayed at {latest}.",
    "change.improved": "That is a reliable improvement.",
    "change.deteriorated": "That is a reliable change for the worse.",
    "change.no_reliable_change": "That is within the usual ups and downs of this questionnaire: not yet a "
                                 "reliable change.",
    "band.first": "That is in the {band} range.",
    "band.now": "It is now in the {band} range.",
    "direction.lower_is_better": "On this questionnaire a lower score means things are better.",
    "direction.higher_is_better": "On this questionnaire a higher score means things are better.",
    "date": "{day} {month}",
    "date.year": "{day} {month} {year}",
    "months": "January,February,March,April,May,June,July,August,September,October,November,December",
    "gas.level.-2": "much less than expected",
    "gas.level.-1": "less than expected",
    "gas.level.0": "as expected",
    "gas.level.1": "more than expected",
    "gas.level.2": "much more than expected",
    "gas.goal": "On this goal you are at the level you called \"{level}\".",
    "gas.summary.above": "Across your goals you are doing better than you expected to.",
    "gas.summary.at": "Across your goals you are about where you expected to be.",
    "gas.summary.below": "Across your goals you are not yet where you expected to be.",
}
#: The keys an instrument's own language must give (``name`` included).
REQUIRED_KEYS = frozenset(ENGLISH)


def short_name(title: str) -> str:
    """"PHQ-9 (Patient Health Questionnaire)" → "PHQ-9"."""
    return title.split(" (", 1)[0].strip() or title


def language_of(accept_language: str | None, available: set[str]) -> str:
    """The first language of an ``Accept-Language`` header that is ``available`` (by full tag,
    then by its primary subtag), else "en". Quality values order the tags; q=0 refuses one."""
    if not accept_language:
        return "en"
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and q > 0:
            ranked.append((-q, i, tag.strip().lower()))
    lowered = {a.lower(): a for a in available}
    for _, _, tag in sorted(ranked):
        if tag in ("en", "*") or tag.startswith("en-"):
            return "en"
        if tag in lowered:
            return lowered[tag]
        if tag.split("-")[0] in lowered:
            return lowered[tag.split("-")[0]]
    return "en"


def _words(definition: Any, language: str) -> dict[str, str]:
    own = dict(getattr(definition, "words", {}) or {}).get(language) if language != "en" else None
    if own:
        return {**ENGLISH, **own}
    name = short_name(definition.title) if definition is not None else ""
    return {**ENGLISH, "name": name}


def _num(value: Any) -> str:
    return f"{float(value):g}"


def _date(iso: str, words: Mapping[str, str], *, with_year: bool) -> str:
    moment = datetime.fromisoformat(iso)
    month = words["months"].split(",")[moment.month - 1].strip()
    key = "date.year" if with_year else "date"
    return words[key].format(day=moment.day, month=month, year=moment.year)


def _band_word(words: Mapping[str, str], label: str) -> str:
    return words.get(f"band.{label}", label).lower() if label else ""


def describe_measure(summary: Mapping[str, Any], definition: Any, language: str = "en") -> dict[str, Any]:
    """The client's words for one measure summary (``progress.summarise``), and the criteria."""
    words = _words(definition, language)
    if definition is None or not summary.get("points") or summary.get("latest") is None:
        return {"language": language, "text": None, "criteria": []}
    if not words["name"]:
        words["name"] = str(summary.get("instrument_id"))
    points = summary["points"]
    first, last = points[0]["observed_at"], points[-1]["observed_at"]
    date = _date(first, words, with_year=first[:4] != last[:4])
    values = {"name": words["name"], "date": date, "latest": _num(summary["latest"])}
    sentences: list[str] = []
    band = _band_word(words, summary.get("band") or "")
    if len(points) == 1 or summary.get("baseline") is None:
        sentences.append(words["first"].format(**values))
        if band:
            sentences.append(words["band.first"].format(band=band))
    else:
        values["baseline"] = _num(summary["baseline"])
        same = float(summary["baseline"]) == float(summary["latest"])
        sentences.append(words["same" if same else "since"].format(**values))
        status = (summary.get("reliable_change") or {}).get("status")
        if status in ("improved", "deteriorated", "no_reliable_change"):
            sentences.append(words[f"change.{status}"])
        if band:
            sentences.append(words["band.now"].format(band=band))
    direction = summary.get("direction")
    if direction in ("lower_is_better", "higher_is_better") and not (
            (summary.get("reliable_change") or {}).get("status")):
        sentences.append(words[f"direction.{direction}"])
    return {"language": language, "text": " ".join(sentences), "criteria": criteria(summary, definition)}


def criteria(summary: Mapping[str, Any], definition: Any) -> list[str]:
    """What the clinician needs to weigh the words: the change criterion and its source, the
    change index (or why it is not computed), the bands and cut-offs, and informants."""
    out: list[str] = []
    rc = summary.get("reliable_change")
    if rc:
        if rc.get("criterion") == "threshold":
            line = f"Reliable change: a change of at least {_num(rc.get('threshold') or 0)} points"
        elif rc.get("criterion") == "index":
            line = f"Reliable change: |RCI| > 1.96 (RCI {rc['rci']:.2f})" if rc.get("rci") is not None \
                else "Reliable change: |RCI| > 1.96"
        else:
            line = f"Reliable change: {rc.get('reason') or rc.get('criterion')}"
        out.append(line + (f" ({rc['source']})." if rc.get("source") else "."))
    elif definition is not None and definition.reliable_change is None:
        out.append("Reliable change: this instrument declares no criterion, so no change is called reliable.")
    ci = summary.get("change_index")
    if ci:
        if ci.get("rci") is not None:
            out.append(f"Change index: RCI {ci['rci']:.2f} (SD {_num(ci['sd'])}, "
                       f"reliability {_num(ci['reliability'])}; {ci.get('source', '')}).")
        elif ci.get("reason"):
            out.append(f"Change index: {ci['reason']}")
    if definition is not None and definition.bands:
        ordered = sorted(definition.bands, key=lambda b: b.min)
        bands = ", ".join(f"{b.label} {_num(b.min)}–{_num(b.max)}" for b in ordered)
        out.append(f"Bands: {bands}.")
    if definition is not None:
        for cutoff in definition.cutoffs:
            source = f" ({cutoff.source})." if cutoff.source else "."
            out.append(f"Cut-off '{cutoff.name}': {_num(cutoff.value)}{source}")
    note = (summary.get("informants") or {}).get("note")
    if note:
        out.append(note)
    return out


def describe_gas_level(level: float | None, words: Mapping[str, str] | None = None) -> str | None:
    """A goal's attainment level in Kiresuk & Sherman's words (−2 much less … +2 much more than expected)."""
    words = words or ENGLISH
    if level is None or level not in (-2, -1, 0, 1, 2):
        return None
    return words["gas.goal"].format(level=words[f"gas.level.{int(level)}"])


def describe_gas_summary(t_score: float | None, words: Mapping[str, str] | None = None) -> str | None:
    """The GAS summary T-score in words: 50 is every goal at its expected level (Kiresuk & Sherman
    1968); a goal level is a whole step, about 10 T points, so within ±5 reads as "about where
    you expected"."""
    words = words or ENGLISH
    if t_score is None:
        return None
    if t_score > 55:
        return words["gas.summary.above"]
    if t_score < 45:
        return words["gas.summary.below"]
    return words["gas.summary.at"]


def _installed(instruments: Any, instrument_id: str) -> Any:
    try:
        return instruments.get(instrument_id) if instruments is not None else None
    except Exception:  # not installed
        return None


def languages(instruments: Any) -> set[str]:
    """Every language some installed instrument describes itself in (English always)."""
    found = {"en"}
    for definition in getattr(instruments, "definitions", lambda: [])():
        found |= set(getattr(definition, "words", {}) or {})
    return found


def add_plain_words(view: dict[str, Any], instruments: Any, language: str = "en") -> dict[str, Any]:
    """The progress view with ``plain_words`` beside every measure summary, goal rating and the
    GAS summary. ``instruments``: the registry (``get(id, version)``)."""
    def definition_of(summary: Mapping[str, Any]) -> Any:
        points = summary.get("points") or []
        if instruments is None or not points:
            return None
        for version in (points[-1].get("instrument_version"), None):
            try:
                return instruments.get(summary["instrument_id"], version)
            except Exception:  # not installed: no words of its own (the scores are still shown)
                continue
        return None

    def described(summary: dict[str, Any]) -> dict[str, Any]:
        return {**summary, "plain_words": describe_measure(summary, definition_of(summary), language)}

    gas_words = _words(_installed(instruments, "gas"), language)
    goals = []
    for goal in view.get("goals", []):
        gas = goal.get("gas")
        if gas is not None:
            gas = {**gas, "plain_words": describe_gas_level(gas.get("level"), gas_words)}
        goals.append({**goal, "measures": [described(m) for m in goal.get("measures", [])], "gas": gas})
    out = {**view, "goals": goals, "measures": [described(m) for m in view.get("measures", [])]}
    if view.get("gas_summary") is not None:
        out["gas_summary"] = {**view["gas_summary"],
                              "plain_words": describe_gas_summary(view["gas_summary"].get("t_score"), gas_words)}
    out["language"] = language
    return out
