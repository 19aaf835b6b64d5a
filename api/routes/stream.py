"""Live progress: Server-Sent Events of a client's plan and progress changes, and of a caseload.

Each event of a client's stream carries an opaque ``id:`` cursor (the client's own change
sequence, never a global position), the first (``ready``) too; ``Last-Event-ID`` resumes with
nothing missed, on whichever worker the reconnect lands (the feed is in PostgreSQL).

A stream lives only while its reader may read (``api/stream_guard.py``): the server ends it
with a final ``closed`` event — ``{"reason", "code"?, "resume_from"}`` — when access is revoked,
the client is erased, the token expires, or the reader is too slow to keep up (rather than
buffering without bound); a reader that stops reading altogether is dropped.

``/caseload/stream`` tells a clinician which clients of their caseload changed (ids only, no
personal text: they read the views with the GETs, which are access-logged), so one stream
serves a whole caseload.
"""

import asyncio
import contextlib
import math
import time
import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, get
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from alliance.api.auth import Principal
from alliance.api.errors import Problem
from alliance.api.routes.common import readable_client
from alliance.api.state import AppServices, require_active_staff
from alliance.api.stream_guard import (
    StallGuard,
    StreamClosed,
    StreamGrant,
    StreamRegistry,
    Supervision,
    check_access,
    registry,
    seconds_left,
)
from alliance.api.stream_tickets import stream_grant
from alliance.core.errors import Forbidden
from alliance.core.identity import Role
from alliance.core.logging import get_logger
from alliance.core.projections.feed import Change, decode_cursor

log = get_logger("alliance.streams")

HEARTBEAT_SECONDS = 15.0
BUFFER = 64
#: Documented on both stream routes (the other problems are added for every route in api/app.py).
TOO_MANY = {429: ResponseSpec(data_container=Problem, media_type="application/problem+json", generate_examples=False,
                              description="The principal holds as many streams as it may (`too_many_streams`, "
                                          "`Retry-After`)")}
_POKE = object()
#: Browsers' EventSource cannot send Authorization: a ticket from POST …/stream-tickets instead.
TICKET = ("a single-use stream ticket (POST …/stream-tickets) instead of the Authorization header, for "
          "EventSource; spent, expired or unknown: 401 `stream_ticket_invalid`")


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _heartbeat(value: float) -> float:
    return min(max(value, 0.2), 60.0) if math.isfinite(value) else HEARTBEAT_SECONDS


class _Wait:
    """The loop's next wake-up: a change, a poke, a heartbeat, a re-check or the grant's end."""

    def __init__(self, sup: Supervision, reg: StreamRegistry, heartbeat: float) -> None:
        self.sup = sup
        self.heartbeat = heartbeat
        self.recheck = reg.limits.recheck_seconds
        now = time.monotonic()
        self.next_beat = now + heartbeat
        self.next_check = now + self.recheck

    def sent(self) -> None:
        self.next_beat = time.monotonic() + self.heartbeat

    def check_due(self) -> bool:
        if self.sup.poked or time.monotonic() >= self.next_check:
            self.sup.poked = False
            self.next_check = time.monotonic() + self.recheck
            return True
        return False

    def timeout(self) -> float:
        now = time.monotonic()
        return max(0.0, min(self.next_beat - now, self.next_check - now, seconds_left(self.sup.grant)))

    def beat_due(self) -> bool:
        return time.monotonic() >= self.next_beat


def _closing(exc: StreamClosed, last: str | None) -> ServerSentEventMessage:
    # No ``id:``: EventSource keeps the last change's cursor as its Last-Event-ID anyway, and a
    # reader counting cursors must not see the last one twice. ``resume_from`` says it.
    log.info("stream_closed", reason=exc.reason, code=exc.code)
    return ServerSentEventMessage(event="closed", data=_json(exc.data(last)))


async def _recheck(svc: AppServices, sup: Supervision, client_id: UUID) -> None:
    if seconds_left(sup.grant) <= 0:
        raise StreamClosed("token_expired")
    try:
        await check_access(svc, sup.grant.principal, client_id, sup=sup)
    except StreamClosed:
        raise
    except Exception as exc:  # cannot tell whether access still holds: close, the reconnect will know
        log.warning("stream_recheck_failed", error=type(exc).__name__)
        raise StreamClosed("unavailable") from None


async def _client_events(svc: AppServices, reg: StreamRegistry, sup: Supervision, guard: StallGuard,
                         client_id: UUID, after: str, heartbeat: float) -> AsyncIterator[ServerSentEventMessage]:
    principal = sup.grant.principal
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=BUFFER)
    overflow = asyncio.Event()

    async def pump() -> None:
        async for change in svc.feed.follow(client_id, after, tenant_id=principal.tenant_id):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                overflow.set()
                return

    def wake() -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a full queue wakes the loop anyway
            queue.put_nowait(_POKE)

    sup.wake = wake
    task = asyncio.create_task(pump())
    guard.start()
    wait = _Wait(sup, reg, heartbeat)
    last = after
    try:
        guard.writing()
        yield ServerSentEventMessage(event="ready", id=last or None, data=_json({"cursor": last}), retry=2000)
        guard.written()
        while True:
            try:
                if wait.check_due() or seconds_left(sup.grant) <= 0:
                    await _recheck(svc, sup, client_id)
                if overflow.is_set() and queue.empty():
                    raise StreamClosed("too_slow")
                try:
                    async with asyncio.timeout(wait.timeout()):  # not wait_for: no task per event
                        item = await queue.get()
                except TimeoutError:
                    if task.done() and not overflow.is_set():  # the feed failed (the database went away)
                        log.warning("stream_feed_failed", error=type(task.exception()).__name__)
                        raise StreamClosed("unavailable") from None
                    if wait.beat_due():
                        guard.writing()
                        yield ServerSentEventMessage(comment="heartbeat")
                        guard.written()
                        wait.sent()
                    continue
                if item is _POKE:
                    continue
                change: Change = item
                if sup.rechecks_every_change:  # no view leaves after the event that revoked it
                    await _recheck(svc, sup, client_id)
            except StreamClosed as exc:
                guard.writing()
                yield _closing(exc, last)
                return
            last = change.cursor
            guard.writing()
            yield ServerSentEventMessage(event=change.kind, id=change.cursor, data=_json(change.view))
            guard.written()
            wait.sent()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await guard.stop()
        reg.release(sup)


async def _open(request: Request[Any, Any, Any], svc: AppServices, grant: StreamGrant,
                clients: set[UUID]) -> tuple[StreamRegistry, Supervision]:
    reg = registry(request, svc)
    return reg, await reg.reserve(grant, clients)  # TooManyStreams: 429 with Retry-After


def _sse(events: AsyncIterator[ServerSentEventMessage], reg: StreamRegistry, sup: Supervision) -> ServerSentEvent:
    # A stream whose generator never starts (the peer left first) still gives its place back.
    weakref.finalize(events, reg.release, sup)
    return ServerSentEvent(events, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@get("/clients/{client_id:uuid}/progress/stream", operation_id="streamProgress", tags=["views"],
     summary="Server-Sent Events of plan and progress changes; resume with Last-Event-ID", responses=TOO_MANY,
     media_type="text/event-stream",
     description="Events: `ready` (its `id` is the current cursor), `plan`, `progress`, `history` (each with "
                 "its cursor as `id`), heartbeat comments, and a final `closed` "
                 '(`{"reason": "access_revoked"|"client_erased"|"token_expired"|"too_slow"|"unavailable", '
                 '"code"?, "resume_from"}`) when the server ends the stream. 429 beyond the streams a '
                 "principal may hold open.")
async def stream_progress(
    request: Request, client_id: UUID, svc: AppServices,
    heartbeat: Annotated[float, QueryParameter(name="heartbeat", description="seconds between heartbeats")]
    = HEARTBEAT_SECONDS,
    after: Annotated[str | None, QueryParameter(
        name="after", description="resume after this cursor (for clients that cannot send Last-Event-ID)")] = None,
    last_event_id: Annotated[str | None, HeaderParameter(
        name="Last-Event-ID", description="the id of the last event received: resume with nothing missed")] = None,
    ticket: Annotated[str | None, QueryParameter(name="ticket", description=TICKET)] = None,
) -> ServerSentEvent:
    grant = await stream_grant(request, svc, "progress", client_id, ticket)
    principal = grant.principal
    await readable_client(svc, request, principal, client_id, "stream")  # staff: access-logged like any read
    after = last_event_id or after
    if after is None:
        after = await svc.feed.head(client_id)  # a fresh subscriber gets what changes from now on
    else:
        decode_cursor(after)  # a cursor we did not issue is a 422 now, not a stream that dies later
    reg, sup = await _open(request, svc, grant, {client_id})
    guard = StallGuard(request, reg.limits)
    return _sse(_client_events(svc, reg, sup, guard, client_id, after, _heartbeat(heartbeat)), reg, sup)


# --- the caseload -------------------------------------------------------------------------------


def require_caseload_reader(principal: Principal) -> None:
    """Who may follow a caseload (the stream and its tickets)."""
    if principal.role not in (Role.CLINICIAN, Role.SUPERVISOR):
        raise Forbidden("the caseload stream is for clinicians and supervisors", code="role_not_allowed")


async def caseload(svc: AppServices, principal: Principal) -> set[UUID]:
    """The clients this clinician may stream now: on the care team (the GET's own check decides),
    not erased. One query for the clinic's client streams; states come from the handler's cache
    at the version just read, so only clients that changed are read again."""
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch("SELECT stream_id, version FROM streams WHERE tenant_id = $1 "
                                "AND stream_id LIKE 'client-%' AND version > 0", principal.tenant_id)
    mine: set[UUID] = set()
    for row in rows:
        client_id = UUID(row["stream_id"].removeprefix("client-"))
        state = (await svc.handler.load_client(client_id, known_version=row["version"])).state
        if principal.id != state.primary_clinician and principal.id not in state.care_team:
            continue
        try:
            await check_access(svc, principal, client_id)
        except StreamClosed:
            continue
        mine.add(client_id)
    return mine


def _removed_message(client: UUID, why: StreamClosed | None) -> ServerSentEventMessage:
    return ServerSentEventMessage(event="removed", data=_json(
        {"client_id": str(client), **(why.data(None) if why is not None else {})}))


async def _removed(svc: AppServices, sup: Supervision, client: UUID) -> ServerSentEventMessage:
    """A client who left the caseload, with the reason the GET would give now."""
    try:
        await _recheck(svc, sup, client)
    except StreamClosed as exc:
        return _removed_message(client, exc)
    return _removed_message(client, None)


async def _caseload_events(svc: AppServices, reg: StreamRegistry, sup: Supervision, guard: StallGuard,
                           heartbeat: float) -> AsyncIterator[ServerSentEventMessage]:
    principal = sup.grant.principal
    woken = asyncio.Event()
    sup.wake = woken.set
    guard.start()
    wait = _Wait(sup, reg, heartbeat)
    try:
        guard.writing()
        yield ServerSentEventMessage(event="ready", data=_json({"clients": sorted(map(str, sup.clients))}),
                                     retry=2000)
        guard.written()
        while True:
            out: list[ServerSentEventMessage] = []
            try:
                if seconds_left(sup.grant) <= 0:
                    raise StreamClosed("token_expired")
                if wait.check_due():
                    try:
                        await require_active_staff(svc, principal)
                        now_mine = await caseload(svc, principal)
                    except Forbidden as exc:
                        raise StreamClosed("access_revoked", exc.code) from None
                    except Exception as exc:
                        log.warning("stream_recheck_failed", error=type(exc).__name__)
                        raise StreamClosed("unavailable") from None
                    for client in sorted(now_mine - sup.clients):
                        reg.follow_client(sup, client)
                        out.append(ServerSentEventMessage(event="added", data=_json({"client_id": str(client)})))
                    for client in sorted(sup.clients - now_mine):
                        reg.unfollow_client(sup, client)
                        out.append(await _removed(svc, sup, client))
                changed, sup.changed = sup.changed or set(), set()
                for client in sorted(changed & sup.clients):
                    try:
                        await _recheck(svc, sup, client)
                    except StreamClosed as exc:
                        if exc.reason == "unavailable":
                            raise
                        if exc.code in {"staff_inactive", "role_mismatch"}:
                            raise
                        reg.unfollow_client(sup, client)
                        out.append(_removed_message(client, exc))
                        continue
                    out.append(ServerSentEventMessage(event="changed", data=_json({"client_id": str(client)})))
            except StreamClosed as exc:
                guard.writing()
                yield _closing(exc, None)
                return
            for message in out:
                guard.writing()
                yield message
                guard.written()
                wait.sent()
            if out:
                continue
            if not sup.changed and not sup.poked:
                woken.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait.timeout()):
                        await woken.wait()
            if wait.beat_due():
                guard.writing()
                yield ServerSentEventMessage(comment="heartbeat")
                guard.written()
                wait.sent()
    finally:
        await guard.stop()
        reg.release(sup)


@get("/caseload/stream", operation_id="streamCaseload", tags=["views"],
     summary="Server-Sent Events naming which clients of the caller's caseload changed (clinicians)",
     responses=TOO_MANY, media_type="text/event-stream",
     description="Events: `ready` (`{\"clients\": [...]}`), `changed` / `added` / `removed` "
                 "(`{\"client_id\"}`; ids only — read the views with the GETs), heartbeat comments, and a "
                 "final `closed` like the client stream's. Access to each client is checked again before "
                 "its change is announced; clients joining the caseload show within the re-check interval. "
                 "After a reconnect, reload `GET /clients`.")
async def stream_caseload(
    request: Request, svc: AppServices,
    heartbeat: Annotated[float, QueryParameter(name="heartbeat", description="seconds between heartbeats")]
    = HEARTBEAT_SECONDS,
    ticket: Annotated[str | None, QueryParameter(name="ticket", description=TICKET)] = None,
) -> ServerSentEvent:
    grant = await stream_grant(request, svc, "caseload", None, ticket)
    principal = grant.principal
    require_caseload_reader(principal)
    members = await caseload(svc, principal)
    reg, sup = await _open(request, svc, grant, members)
    sup.changed = set()
    guard = StallGuard(request, reg.limits)
    return _sse(_caseload_events(svc, reg, sup, guard, _heartbeat(heartbeat)), reg, sup)


STREAM_ROUTES: list[Any] = [stream_progress, stream_caseload]
