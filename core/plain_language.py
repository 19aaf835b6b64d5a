"""Plain-language check: flag clinical jargon in client-facing text and suggest everyday words.

Guidance only. The glossary in force is :data:`DEFAULT_GLOSSARY` plus every plugin's
``glossary_terms`` (PHQ-9's "suicidal ideation", GAD-7's "hypervigilance", the mood diary's
"dysphoria"), gathered once at start-up by :func:`glossary_from_plugins` and put in force with
:func:`use_glossary`, as the instrument registry is: the views that show client-facing text
(goal statements and the client's words, milestones, review summaries, the relapse plan) run
:func:`hints_for` over it when they are read. ``check_plain_language(text, glossary)`` is pure.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from alliance.core.errors import ConfigurationError

DEFAULT_GLOSSARY: dict[str, str] = {
    "cognitive restructuring": "changing unhelpful thoughts",
    "behavioural activation": "doing more of the things that matter to you",
    "behavioral activation": "doing more of the things that matter to you",
    "rumination": "going over the same worries again and again",
    "exposure hierarchy": "a list of steps from easier to harder to face",
    "psychoeducation": "learning about how this works",
    "comorbid": "happening at the same time as",
    "comorbidity": "having more than one difficulty at the same time",
    "affect": "mood or feelings",
    "somatic": "in the body",
    "anhedonia": "losing interest or enjoyment",
    "catastrophising": "expecting the worst",
    "catastrophizing": "expecting the worst",
    "cognitive distortion": "a thinking trap",
    "maladaptive": "unhelpful",
    "avoidance behaviour": "staying away from things that feel hard",
    "avoidance behavior": "staying away from things that feel hard",
    "self-efficacy": "confidence that you can do it",
    "emotion regulation": "handling strong feelings",
    "sleep hygiene": "habits that help you sleep",
    "interpersonal effectiveness": "getting on with people and asking for what you need",
    "psychomotor": "how quickly you move and think",
    "ideation": "thoughts",
}


class Hint(msgspec.Struct, frozen=True, kw_only=True):
    term: str  # the glossary term matched
    found: str  # the text as written
    start: int
    end: int
    suggestion: str
    #: Other plugins' everyday words for the same term (a later plugin adds, never replaces).
    alternatives: tuple[str, ...] = ()


def merged_glossary(*extra: Mapping[str, str]) -> dict[str, str]:
    """The default glossary with clinic terms on top (later mappings win)."""
    merged = dict(DEFAULT_GLOSSARY)
    for terms in extra:
        merged.update({k.lower(): v for k, v in terms.items()})
    return merged


@functools.lru_cache(maxsize=4096)
def _pattern(term: str) -> re.Pattern[str]:
    """A term as a whole-word, case-insensitive pattern (compiled once: the plan renders often)."""
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, term.split())) + r"(?!\w)", re.IGNORECASE)


#: Term → suggestions, first the default glossary's then each plugin's in registration order.
Glossary = Mapping[str, tuple[str, ...]]


def glossary_from_plugins(pm: Any) -> dict[str, tuple[str, ...]]:
    """The default glossary plus every plugin's ``glossary_terms``, for :func:`use_glossary`.

    ``pm``: the pluggy plugin manager. Plugins are asked in registration order; a term already
    known keeps its suggestion and a later plugin's different words become alternatives
    (``hookspecs.glossary_terms``). A malformed answer stops start-up naming the plugin.
    """
    merged: dict[str, tuple[str, ...]] = {term: (words,) for term, words in DEFAULT_GLOSSARY.items()}
    problems: list[str] = []
    for impl in pm.hook.glossary_terms.get_hookimpls():  # registration order
        try:
            terms = impl.function()
        except Exception as exc:
            problems.append(f"Plugin '{impl.plugin_name}': glossary_terms() raised {type(exc).__name__}")
            continue
        if terms is None:
            continue
        if not isinstance(terms, Mapping) or not all(
                isinstance(k, str) and k.strip() and isinstance(v, str) and v.strip() for k, v in terms.items()):
            problems.append(f"Plugin '{impl.plugin_name}': glossary_terms() must return a dict of "
                            "non-empty strings (term → everyday words)")
            continue
        for term, words in terms.items():
            key = " ".join(term.lower().split())
            known = merged.get(key, ())
            if words not in known:
                merged[key] = (*known, words)
    if problems:
        raise ConfigurationError(" ".join(problems), code="plugin_invalid", problems=problems)
    return merged


_in_force: dict[str, tuple[str, ...]] = {term: (words,) for term, words in DEFAULT_GLOSSARY.items()}


def use_glossary(glossary: Glossary) -> None:
    """Put ``glossary`` in force for this process (start-up does it once, with the plugins')."""
    global _in_force
    _in_force = dict(glossary)


def glossary_in_force() -> Glossary:
    return _in_force


def hints_for(texts: Iterable[tuple[str, str | None]], glossary: Glossary | None = None
              ) -> list[dict[str, Any]]:
    """Hints for each named client-facing text, each saying which ``field`` it is about.

    ``texts``: (field, text) pairs, e.g. ``("milestones.<id>.description", "…")``; empty
    texts are skipped. ``glossary``: the one in force unless given.
    """
    terms = glossary if glossary is not None else _in_force
    out: list[dict[str, Any]] = []
    for field, text in texts:
        if text:
            out.extend({"field": field, **msgspec.to_builtins(h)} for h in check_plain_language(text, terms))
    return out


def check_plain_language(text: str, glossary: Mapping[str, str] | Glossary | None = None) -> list[Hint]:
    """Hints for jargon in ``text`` (whole words, case-insensitive), in text order.

    ``glossary`` defaults to the glossary in force (:data:`DEFAULT_GLOSSARY` plus the plugins'
    once start-up has called :func:`use_glossary`); a mapping term → words, or term →
    suggestions. To extend the default pass ``merged_glossary(clinic_terms)``. Longer terms
    win over terms inside them.
    """
    terms = glossary if glossary is not None else _in_force
    hints: list[Hint] = []
    taken: list[tuple[int, int]] = []
    for term in sorted(terms, key=len, reverse=True):
        for match in _pattern(term).finditer(text):
            start, end = match.span()
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            words = terms[term]
            first, *more = (words,) if isinstance(words, str) else words
            hints.append(Hint(term=term.lower(), found=match.group(0), start=start, end=end,
                              suggestion=first, alternatives=tuple(more)))
    return sorted(hints, key=lambda h: h.start)
