"""Who may keep a stream open: re-authorisation, the grant's end, a cap per principal, stalls.

A stream is opened with a **grant**: the principal the GET authorised and the moment the grant
ends (the bearer token's ``exp``; a stream ticket, when there is one, brings its own end, never
later than its issuing token's, and the same principal — so everything below applies to it
unchanged). While it is open, the GET's own checks (``check_access``: the staff member still
active in that role, the client visible, ``authorize_client``) are run again:

* before every change delivered to staff or a proxy (their right depends on the care team,
  consent and proxy records, all on the client's stream: a change of those is itself a change
  of the client's views, so no view is sent after the event that revoked it);
* when the clinic's stream changes (staff deactivated: ``clinic:<tenant>`` on the change feed);
* when the client's data key is destroyed (erasure, relayed by the store in every process);
* when the change feed's connection was lost (changes may have gone unheard meanwhile);
* every ``recheck_seconds`` whatever happens (a consent that lapses with time, a lost wake-up).

A client reading their own records loses that right only by erasure or the grant's end, so
their streams are not re-checked per change (the SSE fan-out stays one read per change).

A refused check ends the stream with a final ``closed`` event naming the ``reason``
(``access_revoked`` with the GET's own ``code``; ``client_erased``: the client's data key was
destroyed; ``token_expired``; ``too_slow``; ``unavailable``: the check itself failed, so the
stream fails closed) and the cursor to resume from. The grant's end closes it at that moment.

Bounds (``StreamLimits``, from the environment): streams open at once per principal, across
all workers (``api/stream_leases.py``; 5 for a client or proxy: a few devices; 10 for staff:
the caseload stream plus the clients open on screen — a clinician follows a whole caseload
through one ``/caseload/stream``, not one stream per client); a write that does not complete
within ``stall_seconds`` drops the connection (the peer stopped reading; closing politely would
wait forever for it to read what is buffered), and a stream's socket buffers at most
``send_buffer`` bytes for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import jwt
from litestar import Request

from alliance.api.access import authorize_client
from alliance.api.auth import Principal
from alliance.api.routes.common import visible_client
from alliance.api.state import AppServices, require_active_staff
from alliance.api.stream_leases import Full, StreamLeases
from alliance.core.errors import AllianceError
from alliance.core.identity import Role
from alliance.core.logging import get_logger

log = get_logger("alliance.streams")


@dataclass(frozen=True)
class StreamLimits:
    #: A write blocked this long means the peer stopped reading: the connection is dropped.
    stall_seconds: float = 30.0
    #: The backstop: access is re-checked at least this often, notifications or not.
    recheck_seconds: float = 30.0
    #: Streams open at once per client or proxy principal (across workers).
    per_client: int = 5
    #: Streams open at once per staff principal (across workers).
    per_staff: int = 10
    #: Kernel send buffer of a stream's socket: what a peer that stopped reading can pin.
    send_buffer: int = 128 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StreamLimits:
        env = os.environ if env is None else env
        d = cls()
        return cls(stall_seconds=float(env.get("ALLIANCE_STREAM_STALL_SECONDS", d.stall_seconds)),
                   recheck_seconds=float(env.get("ALLIANCE_STREAM_RECHECK_SECONDS", d.recheck_seconds)),
                   per_client=int(env.get("ALLIANCE_STREAMS_PER_CLIENT", d.per_client)),
                   per_staff=int(env.get("ALLIANCE_STREAMS_PER_STAFF", d.per_staff)),
                   send_buffer=int(env.get("ALLIANCE_STREAM_SEND_BUFFER", d.send_buffer)))

    def cap(self, principal: Principal) -> int:
        return self.per_staff if principal.is_staff else self.per_client


@dataclass(frozen=True)
class StreamGrant:
    """What entitles a stream to exist: who reads, and until when (epoch seconds)."""

    principal: Principal
    expires_at: float


def bearer_grant(request: Request[Any, Any, Any], principal: Principal) -> StreamGrant:
    """The grant of a stream opened with a bearer token: it ends at the token's ``exp``.

    The token was verified (signature, ``exp``) when the principal was resolved; here only its
    ``exp`` is read again, since ``Principal`` does not carry it.
    """
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    return StreamGrant(principal=principal, expires_at=float(claims["exp"]))


class StreamClosed(Exception):
    """Why the server ends a stream (the final ``closed`` event's data)."""

    def __init__(self, reason: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code

    def data(self, resume_from: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason}
        if self.code:
            out["code"] = self.code
        if resume_from is not None:
            out["resume_from"] = resume_from
        return out


class TooManyStreams(AllianceError):
    """The principal holds as many streams as it may (429; a place frees when one ends)."""

    code = "too_many_streams"
    status = 429
    retry_after = 5

    def __init__(self, cap: int) -> None:
        super().__init__(f"{cap} streams are open for you already: close one (or follow a caseload "
                         "through /caseload/stream)", limit=cap)
        self.cap = cap


async def check_access(svc: AppServices, principal: Principal, client_id: UUID, *,
                       sup: Supervision | None = None) -> None:
    """The stream GET's own authorisation, run again on fresh state; ``StreamClosed`` if refused."""
    if sup is not None and client_id in sup.erased:
        raise StreamClosed("client_erased")
    try:
        await require_active_staff(svc, principal)
        client = await visible_client(svc, principal, client_id)
        if client.erased:
            raise StreamClosed("client_erased")
        authorize_client(principal, client, "stream", now=datetime.now(UTC))
    except AllianceError as exc:
        raise StreamClosed("access_revoked", exc.code) from None


@dataclass(eq=False)
class Supervision:
    """One open stream, as the registry sees it."""

    grant: StreamGrant
    clients: set[UUID]
    #: Something happened that may have taken the right to read away: re-check before going on.
    poked: bool = False
    #: Wakes the stream's loop (set by the stream).
    wake: Callable[[], None] | None = None
    #: A caseload stream's clients that changed since it last looked (None: not a caseload).
    changed: set[UUID] | None = None
    #: Clients whose data key was destroyed (erased) while the stream was open.
    erased: set[UUID] = field(default_factory=set)
    #: Its row in ``stream_leases`` (None: counted in this worker only, or released).
    lease: UUID | None = None

    @property
    def rechecks_every_change(self) -> bool:
        return self.grant.principal.role is not Role.CLIENT

    def poke(self) -> None:
        already, self.poked = self.poked, True
        if not already and self.wake is not None:  # one wake-up per pending re-check
            self.wake()


class StreamRegistry:
    """Every stream open in this worker: counts per principal, and who to poke on which change."""

    def __init__(self, svc: AppServices, limits: StreamLimits, leases: StreamLeases | None = None) -> None:
        self.svc = svc
        self.limits = limits
        self.leases = leases
        self._by_principal: dict[tuple[UUID, UUID, Role], set[Supervision]] = {}
        self._by_tenant: dict[UUID, set[Supervision]] = {}
        self._by_client: dict[UUID, set[Supervision]] = {}
        svc.feed.watch(self._on_change)
        svc.store.on_key_destroyed(self._on_key_destroyed)
        svc.feed.start()  # hear clinic changes even before (or between) followers

    async def reserve(self, grant: StreamGrant, clients: set[UUID]) -> Supervision:
        """A place for one more stream of this principal (``TooManyStreams`` beyond the cap):
        counted across workers when the worker has a liveness lock (``api/stream_leases.py``),
        else within this worker. Give it back with ``release``."""
        p = grant.principal
        key = (p.tenant_id, p.id, p.role)
        cap = self.limits.cap(p)
        lease = None
        if self.leases is not None:
            try:
                lease = await self.leases.acquire(p, cap)
            except Full:
                raise TooManyStreams(cap) from None
        elif len(self._by_principal.get(key, ())) >= cap:
            raise TooManyStreams(cap)
        sup = Supervision(grant, set(clients), lease=lease)
        self._by_principal.setdefault(key, set()).add(sup)
        self._by_tenant.setdefault(p.tenant_id, set()).add(sup)
        for client in sup.clients:
            self._by_client.setdefault(client, set()).add(sup)
        return sup

    def release(self, sup: Supervision) -> None:
        """Idempotent: the stream's end and its generator's finaliser may both call it."""
        lease, sup.lease = sup.lease, None
        if lease is not None and self.leases is not None:
            self.leases.release(lease)
        p = sup.grant.principal
        key = (p.tenant_id, p.id, p.role)
        held = self._by_principal.get(key)
        if held is not None:
            held.discard(sup)
            if not held:
                self._by_principal.pop(key, None)
        self._discard(self._by_tenant, p.tenant_id, sup)
        for client in sup.clients:
            self._discard(self._by_client, client, sup)

    def follow_client(self, sup: Supervision, client: UUID) -> None:
        """A caseload stream gained a client."""
        sup.clients.add(client)
        self._by_client.setdefault(client, set()).add(sup)

    def unfollow_client(self, sup: Supervision, client: UUID) -> None:
        sup.clients.discard(client)
        self._discard(self._by_client, client, sup)

    @staticmethod
    def _discard(index: dict[UUID, set[Supervision]], key: UUID, sup: Supervision) -> None:
        entries = index.get(key)
        if entries is not None:
            entries.discard(sup)
            if not entries:
                index.pop(key, None)

    def _on_change(self, clients: Sequence[UUID], clinics: Sequence[UUID], everything: bool) -> None:
        if everything:
            for entries in list(self._by_tenant.values()):
                for sup in list(entries):
                    sup.poke()
            return
        for tenant in clinics:
            for sup in list(self._by_tenant.get(tenant, ())):
                sup.poke()
        for client in clients:
            for sup in list(self._by_client.get(client, ())):
                if sup.changed is not None:  # a caseload: say which client changed
                    sup.changed.add(client)
                    if sup.wake is not None:
                        sup.wake()
                # a single client's stream re-checks as the change arrives through its feed

    def _on_key_destroyed(self, subject: UUID) -> None:
        # The key goes before ``erasure.completed`` is appended: a re-check now could still see
        # the client as not erased, so the key's destruction is itself the reason.
        for sup in list(self._by_client.get(subject, ())):
            sup.erased.add(subject)
            sup.poke()


def registry(request: Request[Any, Any, Any], svc: AppServices) -> StreamRegistry:
    """This app's registry (made on first use: it lives as long as the app)."""
    state = request.app.state
    found = state.get("stream_registry")
    if found is None or found.svc is not svc:
        # The worker's liveness lock (held for its Idempotency-Key claims) also vouches for its streams.
        liveness = getattr(state.get("idempotency"), "liveness", None)
        leases = StreamLeases(svc.pool, liveness) if liveness is not None else None
        found = StreamRegistry(svc, StreamLimits.from_env(), leases)
        state["stream_registry"] = found
    return found  # type: ignore[no-any-return]


class StallGuard:
    """Drops the connection when one write stays blocked for ``stall_seconds``.

    The stream's generator marks each event it hands over (``writing``) and unmarks it when
    asked for the next one, which is when the server's write of it completed. ASGI has no way
    to abort a connection, and closing it politely waits until the peer has read what is
    buffered — which a peer that stopped reading never does — so the guard aborts the
    server's transport (uvicorn hands ``receive`` as a method of its request cycle, which
    holds it). Elsewhere it cancels the writing task, the best ASGI allows.
    """

    def __init__(self, request: Request[Any, Any, Any], limits: StreamLimits) -> None:
        self.stall_seconds = limits.stall_seconds
        self._since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[Any] | None = None
        cycle = getattr(request.receive, "__self__", None)
        self._transport: Any = getattr(cycle, "transport", None)
        if self._transport is not None and limits.send_buffer > 0:
            sock = self._transport.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError, TypeError):  # a bound, where the socket allows it
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.send_buffer)

    def start(self) -> None:
        self._writer = asyncio.current_task()
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="stream-stall-guard")

    def writing(self) -> None:
        self._since = time.monotonic()

    def written(self) -> None:
        self._since = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(max(self.stall_seconds / 4, 0.05))
            since = self._since
            if since is not None and time.monotonic() - since > self.stall_seconds:
                log.info("stream_stalled", seconds=round(time.monotonic() - since, 1))
                if self._transport is not None and hasattr(self._transport, "abort"):
                    self._transport.abort()
                elif self._writer is not None:
                    self._writer.cancel()
                return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def seconds_left(grant: StreamGrant) -> float:
    return grant.expires_at - time.time()

