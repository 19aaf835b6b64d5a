"""``Idempotency-Key`` on every POST, stored in PostgreSQL so any worker answers a retry.

The same key with the same body returns the first result (``Idempotent-Replayed:
true``); the same key with another body is a 422. The key also fixes the command id,
so even a retry that races past this table is recorded once by the event store.

A row is a *claim* while its request runs (``status`` NULL), marked with its owner: the
worker's liveness lock (``api/liveness.py``). A retry that meets a claim:

- whose owner still holds its lock waits for it a little, then answers 409
  ``request_in_progress`` with ``Retry-After`` (not a final answer, never stored);
- whose owner is gone (killed, its connection lost, PostgreSQL restarted) takes the claim
  over (``UPDATE … WHERE owner = <old>``, so one retry wins) and runs the command: the
  event store answers with the recorded outcome if the first attempt got that far.

A claim is never judged by its age. The owner releases (deletes) its claim when the
request fails (a 5xx, an outage, a lost connection, a cancelled request); when the
database is down even for that, the claim waits in an in-process queue that retries with
backoff, so within seconds of recovery the key is free. Only 2xx and deterministic 4xx
answers are stored: never a 5xx, never a 503, never an error that says "retry"
(``retry_after``), such as a conflict the handler ran out of time re-deciding.

A key is the caller's own text and may say more than it should ("mood-7-after-the-
argument"): the table holds only its keyed digest (HMAC-SHA-256 under a key derived
from the key-encryption key), never the key itself, and forgets every row after
``ALLIANCE_IDEMPOTENCY_HOURS`` (a retry is a matter of minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import uuid
from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg
from litestar import Request, Response

from alliance.api.auth import Principal
from alliance.api.errors import alliance_error_handler
from alliance.api.liveness import HELD_SQL, Liveness
from alliance.core.errors import AllianceError, ConcurrencyConflict, RequestInProgress, ValidationError
from alliance.core.logging import get_logger

log = get_logger("alliance.idempotency")

IDEMPOTENCY_NAMESPACE = UUID("1d0c5a8e-5b4f-4f0a-8f5e-6c1c2f3a9e77")
HEADER = "idempotency-key"
#: How long a retry waits for a claim whose owner is alive before answering 409 (well under the
#: 15 s a retry is promised an answer in, so a client's next retry still fits).
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.05
#: A release (or the stored answer) that the database does not take within this goes to the queue.
RELEASE_TIMEOUT = 1.0
RELEASE_BACKOFF_FIRST, RELEASE_BACKOFF_CAP = 0.1, 1.0


def command_id_for(principal: Principal, key: str | None) -> UUID:
    """A retried request with the same key carries the same command id (and event ids)."""
    if key is None:
        return uuid.uuid4()
    return uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{principal.tenant_id}:{principal.id}:{key}")


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 200:
        raise ValidationError("Idempotency-Key must be 1 to 200 characters", code="invalid_idempotency_key",
                              field="Idempotency-Key")
    return key


def key_digest(mac_key: bytes, key: str) -> str:
    """What the table holds for a key: its HMAC, hex (the caller's text is never stored)."""
    return hmac.new(mac_key, b"idempotency-key\x00" + key.encode(), hashlib.sha256).hexdigest()


async def forget_expired(pool: asyncpg.Pool, *, older_than_hours: float) -> int:
    """Delete the keys recorded more than ``older_than_hours`` ago; returns how many. A claim
    still in progress goes only once its owner is gone: its age alone says nothing."""
    async with pool.acquire() as conn:
        done = await conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1) "
            f"AND (status IS NOT NULL OR owner IS NULL OR NOT {HELD_SQL.format(key='owner')})",
            older_than_hours * 3600.0)
    return int(done.split()[-1])


ClaimId = tuple[UUID, UUID, str]  # tenant, principal, key digest

_RELEASE = ("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND principal_id = $2 AND key = $3 "
            "AND status IS NULL AND owner = $4")


class Claims:
    """This process's side of the table: its owner id (liveness lock) and the claims it still
    has to release. Opened by the app's lifespan (``app.state.idempotency``)."""

    def __init__(self, pool: asyncpg.Pool, liveness: Liveness) -> None:
        self.pool = pool
        self.liveness = liveness
        self._pending: set[ClaimId] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, pool: asyncpg.Pool, dsn: str) -> Claims:
        liveness = Liveness(dsn)
        await liveness.start()
        claims = cls(pool, liveness)
        claims._task = asyncio.create_task(claims._drain(), name="idempotency-releases")
        return claims

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.liveness.close()

    @property
    def owner(self) -> int:
        return self.liveness.owner_id

    @property
    def pending_releases(self) -> int:
        return len(self._pending)

    def release_later(self, claim: ClaimId) -> None:
        self._pending.add(claim)
        self._wake.set()

    async def release(self, claim: ClaimId) -> None:
        """Free the key of a request that failed; if the database does not answer, keep trying."""
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT), self.pool.acquire() as conn:
                await conn.execute(_RELEASE, *claim, self.owner)
        except Exception as exc:
            log.warning("idempotency_release_queued", error=type(exc).__name__)
            self.release_later(claim)
        except BaseException:  # cancelled mid-release: the queue finishes it
            self.release_later(claim)
            raise

    async def _drain(self) -> None:
        wait = RELEASE_BACKOFF_FIRST
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                try:
                    async with asyncio.timeout(RELEASE_TIMEOUT * 2), self.pool.acquire() as conn:
                        for claim in list(self._pending):
                            await conn.execute(_RELEASE, *claim, self.owner)
                            self._pending.discard(claim)
                    wait = RELEASE_BACKOFF_FIRST
                    log.info("idempotency_releases_done")
                except Exception as exc:
                    log.debug("idempotency_release_retry", error=type(exc).__name__, pending=len(self._pending))
                    await asyncio.sleep(wait * random.uniform(0.5, 1.0))
                    wait = min(RELEASE_BACKOFF_CAP, wait * 2)


def claims_of(request: Request) -> Claims:
    claims: Claims = request.app.state.idempotency
    return claims


def _storable(exc: AllianceError) -> bool:
    """A deterministic refusal (the same request would get it again): kept as the key's answer."""
    return exc.status < 500 and exc.retry_after is None and not isinstance(exc, ConcurrencyConflict)


# The claim commits without waiting for a WAL flush (SET LOCAL for its one statement): it is
# visible to every retry at once all the same, and whatever the request records afterwards
# (the append, the stored answer) commits with a flush, which makes the earlier claim durable
# too (one log, written in order). Lost in a crash before that, it had guarded nothing durable:
# a retry claims the key afresh. One flush fewer per keyed POST.
_CLAIM = ("INSERT INTO idempotency_keys (tenant_id, principal_id, key, method, route, body_mac, owner) "
          "SELECT $1::uuid, $2::uuid, $3::text, $4::text, $5::text, $6::bytea, $7::bigint "
          "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit "
          "ON CONFLICT DO NOTHING RETURNING true")
_LOOK = ("SELECT body_mac, status, response, content_type, owner, "
         f"owner IS NOT NULL AND {HELD_SQL.format(key='owner')} AS owner_alive "
         "FROM idempotency_keys WHERE tenant_id = $1 AND principal_id = $2 AND key = $3")
_TAKE_OVER = ("UPDATE idempotency_keys SET owner = $5 WHERE tenant_id = $1 AND principal_id = $2 AND key = $3 "
              "AND status IS NULL AND owner IS NOT DISTINCT FROM $4 RETURNING true")
_STORE = ("UPDATE idempotency_keys SET status = $5, response = $6, content_type = $7, completed_at = now() "
          "WHERE tenant_id = $1 AND principal_id = $2 AND key = $3 AND status IS NULL AND owner = $4")


async def run_idempotent(request: Request, pool: asyncpg.Pool, mac_key: bytes, principal: Principal,
                         work: Callable[[], Awaitable[Response]]) -> Response:
    text = idempotency_key(request)
    if text is None:
        return await work()
    claims = claims_of(request)
    claim: ClaimId = (principal.tenant_id, principal.id, key_digest(mac_key, text))
    route = str(request.scope.get("path_template") or request.url.path)
    body = await request.body()
    mac = hmac.new(mac_key, b"%s %s %s\n" % (request.method.encode(), request.url.path.encode(), body),
                   hashlib.sha256).digest()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while True:
        async with pool.acquire() as conn:
            if await conn.fetchval(_CLAIM, *claim, request.method, route, mac, claims.owner):
                break
            row = await conn.fetchrow(_LOOK, *claim)
            if row is None:  # released between the two statements: claim again
                continue
            if not hmac.compare_digest(bytes(row["body_mac"]), mac):
                raise ValidationError("this Idempotency-Key was used with a different request",
                                      code="idempotency_key_reused", field="Idempotency-Key")
            if row["status"] is not None:
                media_type, headers = _unpack_content_type(row["content_type"])
                return Response(bytes(row["response"]), status_code=row["status"], media_type=media_type,
                                headers={**headers, "Idempotent-Replayed": "true"})
            if not row["owner_alive"] and await conn.fetchval(_TAKE_OVER, *claim, row["owner"], claims.owner):
                log.info("idempotency_claim_taken_over")
                break
        if loop.time() > deadline:
            raise RequestInProgress("a request with this Idempotency-Key is still being processed; "
                                    "retry with the same key")
        await asyncio.sleep(POLL_SECONDS)
    return await _run_owned(request, pool, claims, claim, work)


async def _run_owned(request: Request, pool: asyncpg.Pool, claims: Claims, claim: ClaimId,
                     work: Callable[[], Awaitable[Response]]) -> Response:
    """Run the request as the claim's owner, then store its answer or release the claim."""
    try:
        response = await work()
    except AllianceError as exc:
        if not _storable(exc):
            await claims.release(claim)
            raise
        response = alliance_error_handler(request, exc)
    except Exception:
        await claims.release(claim)
        raise
    except BaseException:  # cancelled (the caller went away): no await here, the queue frees the key
        claims.release_later(claim)
        raise
    content = response.content if isinstance(response.content, bytes) else response.render(
        response.content, str(response.media_type))
    headers = dict(response.headers)
    status = response.status_code or 200  # Litestar's default for a Response without one
    if 200 <= status < 500:
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT * 2), pool.acquire() as conn:
                await conn.execute(_STORE, *claim, claims.owner, status, content,
                                   _pack_content_type(str(response.media_type), headers))
        except Exception as exc:
            # The command ran: answer it. The key is freed instead, and a retry runs the command
            # again, which the event store answers with what this attempt recorded.
            log.warning("idempotency_store_failed", error=type(exc).__name__)
            claims.release_later(claim)
    else:
        await claims.release(claim)
    return Response(content, status_code=status, media_type=response.media_type, headers=headers)


#: Response headers a replay must repeat (``Location`` of what was created, the goal's ``ETag``).
REPLAYED_HEADERS = ("location", "etag")


def _pack_content_type(media_type: str, headers: dict[str, str]) -> str:
    """The media type, then the replayed headers one per line (kept in the ``content_type`` column)."""
    kept = [f"{name}: {value}" for name, value in headers.items() if name.lower() in REPLAYED_HEADERS
            and "\n" not in value and "\r" not in value]
    return "\n".join([media_type, *kept])


def _unpack_content_type(packed: str) -> tuple[str, dict[str, str]]:
    media_type, *lines = packed.split("\n")
    headers = dict(line.split(": ", 1) for line in lines if ": " in line)
    return media_type, headers

