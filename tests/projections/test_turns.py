"""The projection runner's fold shares the event loop with requests (core/tasks.py ``Turns``).

Seen in bench_api's SSE phase (400 live streams, 400 measurements/s): the runner folded each
batch of ~150 events in one stretch, holding the loop for 100-280 ms; every pool connection out
at that moment stayed out, requests queued for connections, and a measurement POST took p50
300 ms while both cores were two-thirds idle. Here the turn is 0 s, so the fold must let another
task run between any two events of a batch; the old fold let it run only at its few awaits on the
database, whatever the batch's size.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncpg

import alliance.core.tasks as tasks
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.projections.plan import PLAN
from alliance.core.projections.progress import PROGRESS
from alliance.core.projections.runner import active_target, apply_batch
from alliance.core.tasks import Turns
from tests.projections.helpers import Client


async def _fold_watched(conn: asyncpg.Connection, store: PostgresEventStore, projection: Any,
                        events: list[Any]) -> tuple[int, int, set[int]]:
    """Fold ``events`` with ``apply_batch`` while another task runs: (folded, events applied, how
    far the fold had got each time the other task ran)."""
    applied = 0

    def counting(doc: Any, event: Any, ctx: Any) -> Any:
        nonlocal applied
        applied += 1
        return projection.apply(doc, event, ctx)

    seen: set[int] = set()
    stop = asyncio.Event()

    async def request() -> None:  # stands for the requests the worker serves meanwhile
        while not stop.is_set():
            seen.add(applied)
            await asyncio.sleep(0)

    other = asyncio.create_task(request())
    await asyncio.sleep(0)
    target = await active_target(conn, dataclasses.replace(projection, apply=counting))
    folded = await apply_batch(conn, store, target, events, emit=False)
    stop.set()
    await other
    return folded, applied, seen


async def test_a_big_batch_lets_other_tasks_run_between_its_events(store: PostgresEventStore,
                                                                   app_pool: asyncpg.Pool, monkeypatch) -> None:
    clients = [Client().typical(measurements=10) for _ in range(12)]
    for c in clients:
        await c.flush(store)
    events = await store.read_all(limit=5000)
    assert len(events) > 150
    monkeypatch.setattr(tasks, "TURN_SECONDS", 0.0)
    for projection in (PLAN, PROGRESS):
        async with app_pool.acquire() as conn:
            folded, applied, seen = await _fold_watched(conn, store, projection, events)
        assert folded == applied == len([e for e in events if projection.wants(e)])
        # Between any two events of the fold the other task had its turn.
        assert set(range(applied)) <= seen, (projection.name, len(seen), applied)


async def test_turns_yield_only_once_their_time_has_passed() -> None:
    turns = Turns(turn_seconds=3600)
    ran = 0

    async def other() -> None:
        nonlocal ran
        ran += 1

    task = asyncio.create_task(other())
    for _ in range(1000):
        await turns.take()  # within its turn: never yields, so the other task has not run
    assert ran == 0
    await Turns(turn_seconds=0).take()
    await task
    assert ran == 1
