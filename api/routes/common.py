"""What the controllers share: seeing a client or goal, running a command once."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from litestar import Request, Response

from alliance.api.access import ReadKind, authorize_client, client_not_found, record_access
from alliance.api.auth import Principal
from alliance.api.idempotency import command_id_for, idempotency_key, run_idempotent
from alliance.api.state import AppServices
from alliance.core.client import ClientState
from alliance.core.errors import NotFound
from alliance.core.goal import GoalState
from alliance.core.handling import Loaded
from alliance.core.identity import Role


async def visible_client(svc: AppServices, principal: Principal, client_id: UUID, *,
                         known_version: int | None = None, write: bool = False) -> ClientState:
    """The client, if the caller may address it at all (404 otherwise: existence does not leak).

    Staff of the client's clinic get through; what they may do is the domain's call
    (care team, consent), so refusals keep their domain codes. ``known_version``: the client
    stream's version when the caller has just read it (no round trip when the state is cached).
    ``write``: the caller appends to the client's stream at the version it sees next
    (``handle_client(just_loaded=True)``), so a cached state lets it through without a read —
    the append's optimistic check proves it current — and only a refusal reads first.
    """
    if write and (trusted := svc.handler.trusted_client(client_id)) is not None:
        with contextlib.suppress(NotFound):
            return _visible(principal, client_id, trusted.state)
    loaded = await svc.handler.load_client(client_id, known_version=known_version)
    return _visible(principal, client_id, loaded.state)


def _visible(principal: Principal, client_id: UUID, client: ClientState) -> ClientState:
    if not client.enrolled or client.tenant_id != principal.tenant_id:
        raise client_not_found()
    if principal.role is Role.CLIENT and principal.id != client_id:
        raise client_not_found()
    if principal.role is Role.PROXY and principal.id not in client.proxies:
        raise client_not_found()
    return client


async def readable_client(svc: AppServices, request: Request[Any, Any, Any], principal: Principal,
                          client_id: UUID, kind: ReadKind, *, known_version: int | None = None) -> ClientState:
    """The client, if the caller may read this kind of record; staff reads are access-logged."""
    client = await visible_client(svc, principal, client_id, known_version=known_version)
    try:
        authorize_client(principal, client, kind, now=datetime.now(UTC))
    except Exception as exc:
        await record_access(svc.pool, principal, client_id, method=request.method,
                            route=_route(request), status=getattr(exc, "status", 403))
        raise
    await record_access(svc.pool, principal, client_id, method=request.method, route=_route(request), status=200)
    return client


def _route(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get("path_template") or request.url.path)


def goal_not_found() -> NotFound:
    return NotFound("no such goal", code="goal_not_found", field="goal_id")


async def visible_goal(svc: AppServices, principal: Principal, goal_id: UUID) -> tuple[Loaded, ClientState]:
    goal = await svc.handler.load_goal(goal_id)
    state: GoalState = goal.state
    if state.client_id is None or state.tenant_id != principal.tenant_id:
        raise goal_not_found()
    try:
        client = await visible_client(svc, principal, state.client_id)
    except NotFound:
        raise goal_not_found() from None
    return goal, client


async def run_command(request: Request[Any, Any, Any], svc: AppServices, principal: Principal,
                      work: Callable[[UUID], Awaitable[Response[Any]]]) -> Response[Any]:
    """Run ``work(command_id)`` at most once per Idempotency-Key."""
    command_id = command_id_for(principal, idempotency_key(request))
    return await run_idempotent(request, svc.pool, svc.mac_key, principal, lambda: work(command_id))


def if_match(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    from alliance.core.errors import ValidationError

    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ValidationError('If-Match must be an ETag from GET /goals/{goal_id} (e.g. "3")',
                              code="invalid_if_match", field="If-Match")
    return int(value)
