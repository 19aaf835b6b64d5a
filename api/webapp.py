"""The reference web app at ``/app/``: static HTML, ES modules and CSS from ``api/webapp/``.

The pages use only the public HTTP API (bearer tokens, stream tickets, the same JSON any
frontend gets), so they double as the example of how to build on it. Served under a
Content-Security-Policy of ``default-src 'self'`` (no inline script or style, no CDN) and never
framed. Two small routes beside the files say how to sign in: ``/app/sign-in-options`` (the
development list, or the OIDC issuer and client id for authorization code + PKCE) and, only
when ``ALLIANCE_ENV=development``, ``/app/dev-sign-in`` with short-lived tokens for the demo's
people. ``ALLIANCE_WEB_APP=off`` leaves all of it out.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from litestar import Response, Router, get
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from alliance.api.state import AppServices
from alliance.core.errors import NotFound
from alliance.core.settings import Settings

WEBAPP_DIR = Path(__file__).resolve().with_name("webapp")
#: Tokens from the development sign-in list are short: a page keeps them in memory only.
DEV_TOKEN_SECONDS = 3600


def content_security_policy(settings: Settings) -> str:
    """``default-src 'self'``; the OIDC issuer is the one other place a page may talk to (its
    discovery document and token endpoint), and only when one is configured."""
    connect = "'self'"
    if settings.oidc_issuer:
        parts = urlsplit(settings.oidc_issuer)
        connect += f" {parts.scheme}://{parts.netloc}"
    return (f"default-src 'self'; connect-src {connect}; img-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _security_headers(policy: str) -> Any:
    headers = [(b"content-security-policy", policy.encode()), (b"x-content-type-options", b"nosniff"),
               (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
               (b"cache-control", b"no-cache")]

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    names = {name.lower() for name, _ in message.get("headers", [])}
                    message["headers"] = [*message.get("headers", []),
                                          *(h for h in headers if h[0] not in names)]
                await send(message)

            await app(scope, receive, send_with_headers)

        return wrapped

    return middleware


def _demo_people() -> list[tuple[str, str, Any]]:
    """The demo's people the web app has pages for: its clinicians, its admin (staff and clinic
    settings), its auditor (decision history, as of any moment, and the signed export) and its
    clients."""
    from alliance.api.demo import ADMIN, AUDITOR, CLIENTS, CLIN_A, CLIN_B
    from alliance.core.identity import Role

    people = [("Clinician A", Role.CLINICIAN, CLIN_A), ("Clinician B", Role.CLINICIAN, CLIN_B),
              ("Admin", Role.ADMIN, ADMIN), ("Auditor", Role.AUDITOR, AUDITOR)]
    return people + [(f"{name.title()} (client)", Role.CLIENT, client_id) for name, client_id in CLIENTS.items()]


def webapp_router(settings: Settings) -> Router:
    """The ``/app`` router: the files, the sign-in options and (development only) the demo list."""
    development = settings.env == "development"

    @get("/sign-in-options", include_in_schema=False, sync_to_thread=False)
    def sign_in_options() -> Response[Any]:
        body: dict[str, Any] = {"development": development}
        if settings.oidc_issuer and settings.oidc_client_id:
            body["oidc"] = {"issuer": settings.oidc_issuer, "client_id": settings.oidc_client_id,
                            "scope": "openid"}
        return Response(msgspec.json.encode(body), media_type="application/json")

    @get("/dev-sign-in", include_in_schema=False)
    async def dev_sign_in(svc: AppServices) -> Response[Any]:
        # Development only: outside it the route does not exist (404, as for any unknown path).
        if not development:
            raise NotFound("not found", code="not_found")
        from alliance.api.auth import issue_token
        from alliance.api.demo import TENANT

        if await svc.store.stream_version(f"clinic-{TENANT}") == 0:
            raise NotFound("the demo clinic is not loaded (alliance serve --demo)", code="demo_not_loaded")
        expires = int(time.time()) + DEV_TOKEN_SECONDS
        people = [{"label": label, "role": str(role), "id": str(sub), "tenant_id": str(TENANT), "expires_at": expires,
                   "token": issue_token(settings, tenant=TENANT, role=role, sub=sub, ttl_seconds=DEV_TOKEN_SECONDS)}
                  for label, role, sub in _demo_people()]
        return Response(msgspec.json.encode({"people": people}), media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    files = create_static_files_router(path="/", directories=[WEBAPP_DIR], html_mode=True, name="webapp",
                                       include_in_schema=False)
    for route in files.routes:  # the router does not hand include_in_schema on to its handlers
        for handler in route.route_handlers:
            handler.include_in_schema = False
    return Router(path="/app", route_handlers=[sign_in_options, dev_sign_in, files],
                  middleware=[_security_headers(content_security_policy(settings))], include_in_schema=False)
