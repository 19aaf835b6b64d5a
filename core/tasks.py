"""Background tasks: stopping one so that it really stops, and one sharing the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], *, every: float = 1.0) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again every ``every`` seconds.

    One ``cancel()`` is not always enough on Python 3.11: ``asyncio.wait_for`` (which drivers
    such as aiosmtplib use for their timeouts) can swallow a cancellation that arrives as its
    inner await completes, and the task then carries on its loop; a plain ``await task`` after
    that waits for ever (seen: a dispatcher's ``stop()`` hung a test for its whole timeout).
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


async def stop_tasks(tasks: list[asyncio.Task[Any]], *, every: float = 1.0) -> None:
    """Stop every task in ``tasks`` (all cancelled at once, then each waited for as above).

    A shutdown path that cancels once and awaits inherits the hang ``cancel_and_wait`` exists
    for: seen in CI, an app's lifespan waited 300 s on its notification dispatcher.
    """
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(cancel_and_wait(task, every=every) for task in tasks))


#: Longest stretch of CPU-bound work a background task does before letting requests run.
TURN_SECONDS = 0.005


class Turns:
    """Lets a background task's long in-memory work share the event loop with requests.

    ``await turns.take()`` inside a loop yields to the event loop once ``TURN_SECONDS`` of work
    have passed since the last yield (and costs a clock read otherwise). Seen without it: the
    projection runner folded a batch of ~150 events in one go, holding the loop 100-280 ms, so
    every pool connection out at that moment stayed out (30 ms held on average for a 0.1 ms
    query), requests queued for connections, and with 400 live streams a measurement POST took
    p50 300 ms and an update p99 2.5 s while both cores were two-thirds idle.
    """

    __slots__ = ("_since", "_turn")

    def __init__(self, turn_seconds: float | None = None) -> None:
        self._turn = TURN_SECONDS if turn_seconds is None else turn_seconds
        self._since = time.perf_counter()

    async def take(self) -> None:
        if time.perf_counter() - self._since >= self._turn:
            await asyncio.sleep(0)
            self._since = time.perf_counter()
