"""One leader among processes that follow the store: the skeleton the background leaders share.

The notification dispatcher, the reminder process and the alert follower each subclass
``Leader`` and keep only what is theirs: the lock keys, where they start reading (their
checkpoint), what they do with a page of events and the rest of their round. Many processes
may run the same leader; one leads:

1. **Elect.** A dedicated connection (never a pooled one: the pool skips its reset, so a lock
   would leak to the next borrower) takes session advisory locks (``hold_leadership``); a
   standby retries every ``standby_interval`` and takes over once the holder's session ends.
   Every write of the leader's own tables goes through that connection, so a deposed leader
   (its session ended, its lock with it) can no longer commit anything.
2. **Follow.** LISTEN on the store's channel for wake-ups, then in rounds: read the store after
   the checkpoint, follow that page, do the round's work, and wait for a wake-up or the poll
   interval. A page that filled the batch is followed at once by the next round.
3. **Recover.** Any error (connection lost, server restarted, fenced) ends the session: the
   connection is dropped, the lead given up, and after ``standby_interval`` the leader connects
   and stands for election again.

``start()``/``stop()`` run it as a task; ``stop()`` cancels until the task has ended
(``core/tasks.py``). Every leader started and not yet stopped is in ``Leader.running()``, so a
test harness can stop one a test left running (a test killed by its timeout skips its
``finally``) before it deposes the next test's leaders.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import weakref
from collections.abc import Sequence
from typing import Any, ClassVar

import asyncpg

from alliance.core.events.envelope import RecordedEvent
from alliance.core.events.postgres import EVENTS_CHANNEL
from alliance.core.events.store import EventStore
from alliance.core.tasks import cancel_and_wait

#: After a wake-up that found nothing readable: look again after these pauses (≈ 0.2 s in all).
#: An append is readable only once it is below the store's read horizon, i.e. once every older
#: transaction in the cluster has ended (core/events/postgres.py), often within milliseconds.
RETRY_DELAYS = (0.002, 0.005, *(0.01,) * 5, *(0.05,) * 3)


async def hold_leadership(conn: asyncpg.Connection, keys: Sequence[int], *, standby_interval: float) -> None:
    """Return once ``conn`` holds every one of ``keys`` (session advisory locks, all or none),
    standing by ``standby_interval`` between tries. The one leadership of every follower of
    the store (projection runners and the ``Leader`` subclasses): the locks live on the
    connection that writes, so a leader whose session ended can no longer commit anything."""
    while True:
        held = []
        for key in keys:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                break
            held.append(key)
        if len(held) == len(keys):
            return
        for key in held:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
        await asyncio.sleep(standby_interval)


class Leader(abc.ABC):
    """A follower of the store run by one process at a time; ``start()`` it, ``await stop()`` it.

    A subclass sets ``kind`` (its task's name and its log events ``<kind>_error``), ``name_field``
    (the log field naming it), ``_log``, and implements ``_lock_keys``, ``_lead``, ``_follow``
    and ``_work``.
    """

    kind: ClassVar[str]
    name_field: ClassVar[str]
    _log: ClassVar[Any]
    #: The NOTIFY channel that wakes a round (the store's: an append happened).
    channel: ClassVar[str] = EVENTS_CHANNEL
    #: Whether ``_work`` runs after a page that filled the batch (False: only once caught up).
    work_while_behind: ClassVar[bool] = True
    #: Started and not stopped (weak: a leader nobody holds and whose task ended is forgotten).
    _started: ClassVar[weakref.WeakSet[Leader]] = weakref.WeakSet()

    def __init__(self, store: EventStore, *, dsn: str, name: str, batch_size: int, poll_interval: float,
                 standby_interval: float) -> None:
        self.store = store
        self.dsn = dsn
        self.name = name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.standby_interval = standby_interval
        self.leading = False
        #: Where the leader has followed the store to (None before it first leads).
        self.checkpoint: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._rounds = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}{' leading' if self.leading else ''}>"

    # -- what a subclass provides -------------------------------------------
    @abc.abstractmethod
    def _lock_keys(self) -> list[int]:
        """The session advisory locks that make this process the leader."""

    @abc.abstractmethod
    async def _lead(self, conn: asyncpg.Connection) -> str:
        """Just elected, on the leader's connection: prepare and answer the checkpoint to follow from."""

    @abc.abstractmethod
    async def _follow(self, conn: asyncpg.Connection, after: str, events: Sequence[RecordedEvent]) -> str:
        """Follow one non-empty page read after ``after``; answer the new checkpoint."""

    async def _work(self, conn: asyncpg.Connection) -> None:
        """The rest of a round (due work read from the clock, deliveries, decisions); none by default."""
        return None

    # -- lifecycle -----------------------------------------------------------
    @classmethod
    def running(cls, loop: asyncio.AbstractEventLoop | None = None) -> list[Leader]:
        """Every leader started and not yet stopped whose task is still running (any subclass),
        or only those whose task runs on ``loop`` (a task can be stopped only from its own loop)."""
        return [leader for leader in list(Leader._started)
                if leader._task is not None and not leader._task.done()
                and (loop is None or leader._task.get_loop() is loop)]

    @property
    def is_running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"{self.kind}:{self.name}")
            Leader._started.add(self)
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        Leader._started.discard(self)
        if task is not None:
            await cancel_and_wait(task)

    def kick(self) -> None:
        """Run a round now (the clock was moved, say) rather than at the next poll."""
        self._wake.set()

    async def wait_rounds(self, n: int = 1, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until the leader has completed ``n`` more rounds (tests and health checks)."""
        target = self._rounds + n
        async with asyncio.timeout(timeout):
            while self._rounds < target:
                self.kick()
                await asyncio.sleep(0.01)

    async def run(self) -> None:
        """Lead, or stand by until this process may, until cancelled (re-electing after errors)."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn)
                await self._session(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost, server restart, fenced: re-elect after a pause
                self._log.warning(f"{self.kind}_error", **{self.name_field: self.name}, error=type(exc).__name__)
            finally:
                self.leading = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(self.standby_interval)

    async def _session(self, conn: asyncpg.Connection) -> None:
        await hold_leadership(conn, self._lock_keys(), standby_interval=self.standby_interval)
        self.leading = True
        await conn.add_listener(self.channel, lambda *_: self._wake.set())
        checkpoint = self.checkpoint = await self._lead(conn)
        retry = len(RETRY_DELAYS)  # nothing to look again for until a wake-up
        while True:
            self._wake.clear()
            events = await self.store.read_all(after=checkpoint, limit=self.batch_size)
            if events:
                retry = 0
                checkpoint = self.checkpoint = await self._follow(conn, checkpoint, events)
            behind = len(events) == self.batch_size
            if behind and not self.work_while_behind:
                continue
            await self._work(conn)
            self._rounds += 1
            if behind:
                continue
            if not events and retry < len(RETRY_DELAYS):
                # Woken, nothing readable yet: the append is below the read horizon a moment
                # longer. Look again soon rather than at the next wake-up or poll.
                await asyncio.sleep(RETRY_DELAYS[retry])
                retry += 1
                continue
            try:
                async with asyncio.timeout(self.poll_interval):  # not wait_for: it can swallow a cancellation
                    await self._wake.wait()
                retry = 0
            except TimeoutError:
                retry = len(RETRY_DELAYS)
                await conn.execute("SELECT 1")  # notice a lost session (and lock) while idle
