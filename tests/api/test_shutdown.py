"""Shutting the app down ends every background task, even one that swallows a cancellation.

Seen in CI (stop 20): the served app's lifespan cancelled each task once and awaited it; its
notification dispatcher, inside aiosmtplib's ``asyncio.wait_for``, lost that cancellation on
Python 3.11 and carried on, so the lifespan waited until pytest-timeout ended the test (300 s).
"""

from __future__ import annotations

import asyncio
import time

from alliance.api.app import create_app
from alliance.core.tasks import stop_tasks
from tests.api.conftest import api_settings, running


async def swallows_one_cancellation(cancelled: list[float]) -> None:
    """A background loop whose first cancellation is lost, as in ``wait_for`` on Python 3.11."""
    swallowed = False
    while True:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            cancelled.append(time.monotonic())
            if swallowed:
                raise
            swallowed = True


async def test_one_cancel_then_await_does_not_end_such_a_task() -> None:
    """The premise: the shutdown the lifespan used before waits for ever on this task."""
    task = asyncio.create_task(swallows_one_cancellation([]))
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    assert not done, "one cancel() ended the task: the premise of stop_tasks no longer holds"
    await stop_tasks([task], every=0.1)
    assert task.done()


async def test_stop_tasks_ends_every_task_even_one_that_swallows_a_cancellation() -> None:
    seen: list[float] = []
    stubborn = asyncio.create_task(swallows_one_cancellation(seen))
    plain = asyncio.create_task(asyncio.sleep(3600))
    finished = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    await stop_tasks([stubborn, plain, finished], every=0.2)
    assert stubborn.done() and plain.cancelled() and finished.done()
    assert len(seen) == 2, f"the stubborn task saw {len(seen)} cancellations, expected 2"
    assert time.monotonic() - started < 2.0


async def test_the_apps_lifespan_ends_with_a_task_that_swallows_a_cancellation(database, tmp_path) -> None:
    app = create_app(api_settings(database, tmp_path / "home"), run_projections=False)
    seen: list[float] = []
    started = 0.0
    async with running(app):
        stubborn = asyncio.create_task(swallows_one_cancellation(seen))
        app.state.services.tasks.append(stubborn)
        await asyncio.sleep(0.01)
        started = time.monotonic()
    took = time.monotonic() - started
    assert stubborn.done(), "the lifespan ended with its task still running"
    assert len(seen) >= 2
    assert took < 5.0, f"shutdown took {took:.1f} s"
