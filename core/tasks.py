"""Stopping a background task so that it really stops."""

from __future__ import annotations

import asyncio
import contextlib
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
