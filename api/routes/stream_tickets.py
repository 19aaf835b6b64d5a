"""Stream tickets over HTTP: a bearer-authenticated page asks for a ticket to open one stream
with EventSource (``api/stream_tickets.py`` says why and how it is bounded)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, post
from litestar.datastructures import CacheControlHeader

from alliance.api.access import authorize_client
from alliance.api.auth import Principal
from alliance.api.routes.common import visible_client
from alliance.api.routes.stream import require_caseload_reader
from alliance.api.state import AppServices
from alliance.api.stream_guard import bearer_grant
from alliance.api.stream_tickets import IssuedTicket, Purpose, issue_ticket


class StreamTicket(msgspec.Struct, kw_only=True):
    ticket: Annotated[str, msgspec.Meta(description="Opaque, single use; put it only in `stream_url`'s query")]
    stream_url: Annotated[str, msgspec.Meta(
        description="The stream to open with EventSource (relative to the API's base URL); add "
                    "`&after=<last event id>` when reopening")]
    expires_at: Annotated[datetime, msgspec.Meta(description="Open the stream before this moment (RFC 3339)")]
    open_within_seconds: Annotated[int, msgspec.Meta(
        description="Seconds from issue to `expires_at` (60, less when the bearer token ends sooner)")]


def _answer(issued: IssuedTicket, path: str) -> StreamTicket:
    return StreamTicket(ticket=issued.ticket, stream_url=f"{path}?ticket={issued.ticket}",
                        expires_at=issued.open_by, open_within_seconds=issued.open_within_seconds)


#: A ticket is a credential for a minute: no cache keeps it. Nor is it kept as an Idempotency-Key
#: answer (api/idempotency.py stores answers): a retry simply gets a new ticket, and writes nothing.
NO_STORE = CacheControlHeader(no_store=True)
ISSUED = "A ticket for one open of the stream"
_DESCRIPTION = ("For browsers (EventSource cannot send `Authorization`): a ticket that opens {what} once, within "
                "60 s, as the caller; the stream then lasts until the bearer token's `exp` and is re-authorised "
                "like one opened with the token. Same authorisation as opening the stream. A spent, expired "
                "or unknown ticket answers 401 `stream_ticket_invalid`: get a new one and reopen with `after`.")


@post("/clients/{client_id:uuid}/progress/stream-tickets", operation_id="issueProgressStreamTicket",
      tags=["views"], status_code=201, cache_control=NO_STORE, response_description=ISSUED,
      summary="A single-use ticket to open this client's progress stream with EventSource (?ticket=)",
      description=_DESCRIPTION.format(what="`GET /clients/{client_id}/progress/stream`"))
async def progress_stream_ticket(request: Request[Any, Any, Any], client_id: UUID, principal: Principal,
                                 svc: AppServices) -> StreamTicket:
    # The stream GET's own checks (api/routes/stream.py: readable_client), without its access
    # log row: nothing is read here, and the open that follows is logged.
    client = await visible_client(svc, principal, client_id)
    authorize_client(principal, client, "stream", now=datetime.now(UTC))
    purpose: Purpose = "progress"
    issued = await issue_ticket(svc.pool, bearer_grant(request, principal), purpose, client_id, clock=svc.clock)
    return _answer(issued, f"/clients/{client_id}/progress/stream")


@post("/caseload/stream-tickets", operation_id="issueCaseloadStreamTicket", tags=["views"], status_code=201,
      cache_control=NO_STORE, response_description=ISSUED,
      summary="A single-use ticket to open the caller's caseload stream with EventSource (?ticket=)",
      description=_DESCRIPTION.format(what="`GET /caseload/stream`"))
async def caseload_stream_ticket(request: Request[Any, Any, Any], principal: Principal,
                                 svc: AppServices) -> StreamTicket:
    require_caseload_reader(principal)
    issued = await issue_ticket(svc.pool, bearer_grant(request, principal), "caseload", None, clock=svc.clock)
    return _answer(issued, "/caseload/stream")


STREAM_TICKET_ROUTES: list[Any] = [progress_stream_ticket, caseload_stream_ticket]
