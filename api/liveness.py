"""This process's proof of life, visible to every other process: a session advisory lock.

Each worker holds one dedicated connection that holds a session-level advisory lock on a
random key of its own (its *owner id*). PostgreSQL releases the lock the moment that
session ends, however it ends: the process was killed (``kill -9``), its connection was
lost, or PostgreSQL itself restarted. So "is the owner of this claim still there?" is one
look at ``pg_locks`` (readable by any role), and needs no clock: an in-progress claim is
never judged by its age.

The keeper reconnects with backoff and takes the lock again (after a PostgreSQL restart
every lock is gone): until it has, claims this process made look abandoned, and a retry
elsewhere may run the command again, which is safe, since the command id derives from
the Idempotency-Key and the event store records it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets

import asyncpg

from alliance.core.logging import get_logger

log = get_logger("alliance.liveness")

#: How often the keeper checks its connection when nothing told it the connection died.
CHECK_SECONDS = 1.0
#: Reconnection backoff: first wait, cap (seconds); each wait is jittered.
BACKOFF_FIRST, BACKOFF_CAP = 0.05, 1.0

#: SQL: is the session advisory lock on ``$1`` (a bigint key) held by anyone in this database?
#: A bigint advisory key shows in pg_locks as (classid = high 32 bits, objid = low 32 bits, objsubid = 1).
HELD_SQL = ("EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid = ({key}::bigint >> 32)::oid AND l.objid = ({key}::bigint & 4294967295)::oid)")


def new_owner_id() -> int:
    """A random positive 63-bit key (no collision with the fixed keys of migrations, anchors, projections
    that matters: a collision would only make one process's claims look alive a little longer)."""
    return secrets.randbits(62) + 1


class Liveness:
    """Hold the advisory lock on ``owner_id`` for as long as this process lives."""

    def __init__(self, dsn: str, *, owner_id: int | None = None) -> None:
        self.dsn = dsn
        self.owner_id = owner_id if owner_id is not None else new_owner_id()
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    @property
    def held(self) -> bool:
        """Whether this process believes it holds its lock (``/ready`` shows it)."""
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        """Take the lock now if the database answers (else the keeper keeps trying), then keep it."""
        with contextlib.suppress(Exception):
            await self._take()
        self._task = asyncio.create_task(self._keep(), name="idempotency-liveness")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._drop()

    async def _take(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=5)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.owner_id):
                # Someone holds this key (a stale twin, or chance): claims made under it would look
                # alive while it lives, so take another. Claims made under the old id look abandoned.
                self.owner_id = new_owner_id()
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        self._lost.clear()
        conn.add_termination_listener(lambda _c: self._lost.set())
        self._conn = conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _keep(self) -> None:
        wait = BACKOFF_FIRST
        while True:
            if self.held:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), CHECK_SECONDS)
                try:  # a lost socket does not always announce itself: ask
                    assert self._conn is not None
                    await self._conn.fetchval("SELECT 1", timeout=2)
                    continue
                except Exception as exc:
                    log.warning("liveness_lost", error=type(exc).__name__)
                    await self._drop()
            try:
                await self._take()
                self.reconnects += 1
                log.info("liveness_regained")
                wait = BACKOFF_FIRST
            except Exception as exc:
                log.debug("liveness_retry", error=type(exc).__name__, wait=round(wait, 2))
                await asyncio.sleep(wait * random.uniform(0.5, 1.0))
                wait = min(BACKOFF_CAP, wait * 2)
