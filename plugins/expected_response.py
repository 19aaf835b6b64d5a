"""The expected-treatment-response band an instrument plugin may declare (``expected_response``).

Outcome-monitoring systems (Lambert's OQ-Analyst, for one) compare a client's score at each
administration with the range clients of the same starting severity usually reach by then; a
score on the worse side of that range marks the client "not on track". Alliance has no such
curve of its own: a plugin that holds one (from its own data or a published table) returns a
band here, and the alert policy (``core/alerts/rules.py``) raises ``outside_expected_response``
when the latest total is beyond its worse bound.
"""

from __future__ import annotations

import msgspec


class ResponseBand(msgspec.Struct, frozen=True, kw_only=True):
    """The totals expected at one administration, given the baseline.

    ``lower``/``upper`` bound the expected totals (inclusive; either may be None for an open
    end); ``source`` names where the curve comes from and is shown with every alert it raises.
    """

    lower: float | None = None
    upper: float | None = None
    source: str
    label: str = "expected treatment response"

    def worse_than(self, total: float, direction: str) -> bool:
        """Whether ``total`` lies beyond the bound on the worse side (above ``upper`` when lower
        is better, below ``lower`` when higher is better). Better than expected is no alert."""
        if direction == "lower_is_better":
            return self.upper is not None and total > self.upper
        return self.lower is not None and total < self.lower
