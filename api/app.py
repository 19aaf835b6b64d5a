"""The Litestar application: ``create_app()`` and the lifespan that owns its resources.

The lifespan opens the runtime (database, migrations, store), the plugin manager
and the instrument registry, the change feed, and the projection runners (one
process at a time runs each projection; the others stand by and take over).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from alliance.api.auth import TokenVerifier
from alliance.api.background import start_background
from alliance.api.cors import cors_config
from alliance.api.errors import EXCEPTION_HANDLERS, Problem
from alliance.api.idempotency import Claims, forget_expired
from alliance.api.input_limits import DEFAULT_BODY_BYTES, bound_request_bodies
from alliance.api.metrics import instrument_replica, instrument_store, observe_request
from alliance.api.openapi_doc import document_handlers, finish_document
from alliance.api.openapi_viewer import viewer_files, viewer_plugin
from alliance.api.routes.clients import CLIENT_ROUTES
from alliance.api.routes.clinic import CLINIC_ROUTES
from alliance.api.routes.compliance import COMPLIANCE_ROUTES
from alliance.api.routes.goals import GOAL_ROUTES
from alliance.api.routes.identity import IDENTITY_ROUTES, identity_link_lookup
from alliance.api.routes.links import LINK_ROUTES
from alliance.api.routes.me import who_am_i
from alliance.api.routes.metrics import metrics
from alliance.api.routes.reminders import REMINDER_ROUTES
from alliance.api.routes.stream import STREAM_ROUTES
from alliance.api.routes.stream_tickets import STREAM_TICKET_ROUTES
from alliance.api.routes.system import SYSTEM_ROUTES
from alliance.api.state import AppServices, derive_mac_key, provide_principal, provide_services
from alliance.api.stream_tickets import redact_tickets
from alliance.api.webapp import webapp_router
from alliance.core.compliance.receipts import issue_receipts
from alliance.core.compliance.signing import Signer
from alliance.core.events.crypto import load_kek
from alliance.core.handling import CommandHandler
from alliance.core.logging import configure_logging, get_logger
from alliance.core.notifications.service import notification_channels
from alliance.core.plain_language import glossary_from_plugins, use_glossary
from alliance.core.projections.feed import ChangeFeed
from alliance.core.projections.queries import Fetched, fetched_weight
from alliance.core.projections.registry import PROJECTIONS
from alliance.core.projections.view_cache import ViewCache
from alliance.core.runtime import open_runtime
from alliance.core.settings import Settings, load_settings
from alliance.core.tasks import stop_tasks
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager, write_fingerprints

log = get_logger("alliance.http")

API_VERSION = "0.1.0"


_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def _request_logging(app: ASGIApp) -> ASGIApp:
    """Method, route, status, duration and request id for every request; never bodies."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":  # a caller's own id, if it is a plain token (logs stay clean)
                request_id = value.decode("latin-1")[:64] if _REQUEST_ID.fullmatch(value) else ""
                break
        request_id = request_id or os.urandom(16).hex()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            route = scope.get("path_template") or "<unmatched>"  # a template: never an id (metrics labels)
            seconds = time.perf_counter() - started
            log.info("request", method=scope.get("method"), route=route,
                     status=status, ms=round(seconds * 1000, 2), request_id=request_id)
            observe_request(str(scope.get("method")), route, status, seconds)

    return middleware


async def forget_idempotency_keys_periodically(pool: Any, settings: Settings) -> None:
    """Forget Idempotency-Keys older than ``idempotency_hours``, checking every few minutes.
    Every worker may do it: a DELETE of expired rows is harmless to repeat."""
    while True:
        try:
            forgotten = await forget_expired(pool, older_than_hours=settings.idempotency_hours)
            if forgotten:
                log.info("idempotency_keys_forgotten", rows=forgotten)
        except Exception as exc:  # retried next round; the error class is in the log
            log.warning("idempotency_cleanup_failed", error=type(exc).__name__)
        await asyncio.sleep(min(900.0, settings.idempotency_hours * 3600.0 / 4))


def document_problems(handlers: list[Any]) -> None:
    """Every route answers errors as RFC 9457 problem details: say so in the OpenAPI document."""
    described = {400: "Malformed request", 401: "Missing or invalid bearer token", 403: "Not allowed",
                 404: "Unknown (or another clinic's) resource", 409: "Conflict with the current state",
                 412: "If-Match did not hold", 413: "The body is larger than the route accepts",
                 415: "The body is not JSON (application/json)",
                 422: "Invalid input: `code` and `field` say what and where",
                 429: "Too many failed authentications from this address (see Retry-After)",
                 503: "Temporarily unavailable (retry; an Idempotency-Key makes it safe)"}
    for handler in handlers:
        existing = dict(handler.responses or {})
        for status, description in described.items():
            existing.setdefault(status, ResponseSpec(data_container=Problem, description=description,
                                                     media_type="application/problem+json",
                                                     generate_examples=False))
        handler.responses = existing


def create_app(settings: Settings | None = None, *, run_projections: bool = True) -> Litestar:
    settings = settings or load_settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    tokens = TokenVerifier(settings)  # refuses to build without a secret or an issuer

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_runtime(settings, pool_size=20) as runtime:
            plugins = get_plugin_manager(settings.plugins_dir)
            use_glossary(glossary_from_plugins(plugins))  # plugin jargon feeds the plain-language check
            fingerprints = settings.home / "instrument-fingerprints.json"
            registry = InstrumentRegistry.from_plugin_manager(plugins, known_fingerprints=fingerprints)
            with contextlib.suppress(OSError):
                fingerprints.parent.mkdir(parents=True, exist_ok=True)
                write_fingerprints(fingerprints, registry.fingerprint_record())
            kek = load_kek(path=settings.kek_path, inline=settings.kek)
            views: ViewCache[Fetched] = ViewCache(max_age=settings.view_cache_seconds, weigh=fetched_weight)
            feed = ChangeFeed(runtime.pool, dsn=runtime.target.app_dsn, keys=runtime.keys, instruments=registry,
                              views=views)
            if settings.view_cache_seconds > 0:
                feed.start()
            instrument_store(runtime.store)  # append latencies and counts for /metrics
            instrument_replica(runtime.replica)  # reads sent to the primary instead of the standby
            handler = CommandHandler(runtime.store, scorer=registry.score)

            def key_destroyed(_subject: object) -> None:
                handler.cache.clear()
                views.clear()

            runtime.store.on_key_destroyed(key_destroyed)
            # A gap in the notifications may hide a destruction: drop every decrypted copy at once.
            runtime.store.on_notification_gap(lambda: key_destroyed(None))
            svc = AppServices(runtime=runtime, handler=handler, plugins=plugins,
                              instruments=registry, tokens=tokens, feed=feed, views=views,
                              mac_key=derive_mac_key(kek))
            channels = notification_channels(plugins, settings)  # validated even when not dispatching
            svc.channels = channels
            svc.signer = Signer.open(settings.signing_key_path)
            signer = svc.signer

            async def receipts(events: list[Any]) -> list[dict[str, Any]]:
                return await issue_receipts(runtime.pool, events, signer) if events else []

            svc.issue_receipts = receipts
            svc.tasks.append(asyncio.create_task(
                forget_idempotency_keys_periodically(runtime.pool, settings), name="idempotency-retention"))
            if run_projections and settings.background == "inline":
                # The background leaders (api/background.py): one process leads each, the others
                # stand by. ALLIANCE_BACKGROUND=off leaves them to `alliance projector`.
                svc.background = start_background(runtime, settings=settings, plugins=plugins, registry=registry,
                                                   channels=channels, mac_key=svc.mac_key, signer=signer)
                svc.runners.extend(svc.background.runners)
                svc.tasks.extend(svc.background.tasks)
            tokens.links = identity_link_lookup(runtime.pool)
            app.state.services = svc
            # This worker's liveness lock and its queue of Idempotency-Key claims to release.
            app.state.idempotency = await Claims.open(runtime.pool, runtime.target.app_dsn)
            # Everything imported and built so far lives as long as the process: move it out of
            # the collector's sight, so a full collection walks what requests made, not the
            # ~100k objects of the imported modules (measured: gen-2 pauses of 50-150 ms).
            gc.collect()
            gc.freeze()
            log.info("started", projections=len(PROJECTIONS) if svc.background is not None else 0,
                     background="here" if svc.background is not None else "elsewhere (alliance projector)",
                     instruments=len(registry.definitions()))
            try:
                yield
            finally:
                gc.unfreeze()  # what the app held may now go (tests start several apps in one process)
                await stop_tasks(svc.tasks)  # cancelled again until each has ended (core/tasks.py)
                await feed.close()
                await app.state.idempotency.close()

    openapi = OpenAPIConfig(
        title="Alliance", version=API_VERSION,
        description="Collaborative therapeutic goal setting: every proposal, revision, agreement, consent and "
                    "measurement is an immutable event; plans, progress and decision history are projections.",
        path="/schema", render_plugins=[viewer_plugin(), JsonRenderPlugin(), YamlRenderPlugin()],  # Redoc, vendored
        components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer",
                                                                         bearer_format="JWT")}),
        security=[{"bearer": []}],
        use_handler_docstrings=False,
    )
    handlers = [*SYSTEM_ROUTES, *CLINIC_ROUTES, *CLIENT_ROUTES, *GOAL_ROUTES, *STREAM_ROUTES, *STREAM_TICKET_ROUTES,
                *COMPLIANCE_ROUTES,
                *IDENTITY_ROUTES, *LINK_ROUTES, *REMINDER_ROUTES]
    handlers.append(who_am_i)  # GET /me: whose views a page signed in through the provider opens
    document_handlers(handlers)  # descriptions and headers shared code sends: api/openapi_doc.py
    document_problems(handlers)
    bound_request_bodies(handlers)
    web = [webapp_router(settings)] if settings.web_app else []  # the reference web app at /app/
    web.append(viewer_files())  # the API viewer's vendored files (api/openapi_viewer.py)
    app = Litestar(
        route_handlers=[*handlers, *web, metrics],  # /metrics: ALLIANCE_METRICS_TOKEN, api/metrics.py
        lifespan=[lifespan],
        dependencies={"principal": Provide(provide_principal),
                      "svc": Provide(provide_services, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[_request_logging, redact_tickets],
        cors_config=cors_config(settings),  # ALLIANCE_CORS_ORIGINS: api/cors.py
        openapi_config=openapi,
        request_max_body_size=DEFAULT_BODY_BYTES,  # each route's own limit: api/input_limits.py
        logging_config=None,
        debug=False,
    )
    finish_document(app.openapi_schema)  # built once here: tags, header parameters, public routes, examples
    return app
