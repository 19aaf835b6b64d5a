"""The change feed: every plan and progress change of a client, from whichever process projected it.

Source of truth: ``projections.changes`` (client, per-client seq, kind), written in
the projection's own transaction (see ``runner.emit_changes``). A NOTIFY on
``alliance_projection_changes`` after commit only wakes followers; they always
read the table, and also poll every ``poll_interval`` in case a wake-up was lost.

Cursors are opaque strings encoding the per-client sequence number only (never a
global position, which would tell one clinic how busy the others are). A follower
resumes with the last cursor it delivered and misses nothing. Change rows hold no
personal data: the view is read when the change is delivered, so several pending
changes of the same kind are delivered once, with the latest cursor and view.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg

from alliance.core.errors import ValidationError
from alliance.core.events.crypto import KeyRing
from alliance.core.logging import get_logger
from alliance.core.projections.progress import Instruments
from alliance.core.projections.queries import read_history, read_plan, read_progress
from alliance.core.projections.runner import CHANGES_CHANNEL, CLINIC_CHANGE_PREFIX
from alliance.core.projections.view_cache import ViewCache

log = get_logger("alliance.feed")

_PREFIX = "c1-"


def encode_cursor(seq: int) -> str:
    return f"{_PREFIX}{seq:x}"


def decode_cursor(cursor: str | None) -> int:
    """The per-client sequence of a cursor (0 for None/empty: from the beginning)."""
    if not cursor:
        return 0
    if not isinstance(cursor, str) or not cursor.startswith(_PREFIX):
        raise ValidationError("cursor not understood", code="invalid_cursor", field="cursor")
    try:
        seq = int(cursor[len(_PREFIX):], 16)
    except ValueError:
        raise ValidationError("cursor not understood", code="invalid_cursor", field="cursor") from None
    if seq < 0:
        raise ValidationError("cursor not understood", code="invalid_cursor", field="cursor")
    return seq


Watcher = Callable[[Sequence[UUID], Sequence[UUID], bool], None]


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


class Change(NamedTuple):
    cursor: str
    kind: str
    view: dict[str, Any] | None


class ChangeFeed:
    """One per process: a dedicated LISTEN connection fanning wake-ups out to followers, and
    dropping changed views from the process's view cache (``views``)."""

    def __init__(self, pool: asyncpg.Pool, *, dsn: str, keys: KeyRing, instruments: Instruments | None = None,
                 poll_interval: float = 5.0, page: int = 200, views: ViewCache[Any] | None = None,
                 probe_interval: float = 2.0) -> None:
        self._pool = pool
        #: Opens the read models' sealed rows when a view is delivered.
        self.keys = keys
        self._dsn = dsn
        self.instruments = instruments
        self.poll_interval = poll_interval
        self.page = page
        self.views = views
        self.probe_interval = probe_interval
        self._listener: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._waiters: dict[UUID, set[asyncio.Event]] = {}
        #: Called with every notification (see ``watch``).
        self._watchers: list[Watcher] = []
        self._keeper: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    def start(self) -> None:
        """Listen from now on, reconnecting when the connection is lost (the view cache needs it)."""
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep_listening(), name="change-feed")

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        if self.views is not None:
            self.views.listening(False)

    async def _keep_listening(self) -> None:
        """Keep the LISTEN connection up; probe it, since a dead peer is not always noticed."""
        delay = 0.1
        while True:
            try:
                await self._ensure_listener()
                delay = 0.1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.probe_interval):
                        await self._lost.wait()
                conn = self._listener
                if conn is not None and not conn.is_closed():
                    async with asyncio.timeout(self.probe_interval):
                        await conn.fetchval("SELECT 1")
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server is away: retry, serving no cached views meanwhile
                log.warning("change_feed_listener_lost", error=type(exc).__name__)
                self._forget_listener()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _forget_listener(self, conn: object | None = None) -> None:
        if conn is not None and conn is not self._listener:
            return
        if self.views is not None:
            self.views.listening(False)
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            listener.terminate()
        self._lost.set()
        self._tell_watchers((), (), everything=True)  # changes may go unheard until it is back

    async def _ensure_listener(self) -> None:
        async with self._lock:
            if self._listener is not None and not self._listener.is_closed():
                return
            self._lost.clear()
            conn = await asyncpg.connect(self._dsn)
            try:
                await conn.add_listener(CHANGES_CHANNEL, self._on_notify)
            except BaseException:
                conn.terminate()
                raise
            conn.add_termination_listener(self._forget_listener)
            self._listener = conn
            if self.views is not None:  # hearing changes from now on: views fetched from now on may be kept
                self.views.listening(True)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == "*":
            targets = [w for ws in self._waiters.values() for w in ws]
            if self.views is not None:
                self.views.clear()
        else:
            targets = []
            changed = []
            clinic_changed = False
            for part in payload.split(","):
                if part.startswith(CLINIC_CHANGE_PREFIX):
                    clinic_changed = True  # rare: staff or crisis text; every held view may show it
                    continue
                with contextlib.suppress(ValueError):
                    client = UUID(part)
                    changed.append(client)
                    targets.extend(self._waiters.get(client, ()))
            if self.views is not None:
                if clinic_changed:
                    self.views.clear()
                else:
                    self.views.invalidate(changed)
        for waiter in targets:
            waiter.set()
        if payload == "*":
            self._tell_watchers((), (), everything=True)
        elif self._watchers:
            parts = payload.split(",")
            clients = [UUID(p) for p in parts if not p.startswith(CLINIC_CHANGE_PREFIX) and _is_uuid(p)]
            clinics = [UUID(p[len(CLINIC_CHANGE_PREFIX):]) for p in parts
                       if p.startswith(CLINIC_CHANGE_PREFIX) and _is_uuid(p[len(CLINIC_CHANGE_PREFIX):])]
            self._tell_watchers(clients, clinics, everything=False)

    def watch(self, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher(clients, clinics, everything)`` on every notification, from the event loop
        (``everything``: a rebuild switched, or the connection was lost and changes may have gone
        unheard). Open streams re-check who may read through this. Returns the unsubscribe."""
        self._watchers.append(watcher)
        return lambda: self._watchers.remove(watcher) if watcher in self._watchers else None

    def _tell_watchers(self, clients: Sequence[UUID], clinics: Sequence[UUID], *, everything: bool) -> None:
        for watcher in list(self._watchers):
            try:
                watcher(clients, clinics, everything)
            except Exception as exc:  # one watcher's bug must not silence the feed
                log.warning("change_watcher_failed", error=type(exc).__name__)

    async def head(self, client_id: UUID) -> str:
        """The cursor of the client's latest change (follow from here to get only new ones)."""
        async with self._pool.acquire() as conn:
            seq = await conn.fetchval("SELECT seq FROM projections.client_changes WHERE client_id = $1",
                                      client_id)
        return encode_cursor(int(seq or 0))

    async def changes_after(self, client_id: UUID, after: str | None, *, limit: int | None = None
                            ) -> list[tuple[str, str]]:
        """(cursor, kind) of the client's changes after ``after``, in order (no views)."""
        seq = decode_cursor(after)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT seq, kind FROM projections.changes WHERE client_id = $1 AND seq > $2 "
                                    "ORDER BY seq LIMIT $3", client_id, seq, limit or self.page)
        return [(encode_cursor(r[0]), r[1]) for r in rows]

    async def view(self, client_id: UUID, kind: str, *, tenant_id: UUID | None = None) -> dict[str, Any] | None:
        if kind == "plan":
            return await read_plan(self._pool, client_id, keys=self.keys, tenant_id=tenant_id, now=datetime.now(UTC))
        if kind == "progress":
            return await read_progress(self._pool, client_id, keys=self.keys, tenant_id=tenant_id,
                                       instruments=self.instruments)
        return await read_history(self._pool, client_id, keys=self.keys, tenant_id=tenant_id)

    async def follow(self, client_id: UUID, after: str | None = None, *, tenant_id: UUID | None = None
                     ) -> AsyncIterator[Change]:
        """Yield ``Change(cursor, kind, view)`` for every change after ``after``, forever.

        Within one page, earlier changes of a kind are folded into the last one (its view is
        the current one anyway); the cursor then skips past them, so resuming from any
        yielded cursor misses nothing.
        """
        seq = decode_cursor(after)
        await self._ensure_listener()
        wake = asyncio.Event()
        self._waiters.setdefault(client_id, set()).add(wake)
        try:
            while True:
                wake.clear()
                page = await self.changes_after(client_id, encode_cursor(seq))
                if page:
                    last_of_kind = {kind: i for i, (_, kind) in enumerate(page)}
                    for i, (cursor, kind) in enumerate(page):
                        if last_of_kind[kind] != i:
                            continue
                        view = await self.view(client_id, kind, tenant_id=tenant_id)
                        yield Change(cursor, kind, view)
                        seq = decode_cursor(cursor)
                    seq = max(seq, decode_cursor(page[-1][0]))
                if len(page) < self.page:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.poll_interval):  # not wait_for (3.11 cancel race)
                            await wake.wait()
        finally:
            waiters = self._waiters.get(client_id)
            if waiters is not None:
                waiters.discard(wake)
                if not waiters:
                    self._waiters.pop(client_id, None)
