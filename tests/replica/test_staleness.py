"""How stale a standby may be, from two positions and its last replayed commit (pure)."""

from __future__ import annotations

import math

from alliance.core.events.replica import Sample, staleness


def test_a_standby_at_the_primarys_position_is_current_however_long_the_primary_was_idle():
    # nothing committed for ten minutes: the last replayed commit is old, but nothing is missing
    assert staleness(5000, 5000, 600.0, None, now=100.0) == 0.0
    assert staleness(5000, 5100, 600.0, None, now=100.0) == 0.0  # read after the primary: may be ahead


def test_behind_it_is_the_age_of_its_last_replayed_commit():
    assert staleness(5000, 4000, 2.5, None, now=100.0) == 2.5
    assert staleness(5000, 4000, None, None, now=100.0) == math.inf  # never replayed a commit: unknown


def test_behind_after_an_idle_spell_it_is_bounded_by_the_previous_sample_it_has_passed():
    previous = Sample(taken=99.2, reason=None, primary_lsn=3900, replay_lsn=3900, lag=0.0)
    # a write just arrived after ten idle minutes: at most what came since the previous sample is missing
    assert math.isclose(staleness(5000, 4000, 600.0, previous, now=100.0), 0.8)
    # a previous sample it has not passed, or one of an unusable standby, bounds nothing
    assert staleness(5000, 3800, 600.0, previous, now=100.0) == 600.0
    unusable = Sample(taken=99.2, reason="unreachable")
    assert staleness(5000, 4000, 600.0, unusable, now=100.0) == 600.0
