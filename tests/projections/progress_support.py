"""Folding a built history into the progress view, for the statistics tests.

The events go through the in-memory store (the same codec and encryption as PostgreSQL's)
and the projection's own fold and render, exactly what the runner stores and serves.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any
from uuid import UUID

from alliance.core.client import MeasurementRecorded, ReportedBy
from alliance.core.events.crypto import MemoryKeyRing
from alliance.core.events.memory import MemoryEventStore
from alliance.core.goal import (
    AttainmentScaleSet,
    GoalClosed,
    GoalEnteredInError,
    GoalWithdrawn,
    MeasureAttached,
    goal_stream,
)
from alliance.core.identity import Role
from alliance.core.projections.base import fold
from alliance.core.projections.progress import PROGRESS, render_progress
from alliance.core.schedules import parse_free_text
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.projections.helpers import Client, domain_codec

#: The free text measures were attached with, read as a schedule (``goal.measure_attached`` v2).
MONTHLY_SCHEDULE = parse_free_text("monthly", start=date(2026, 1, 5))

REGISTRY = InstrumentRegistry.from_plugin_manager(get_plugin_manager())


def scaled_goal(c: Client, *, weight: float = 1.0) -> UUID:
    """An agreed, active goal with a five-level attainment scale of the given weight."""
    gid = c.goal()
    c._add(goal_stream(gid), AttainmentScaleSet(levels=tuple(f"level {i}" for i in range(-2, 3)), weight=weight,
                                                **c.by(Role.CLIENT)), role=Role.CLIENT)
    c._add(goal_stream(gid), MeasureAttached(instrument_id="gas", schedule=MONTHLY_SCHEDULE, **c.by()))
    return gid


def enter_goal_in_error(c: Client, gid: UUID) -> None:
    c._add(goal_stream(gid), GoalEnteredInError(reason="wrong client", **c.by()))


def withdraw_goal(c: Client, gid: UUID) -> None:
    c._add(goal_stream(gid), GoalWithdrawn(party="client", **c.by(Role.CLIENT)), role=Role.CLIENT)


def close_goal(c: Client, gid: UUID, outcome: str = "achieved") -> None:
    c._add(goal_stream(gid), GoalClosed(outcome=outcome, **c.by()))  # type: ignore[arg-type]


def rate(c: Client, level: float, *goals: UUID, instrument: str = "gas") -> UUID:
    """A rating as stored before ratings had to name their goal (``goals`` may be empty)."""
    return record(c, instrument, level, *goals)


def record(c: Client, instrument: str, total: float, *goals: UUID, informant: str = "self",
           relationship: str | None = None, channel: str | None = "app", role: Role | None = None) -> UUID:
    """A stored measurement of ``instrument`` with this total (answers are not re-scored by progress)."""
    mid = uuid.uuid4()
    role = role or {"self": Role.CLIENT, "proxy": Role.PROXY, "clinician": Role.CLINICIAN}[informant]
    c._add(c.stream, MeasurementRecorded(
        measurement_id=mid, instrument_id=instrument, instrument_version="1", fingerprint="x",
        answers={"item1": total}, scores={"total": float(total)},
        reported_by=ReportedBy(informant=informant, relationship=relationship, channel=channel),  # type: ignore[arg-type]
        observed_at=c.t, goal_ids=goals), role=role)
    c.measurements.append(mid)
    return mid


async def events_of(c: Client) -> list[Any]:
    store = MemoryEventStore(domain_codec(), MemoryKeyRing())
    await c.flush(store)
    return await store.read_all(limit=100_000)


async def progress_of(c: Client, *, instruments: Any = REGISTRY) -> dict[str, Any]:
    doc = fold(PROGRESS, await events_of(c))[c.client]
    return render_progress(doc, instruments=instruments)
