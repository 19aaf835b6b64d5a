"""``Idempotency-Key`` on every POST, stored in PostgreSQL so any worker answers a retry.

The same key with the same body returns the first result (``Idempotent-Replayed:
true``); the same key with another body is a 422. While the first request is still
running, a retry waits for it briefly, then answers 409. Server errors are not
stored, so the client may retry them. The key also fixes the command id, so even
a retry that races past this table is recorded once by the event store.

A key is the caller's own text and may say more than it should ("mood-7-after-the-
argument"): the table holds only its keyed digest (HMAC-SHA-256 under a key derived
from the key-encryption key), never the key itself, and forgets every row after
``ALLIANCE_IDEMPOTENCY_HOURS`` (a retry is a matter of minutes).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg
from litestar import Request, Response

from api.auth import Principal
from api.errors import alliance_error_handler
from core.errors import AllianceError, ConcurrencyConflict, ValidationError

IDEMPOTENCY_NAMESPACE = UUID("1d0c5a8e-5b4f-4f0a-8f5e-6c1c2f3a9e77")
HEADER = "idempotency-key"
WAIT_SECONDS = 10.0


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
    """Delete the keys recorded more than ``older_than_hours`` ago; returns how many."""
    async with pool.acquire() as conn:
        done = await conn.execute("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
                                  older_than_hours * 3600.0)
    return int(done.split()[-1])


async def run_idempotent(request: Request, pool: asyncpg.Pool, mac_key: bytes, principal: Principal,
                         work: Callable[[], Awaitable[Response]]) -> Response:
    text = idempotency_key(request)
    if text is None:
        return await work()
    key = key_digest(mac_key, text)
    route = str(request.scope.get("path_template") or request.url.path)
    body = await request.body()
    mac = hmac.new(mac_key, b"%s %s %s\n" % (request.method.encode(), request.url.path.encode(), body),
                   hashlib.sha256).digest()
    async with pool.acquire() as conn:
        inserted = await conn.fetchval(
            "INSERT INTO idempotency_keys (tenant_id, principal_id, key, method, route, body_mac) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
            principal.tenant_id, principal.id, key, request.method, route, mac)
    if inserted:
        try:
            response = await work()
        except AllianceError as exc:
            if exc.status >= 500:
                await _forget(pool, principal, key)
                raise
            response = alliance_error_handler(request, exc)
        except BaseException:
            await _forget(pool, principal, key)
            raise
        content = response.content if isinstance(response.content, bytes) else response.render(
            response.content, str(response.media_type))
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET status = $4, response = $5, content_type = $6, completed_at = now() "
                "WHERE tenant_id = $1 AND principal_id = $2 AND key = $3",
                principal.tenant_id, principal.id, key, response.status_code, content,
                _pack_content_type(str(response.media_type), dict(response.headers)))
        return Response(content, status_code=response.status_code, media_type=response.media_type,
                        headers=dict(response.headers))
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT body_mac, status, response, content_type FROM idempotency_keys "
                "WHERE tenant_id = $1 AND principal_id = $2 AND key = $3", principal.tenant_id, principal.id, key)
        if row is None:  # the first attempt failed and was forgotten: run again
            return await run_idempotent(request, pool, mac_key, principal, work)
        if not hmac.compare_digest(bytes(row["body_mac"]), mac):
            raise ValidationError("this Idempotency-Key was used with a different request",
                                  code="idempotency_key_reused", field="Idempotency-Key")
        if row["status"] is not None:
            media_type, headers = _unpack_content_type(row["content_type"])
            return Response(bytes(row["response"]), status_code=row["status"], media_type=media_type,
                            headers={**headers, "Idempotent-Replayed": "true"})
        if asyncio.get_running_loop().time() > deadline:
            raise ConcurrencyConflict("a request with this Idempotency-Key is still being processed",
                                      stream_id="", expected=0, actual=0)
        await asyncio.sleep(0.05)


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


async def _forget(pool: asyncpg.Pool, principal: Principal, key: str) -> None:
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND principal_id = $2 AND key = $3 "
                           "AND status IS NULL", principal.tenant_id, principal.id, key)
