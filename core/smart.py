"""SMART assessment: which facets a goal has and, in plain words, what could make it clearer.

Guidance shown beside the goal, never a gate: nothing here refuses a goal.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import msgspec

#: Facet -> the plain-words suggestion shown when it is missing.
SUGGESTIONS: dict[str, str] = {
    "specific": "Say in everyday words what you will be doing differently.",
    "measure": "Think about how you will notice progress — something you could count, "
               "rate or write down.",
    "target": "Say what 'good enough' looks like, for example how often or how much.",
    "achievable": "Say what makes this possible for you now, or pick a smaller first step.",
    "relevant": "Say why this matters to you and what it connects to in your life.",
    "time_bound": "Choose a date to look at how it is going (it can change later).",
}

FACETS: tuple[str, ...] = tuple(SUGGESTIONS)


class SmartAssessment(msgspec.Struct, frozen=True, kw_only=True):
    present: tuple[str, ...]
    missing: tuple[str, ...]
    suggestions: tuple[str, ...]  # one per missing facet, in the same order

    @property
    def score(self) -> int:
        """How many of the five SMART letters are covered (specific+measure count as S/M)."""
        return len(self.present)

    @property
    def complete(self) -> bool:
        return not self.missing


def assess_smart(facets: Mapping[str, str | None] | None = None, *,
                 due_date: date | None = None) -> SmartAssessment:
    """Assess the SMART facets of a goal.

    ``facets`` maps facet names (``specific``, ``measure``, ``target``, ``achievable``,
    ``relevant``) to text; blank text counts as missing. ``due_date`` covers "time-bound"
    (a ``time_bound`` text facet does too).
    """
    facets = facets or {}
    present: list[str] = []
    missing: list[str] = []
    for facet in FACETS:
        value = facets.get(facet)
        has = bool(value and value.strip())
        if facet == "time_bound":
            has = has or due_date is not None
        (present if has else missing).append(facet)
    return SmartAssessment(present=tuple(present), missing=tuple(missing),
                           suggestions=tuple(SUGGESTIONS[f] for f in missing))
