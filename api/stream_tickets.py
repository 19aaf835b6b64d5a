"""Stream tickets: how a browser's EventSource, which cannot send an ``Authorization`` header,
opens a stream — without the bearer token ever being put in a URL.

The page asks for a ticket with its bearer token (``POST /clients/{id}/progress/stream-tickets``
or ``POST /caseload/stream-tickets``) and opens ``…/stream?ticket=<ticket>``. A ticket is 256
random bits, kept only as its SHA-256 (``stream_tickets``, migration 0009), so it is valid on
any worker; it must be opened within ``OPEN_WITHIN_SECONDS``; opening spends it (the row is
deleted by the open, so two opens cannot both succeed); and it names the principal, the purpose
and the client, so it opens that one stream and nothing else (every other route reads only the
``Authorization`` header, where a ticket is not a valid token). The stream it opens has the same
grant as one opened with the issuing token: it ends at that token's ``exp`` and is re-authorised
like any other (``api/stream_guard.py``).

Why tickets and not a cookie session: they work for a page on any allowed origin and for the
served web app alike, give a cross-site request nothing to ride on (no ambient credential, so
no CSRF surface), and a leaked ticket is worth one stream open within a minute. EventSource
reconnects to the same URL, whose ticket is then spent: that answers 401
``stream_ticket_invalid``, a non-200 makes EventSource stop, and the page fetches a new ticket
and reopens with ``&after=<last event id>``.

Tickets stay out of logs: the request log names the route template only, and uvicorn's access
log (off under ``alliance serve``, on when uvicorn runs Alliance with ``--log-level info``) sees
the query string with the ticket replaced (``redact_tickets``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from litestar import Request
from litestar.exceptions import NotAuthorizedException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from alliance.api.auth import Principal
from alliance.api.state import AppServices, provide_principal, require_active_staff
from alliance.api.stream_guard import StreamGrant, bearer_grant
from alliance.core.clock import SYSTEM_CLOCK, Clock
from alliance.core.errors import AllianceError
from alliance.core.identity import Role

Purpose = Literal["progress", "caseload"]
#: A ticket must be opened this soon after it is issued (and before the issuing token expires).
OPEN_WITHIN_SECONDS = 60
#: Expired rows deleted per issue: cleaning up stays a bounded cost on the issuing request.
SWEEP_BATCH = 200
_MAX_TICKET_CHARS = 128  # token_urlsafe(32) is 43; anything much longer is not ours

_SWEEP = ("DELETE FROM stream_tickets WHERE ticket_hash IN "
          "(SELECT ticket_hash FROM stream_tickets WHERE open_by < $1 ORDER BY open_by LIMIT $2)")
_INSERT = ("INSERT INTO stream_tickets (ticket_hash, tenant_id, principal_id, role, purpose, client_id, "
           "issued_at, open_by, grant_ends_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
_SPEND = ("DELETE FROM stream_tickets WHERE ticket_hash = $1 "
          "RETURNING tenant_id, principal_id, role, purpose, client_id, open_by, grant_ends_at")


class StreamTicketInvalid(AllianceError):
    """Unknown, spent, expired, or for another stream (which of these is not said)."""

    code = "stream_ticket_invalid"
    status = 401

    def __init__(self) -> None:
        super().__init__("this stream ticket is unknown, already used, expired or for another stream: "
                         "get a new one (POST …/stream-tickets) and open the stream with it", field="ticket")


@dataclass(frozen=True)
class IssuedTicket:
    ticket: str
    #: The moment it must be opened by (at most ``OPEN_WITHIN_SECONDS`` after issue).
    open_by: datetime
    issued_at: datetime

    @property
    def open_within_seconds(self) -> int:
        return int((self.open_by - self.issued_at).total_seconds())


def ticket_hash(ticket: str) -> bytes:
    return hashlib.sha256(b"alliance stream ticket\x00" + ticket.encode()).digest()


async def issue_ticket(pool: Any, grant: StreamGrant, purpose: Purpose, client_id: UUID | None, *,
                       clock: Clock = SYSTEM_CLOCK) -> IssuedTicket:
    """A ticket for one stream of ``grant``'s principal; expired tickets are swept on the way."""
    if (purpose == "progress") != (client_id is not None):
        raise ValueError("a progress ticket names a client, a caseload ticket none")
    now = clock.now()
    grant_ends = datetime.fromtimestamp(grant.expires_at, UTC)
    open_by = min(now + timedelta(seconds=OPEN_WITHIN_SECONDS), grant_ends)
    if open_by <= now:
        raise NotAuthorizedException("the bearer token has expired")
    ticket = secrets.token_urlsafe(32)  # 256 bits
    p = grant.principal
    async with pool.acquire() as conn:
        await conn.execute(_SWEEP, now, SWEEP_BATCH)
        await conn.execute(_INSERT, ticket_hash(ticket), p.tenant_id, p.id, str(p.role), purpose, client_id,
                           now, open_by, grant_ends)
    return IssuedTicket(ticket=ticket, open_by=open_by, issued_at=now)


async def spend_ticket(pool: Any, ticket: str, purpose: Purpose, client_id: UUID | None, *,
                       clock: Clock = SYSTEM_CLOCK) -> StreamGrant:
    """The grant a ticket carries, spending it: whatever the outcome, it cannot be used again."""
    if not ticket or len(ticket) > _MAX_TICKET_CHARS:
        raise StreamTicketInvalid()
    row = await pool.fetchrow(_SPEND, ticket_hash(ticket))
    now = clock.now()
    if (row is None or row["open_by"] <= now or row["grant_ends_at"] <= now
            or row["purpose"] != purpose or row["client_id"] != client_id):
        raise StreamTicketInvalid()
    principal = Principal(id=row["principal_id"], tenant_id=row["tenant_id"], role=Role(row["role"]))
    return StreamGrant(principal=principal, expires_at=row["grant_ends_at"].timestamp())


async def stream_grant(request: Request[Any, Any, Any], svc: AppServices, purpose: Purpose,
                       client_id: UUID | None, ticket: str | None) -> StreamGrant:
    """Who opens this stream, and until when: from ``?ticket=`` when given, else the bearer token.

    A ticket that does not hold counts as a failed authentication of the caller's address,
    like a bad token (``api/auth.py``)."""
    if ticket is None:
        principal = await provide_principal(request, svc)
        return bearer_grant(request, principal)
    address = request.client.host if request.client else "unknown"
    svc.tokens.failures.check(address)
    try:
        grant = await spend_ticket(svc.pool, ticket, purpose, client_id, clock=svc.clock)
    except StreamTicketInvalid:
        svc.tokens.failures.record(address)
        raise
    await require_active_staff(svc, grant.principal)  # deactivated since the ticket was issued: refused
    request.scope.setdefault("state", {})["principal_id"] = str(grant.principal.id)
    return grant


_TICKET_IN_QUERY = re.compile(rb"(^|&)(ticket=)[^&]*")


def redact_tickets(app: ASGIApp) -> ASGIApp:
    """Replace a ticket in the query string before the server logs the request line.

    uvicorn writes its access-log line when the response starts, reading the request's
    ``scope``, by then the stream's route has read (and spent) the ticket."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or b"ticket=" not in scope.get("query_string", b""):
            await app(scope, receive, send)
            return

        async def send_redacted(message: Message) -> None:
            if message["type"] == "http.response.start":
                scope["query_string"] = _TICKET_IN_QUERY.sub(rb"\1\2REDACTED", scope["query_string"])
            await send(message)

        await app(scope, receive, send_redacted)

    return middleware
