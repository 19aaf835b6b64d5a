"""Attached measures as the views show them at a moment: schedule, state and next due date.

Nothing here is stored: a view document keeps each measure's :class:`Schedule` and the
client's recent observations per instrument (:func:`remember`); the state of today's
administration (due, overdue, done…) and ``next_due`` are computed when the view is read,
with the app's clock (``core.schedules`` holds the rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import msgspec

from alliance.core.schedules import Observation, Schedule, describe, status, zone_of

#: Observations kept per instrument. Today's administration is done when a measurement lies
#: in its window, and the latest observation is the one that can (no measurement is observed
#: in the future); a few more stay so that one entered in error leaves the one before it.
KEPT_PER_INSTRUMENT = 8

Observations = dict[str, tuple[Observation, ...]]


def remember(kept: Observations, observation: Observation) -> Observations:
    """``kept`` with ``observation``, the latest :data:`KEPT_PER_INSTRUMENT` per instrument."""
    mine = sorted((*kept.get(observation.instrument_id, ()), observation),
                  key=lambda o: o.observed_at)[-KEPT_PER_INSTRUMENT:]
    return {**kept, observation.instrument_id: tuple(mine)}


def forget(kept: Observations, measurement_id: UUID) -> Observations:
    """``kept`` without the measurement (entered in error)."""
    return {k: tuple(o for o in v if o.measurement_id != measurement_id) for k, v in kept.items()}


def measure_row(instrument_id: str, schedule: Schedule | None, *, words: str | None,
                owner_id: UUID, goal_id: UUID | None, observations: Observations,
                now: datetime, checkpoints: Iterable[date] = ()) -> dict[str, Any]:
    """One attached measure for a view: ``schedule`` in words (as before), the structured
    schedule, today's administration and ``next_due`` (None with no structured schedule)."""
    row: dict[str, Any] = {"instrument_id": instrument_id,
                           "schedule": words if schedule is None else describe(schedule)}
    if schedule is None:
        row.update(schedule_detail=None, next_due=None, administration=None)
        return row
    read = status(schedule, owner_id=owner_id, instrument_id=instrument_id, goal_id=goal_id,
                  measurements=observations.get(instrument_id, ()), now=now,
                  checkpoints=checkpoints)
    row.update(schedule_detail=msgspec.to_builtins(schedule),
               next_due=read.next_due.isoformat() if read.next_due else None,
               administration=msgspec.to_builtins(read.current) if read.current else None)
    return row


def valid_until(schedules: Iterable[Schedule], now: datetime) -> datetime | None:
    """When a rendering with these schedules goes stale: the next local midnight in any of
    their time zones (states change with the client's date), or None with no schedule."""
    ends = []
    for schedule in schedules:
        zone = zone_of(schedule)
        local = now.astimezone(zone)
        ends.append(datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=zone))
    return min(ends) if ends else None


def valid_from(schedules: Iterable[Schedule], now: datetime) -> datetime | None:
    """The start of the local date ``now`` falls on, the latest across these schedules' time
    zones: a rendering at ``now`` holds for moments from then to :func:`valid_until`."""
    starts = [datetime.combine(now.astimezone(zone_of(s)).date(), time(), tzinfo=zone_of(s))
              for s in schedules]
    return max(starts) if starts else None


def states(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """The states of today's administrations among measure rows (for the caseload filters)."""
    return {str(r["administration"]["state"]) for r in rows if r.get("administration")}
