"""Measures attached by the previous main (free-text schedule, ``goal.measure_attached`` v1) read
as structured schedules: stored as rows of a real store (PostgreSQL and memory) by a codec that
writes the old bytes, read back through the upcaster with the day they were attached."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from alliance.core.events.codec import EncodedPayload
from alliance.core.events.crypto import MemoryKeyRing, PostgresKeyRing
from alliance.core.events.envelope import NewEvent
from alliance.core.events.memory import MemoryEventStore
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.goal import MeasureAttached, evolve_goal, initial_goal_state
from alliance.core.identity import Role
from alliance.core.runtime import domain_codec
from alliance.core.schedules import Schedule
from tests.database import TEST_KEK

CLINICIAN = "00000000-0000-0000-0000-00000000c001"


def v1(text: str) -> bytes:
    """What the previous main's codec wrote for a measure attached with free text."""
    return (f'{{"type":"goal.measure_attached","instrument_id":"phq9","schedule":"{text}",'
            f'"by":"{CLINICIAN}","by_role":"clinician"}}').encode()


@pytest.fixture(params=["memory", "postgres"])
async def old_store(request: pytest.FixtureRequest, app_pool: Any, database: Any) -> AsyncIterator[Any]:
    codec = domain_codec()
    original = codec.encode

    def old_encode(payload: Any) -> EncodedPayload:
        if isinstance(payload, MeasureAttached):
            return EncodedPayload("goal.measure_attached", 1, v1(payload.schedule.text or ""), None)
        return original(payload)

    codec.encode = old_encode  # type: ignore[method-assign]
    if request.param == "memory":
        yield MemoryEventStore(codec, MemoryKeyRing())
    else:
        pg = PostgresEventStore(app_pool, codec, PostgresKeyRing(app_pool, TEST_KEK), dsn=database.app_dsn)
        yield pg
        await pg.close()
    codec.encode = original  # type: ignore[method-assign]


@pytest.mark.parametrize(("text", "expected"), [
    ("weekly", Schedule(kind="every", interval=1, unit="weeks", start=date(2026, 3, 4))),
    ("P14D", Schedule(kind="every", interval=14, unit="days", start=date(2026, 3, 4))),
    ("monthly", Schedule(kind="legacy", start=date(2026, 3, 4), text="monthly")),
])
async def test_a_stored_v1_attachment_reads_as_a_schedule_from_its_day(old_store: Any, text: str,
                                                                       expected: Schedule) -> None:
    goal, tenant, client = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    stream = f"goal-{goal}"
    attached = datetime(2026, 3, 4, 9, 15, tzinfo=UTC)
    placeholder = MeasureAttached(instrument_id="phq9", schedule=Schedule(kind="legacy", start=date(2000, 1, 1),
                                                                          text=text),
                                  by=uuid.UUID(CLINICIAN), by_role=Role.CLINICIAN)
    await old_store.append(stream, [NewEvent(event_id=uuid.uuid4(), payload=placeholder, tenant_id=tenant,
                                             subject_id=client, actor_id=uuid.UUID(CLINICIAN),
                                             actor_role=Role.CLINICIAN, occurred_at=attached)], 0)
    [event] = await old_store.read_stream(stream)
    assert event.schema_version == 1 and MeasureAttached.schema_version == 2
    assert event.payload.schedule == expected
    # the folded goal keeps working: the schedule in words as before, and the structured one
    state = evolve_goal(initial_goal_state(goal), event.payload)
    assert state.measures == {"phq9": "weekly" if text == "weekly" else ("every 14 days" if text == "P14D"
                                                                          else "monthly")}
    assert state.schedules == {"phq9": expected}
