"""Plain-language check: flag clinical jargon in goal text and suggest everyday words.

Guidance only. Clinics extend the glossary (the plugin layer passes extra terms in);
``check_plain_language(text, glossary)`` is pure.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import msgspec

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


def check_plain_language(text: str, glossary: Mapping[str, str] | None = None) -> list[Hint]:
    """Hints for jargon in ``text`` (whole words, case-insensitive), in text order.

    ``glossary`` defaults to :data:`DEFAULT_GLOSSARY`; to extend rather than replace it
    pass ``merged_glossary(clinic_terms)``. Longer terms win over terms inside them.
    """
    terms = glossary if glossary is not None else DEFAULT_GLOSSARY
    hints: list[Hint] = []
    taken: list[tuple[int, int]] = []
    for term in sorted(terms, key=len, reverse=True):
        for match in _pattern(term).finditer(text):
            start, end = match.span()
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            hints.append(Hint(term=term.lower(), found=match.group(0), start=start, end=end,
                              suggestion=terms[term]))
    return sorted(hints, key=lambda h: h.start)
