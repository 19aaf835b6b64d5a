"""The progress view's attached measures with today's administration and next due date.

The rendered progress view is cached without a time (its numbers do not change with the
clock); what does (due, overdue, next due) is added per read from the few inputs kept beside
it (:func:`due_inputs`), with the app's clock, and never stored.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import msgspec

from alliance.core.projections.plan import MEASURED
from alliance.core.projections.progress import ProgressDoc
from alliance.core.projections.schedule_view import KEPT_PER_INSTRUMENT, Observations, measure_row
from alliance.core.schedules import Observation, Schedule


class GoalSchedules(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    goal_id: UUID
    schedules: dict[str, Schedule]
    checkpoints: tuple[date, ...] = ()


class DueInputs(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    goals: tuple[GoalSchedules, ...] = ()
    observations: Observations = {}


def due_inputs(doc: ProgressDoc) -> DueInputs:
    """What the due dates of ``doc``'s attached measures are computed from: the schedules of
    goals being worked on, and the latest observations per instrument."""
    goals = tuple(GoalSchedules(goal_id=g.goal_id, schedules=dict(g.schedules),
                                checkpoints=tuple(c.provisional_date for c in g.checkpoints.values()
                                                  if not c.cancelled))
                  for g in doc.goals.values() if g.schedules and g.status in MEASURED)
    wanted = {i for g in goals for i in g.schedules}
    by_instrument: dict[str, list[Observation]] = {}
    for pt in doc.points.values():
        if pt.instrument_id in wanted and not pt.entered_in_error:
            by_instrument.setdefault(pt.instrument_id, []).append(Observation(
                measurement_id=pt.measurement_id, instrument_id=pt.instrument_id, observed_at=pt.observed_at))
    kept = {k: tuple(sorted(v, key=lambda o: o.observed_at)[-KEPT_PER_INSTRUMENT:]) for k, v in by_instrument.items()}
    return DueInputs(goals=goals, observations=kept)


def with_due(view: dict[str, Any], inputs: DueInputs, now: datetime) -> dict[str, Any]:
    """A copy of the progress ``view`` whose goals' attached measures carry ``next_due`` and
    today's ``administration`` at ``now`` (the cached view is left as it is)."""
    by_goal = {str(g.goal_id): g for g in inputs.goals}
    if not by_goal:
        return view
    goals = []
    for goal in view.get("goals", []):
        scheduled = by_goal.get(goal.get("goal_id"))
        if scheduled is None:
            goals.append(goal)
            continue
        measures = []
        for row in goal.get("measures", []):
            schedule = scheduled.schedules.get(row.get("instrument_id"))
            if schedule is not None:
                due = measure_row(row["instrument_id"], schedule, words=None, owner_id=scheduled.goal_id,
                                  goal_id=scheduled.goal_id, observations=inputs.observations, now=now,
                                  checkpoints=scheduled.checkpoints)
                row = {**row, "next_due": due["next_due"], "administration": due["administration"]}
            measures.append(row)
        goals.append({**goal, "measures": measures})
    return {**view, "goals": goals}
