"""Liveness, readiness and the instrument catalogue."""

import asyncio
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.openapi import ResponseSpec

from alliance.api.auth import Principal
from alliance.api.errors import database_outage, outage_reason
from alliance.api.schemas import Health, InstrumentList, Readiness
from alliance.api.state import AppServices
from alliance.core.errors import NotFound
from alliance.core.migrations import pending_migrations
from alliance.core.projections.rebuild import lag
from alliance.plugins.instruments import InstrumentDefinition

#: /ready fails when a projection is further behind than this.
READY_MAX_LAG_EVENTS = 1000
READY_MAX_LAG_SECONDS = 30.0
#: /ready answers within this even when the database does not (a hung check is no answer).
READY_DATABASE_SECONDS = 3.0
#: Not ready is the same document with ``not_ready`` (not a problem: it says which check failed).
READY_503 = ResponseSpec(data_container=Readiness, description="Not ready: `checks` says which check failed",
                         generate_examples=False)


@get("/health", operation_id="health", tags=["system"], summary="Liveness: the process answers", exclude_from_auth=True)
async def health() -> Health:
    return Health(status="ok")


@get("/ready", operation_id="ready", tags=["system"], responses={503: READY_503},
     summary="Readiness: database reachable, migrations applied, projections caught up within a bound")
async def ready(request: Request, svc: AppServices) -> Response[Readiness]:
    checks: dict[str, Any] = {}
    ok = True
    try:
        async with asyncio.timeout(READY_DATABASE_SECONDS), svc.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            pending = await pending_migrations(conn)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if not pending else f"pending: {[m.name for m in pending]}"
        ok = ok and not pending
        lags = await lag(svc.pool)
        checks["projections"] = {name: {"events_behind": events, "seconds_behind": round(seconds, 3)}
                                 for name, (events, seconds) in lags.items()}
        if any(events > READY_MAX_LAG_EVENTS or seconds > READY_MAX_LAG_SECONDS for events, seconds in lags.values()):
            ok = False
    except Exception as exc:  # the answer is "not ready", with a reason that names no one
        checks["database"] = f"unreachable: {outage_reason(exc)}" if database_outage(exc) \
            else f"error ({type(exc).__name__})"
        ok = False
    # Informational: whether this worker holds its liveness lock (retries elsewhere take over its
    # Idempotency-Key claims while it does not) and whether failed requests' claims still wait to
    # be released (a yes, not a count: /ready is public).
    claims = getattr(request.app.state, "idempotency", None)
    if claims is not None:
        checks["idempotency"] = {"liveness_lock": "held" if claims.liveness.held else "reconnecting",
                                 "releases_pending": claims.pending_releases > 0}
    # Informational: a cache that is not listening serves nothing (reads go to the database).
    # No counts: /ready is public, and traffic figures would tell one clinic about the others.
    checks["view_cache"] = {"listening": svc.views.enabled, "max_age_seconds": svc.views.max_age}
    # Informational: whether projections, notifications, reminders, alerts and anchors run in this
    # process (ALLIANCE_BACKGROUND) and which of them it leads; the names are fixed, never counts.
    background = svc.background
    checks["background"] = {"runs_here": background is not None,
                            "leading": background.leading if background is not None else {}}
    return Response(msgspec.json.encode({"status": "ready" if ok else "not_ready", "checks": checks}),
                    status_code=200 if ok else 503, media_type="application/json")


@get("/instruments", operation_id="listInstruments", tags=["instruments"],
     summary="Every installed instrument definition (a frontend renders them as forms)")
async def list_instruments(principal: Principal, svc: AppServices) -> Response[InstrumentList]:
    return Response(msgspec.json.encode({"instruments": svc.instruments.definitions()}),
                    media_type="application/json")


@get("/instruments/{instrument_id:str}", operation_id="getInstrument", tags=["instruments"],
     summary="One instrument definition (latest version, or ?version=)")
async def get_instrument(instrument_id: str, principal: Principal, svc: AppServices,
                         version: str | None = None) -> Response[InstrumentDefinition]:
    try:
        definition = svc.instruments.get(instrument_id, version)
    except (KeyError, NotFound):
        raise NotFound(f"no instrument {instrument_id!r}", code="instrument_not_found",
                       field="instrument_id") from None
    return Response(msgspec.json.encode(definition), media_type="application/json")


SYSTEM_ROUTES = [health, ready, list_instruments, get_instrument]
