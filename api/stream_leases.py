"""Streams open per principal across every worker: one row per open stream, counted at open.

A row counts while its worker lives (its liveness lock is held: ``api/liveness.py``), so a
worker that was killed, lost its connection or saw PostgreSQL restart stops counting at once,
with no clock; its rows are swept by the next open of the same principal. Opens of one
principal are serialised by a transaction-level advisory lock on that principal, so two
workers cannot both take the last place. Each worker also sweeps every dead worker's rows
every ``SWEEP_ALL_SECONDS`` (at its first open, then at most that often).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any
from uuid import UUID

import asyncpg

from alliance.api.auth import Principal
from alliance.api.liveness import HELD_SQL
from alliance.core.logging import get_logger

log = get_logger("alliance.streams")

_ALIVE = HELD_SQL.format(key="s.owner")
_SWEEP = ("DELETE FROM stream_leases s WHERE s.tenant_id = $1 AND s.principal_id = $2 AND s.role = $3 "
          f"AND NOT {_ALIVE}")
_COUNT = "SELECT count(*) FROM stream_leases WHERE tenant_id = $1 AND principal_id = $2 AND role = $3"
_TAKE = "INSERT INTO stream_leases (id, tenant_id, principal_id, role, owner) VALUES ($1, $2, $3, $4, $5)"
#: Rows of every principal whose worker is gone (principals who never come back would keep theirs).
_SWEEP_ALL = f"DELETE FROM stream_leases s WHERE NOT {_ALIVE}"
SWEEP_ALL_SECONDS = 600.0


class Full(Exception):
    """The principal holds ``cap`` streams already."""


class StreamLeases:
    def __init__(self, pool: asyncpg.Pool, liveness: Any) -> None:
        self._pool = pool
        self._liveness = liveness
        #: Leases whose delete failed (the database was away): retried with the next open.
        self._unreleased: set[UUID] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._swept_at: float | None = None

    async def acquire(self, principal: Principal, cap: int) -> UUID:
        """A lease for one more stream, or ``Full``. The sweeps commit either way."""
        lease = uuid.uuid4()
        key = (principal.tenant_id, principal.id, str(principal.role))
        gone = list(self._unreleased)
        sweep_all = self._swept_at is None or time.monotonic() - self._swept_at > SWEEP_ALL_SECONDS
        async with self._pool.acquire() as conn, conn.transaction():
            if gone:
                await conn.execute("DELETE FROM stream_leases WHERE id = ANY($1::uuid[])", gone)
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
                               f"stream:{principal.tenant_id}:{principal.id}:{principal.role}")
            await conn.execute(_SWEEP_ALL if sweep_all else _SWEEP, *(() if sweep_all else key))
            full = await conn.fetchval(_COUNT, *key) >= cap
            if not full:
                await conn.execute(_TAKE, lease, *key, self._liveness.owner_id)
        self._unreleased.difference_update(gone)
        if sweep_all:
            self._swept_at = time.monotonic()
        if full:
            raise Full(cap)
        return lease

    def release(self, lease: UUID) -> None:
        """Give the place back (in the background: called where nothing can be awaited)."""
        try:
            task = asyncio.get_running_loop().create_task(self._delete(lease))
        except RuntimeError:  # no loop any more: the worker is ending, and its lock with it
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _delete(self, lease: UUID) -> None:
        try:
            async with self._pool.acquire() as conn:
                await conn.execute("DELETE FROM stream_leases WHERE id = $1", lease)
        except Exception as exc:  # kept, and retried with the next open (the row counts meanwhile)
            log.warning("stream_lease_release_failed", error=type(exc).__name__)
            self._unreleased.add(lease)

    async def close(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
