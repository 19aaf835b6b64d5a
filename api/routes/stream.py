"""Live progress: Server-Sent Events of a client's plan and progress changes.

Each event carries an opaque ``id:`` cursor (the client's own change sequence,
never a global position); ``Last-Event-ID`` resumes with nothing missed, on
whichever worker the reconnect lands (the feed is in PostgreSQL). A subscriber
too slow to keep up is sent a final ``disconnect`` event with its last cursor,
rather than buffered without bound.
"""

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, get
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from api.auth import Principal
from api.routes.common import readable_client
from api.state import AppServices
from core.projections.feed import Change, decode_cursor

HEARTBEAT_SECONDS = 15.0
BUFFER = 64


async def _events(svc: AppServices, principal: Principal, client_id: UUID, after: str | None,
                  heartbeat: float) -> AsyncIterator[ServerSentEventMessage]:
    queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=BUFFER)
    overflow = asyncio.Event()

    async def pump() -> None:
        async for change in svc.feed.follow(client_id, after, tenant_id=principal.tenant_id):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                overflow.set()
                return

    task = asyncio.create_task(pump())
    last = after or ""
    try:
        yield ServerSentEventMessage(event="ready", data=msgspec.json.encode({"cursor": last}).decode(),
                                     retry=2000)
        while True:
            if overflow.is_set() and queue.empty():
                yield ServerSentEventMessage(event="disconnect", id=last, data=msgspec.json.encode(
                    {"reason": "too_slow", "resume_from": last}).decode())
                return
            try:
                async with asyncio.timeout(heartbeat):  # not wait_for: no task per event
                    change = await queue.get()
            except TimeoutError:
                if task.done() and not overflow.is_set():
                    task.result()  # surface a feed failure
                yield ServerSentEventMessage(comment="heartbeat")
                continue
            last = change.cursor
            yield ServerSentEventMessage(event=change.kind, id=change.cursor,
                                         data=msgspec.json.encode(change.view).decode())
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@get("/clients/{client_id:uuid}/progress/stream", operation_id="streamProgress", tags=["views"],
     summary="Server-Sent Events of plan and progress changes; resume with Last-Event-ID")
async def stream_progress(
    request: Request, client_id: UUID, principal: Principal, svc: AppServices,
    heartbeat: Annotated[float, QueryParameter(name="heartbeat", description="seconds between heartbeats")]
    = HEARTBEAT_SECONDS,
    after: Annotated[str | None, QueryParameter(
        name="after", description="resume after this cursor (for clients that cannot send Last-Event-ID)")] = None,
    last_event_id: Annotated[str | None, HeaderParameter(
        name="Last-Event-ID", description="the id of the last event received: resume with nothing missed")] = None,
) -> ServerSentEvent:
    await readable_client(svc, request, principal, client_id, "stream")
    after = last_event_id or after
    if after is None:
        after = await svc.feed.head(client_id)  # a fresh subscriber gets what changes from now on
    else:
        decode_cursor(after)  # a cursor we did not issue is a 422 now, not a stream that dies later
    heartbeat = min(max(heartbeat, 0.2), 60.0) if math.isfinite(heartbeat) else HEARTBEAT_SECONDS
    return ServerSentEvent(_events(svc, principal, client_id, after, heartbeat),
                           headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


STREAM_ROUTES: list[Any] = [stream_progress]
