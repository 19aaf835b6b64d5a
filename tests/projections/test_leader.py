"""The leader base (core/leader.py) on a real database: one leads, a standby takes over when the
leader's session ends, ``stop()`` ends a task that swallowed a cancellation, and a leader a
test forgot is stopped after it (tests/conftest.py) before it can depose the next test's.

On this suite's own database; each test's leaders have a lock name of their own."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence

import asyncpg
import pytest

from alliance.core.events.envelope import RecordedEvent
from alliance.core.leader import Leader
from alliance.core.logging import get_logger
from tests.conftest import LeaderLeftRunning, stop_left_running
from tests.notifications.support import eventually
from tests.projections.helpers import Client


def _key(name: str) -> int:
    digest = hashlib.blake2b(f"alliance.tests.leader.{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Tally(Leader):
    """The smallest leader: follows the store from a given checkpoint, noting whose events it saw."""

    kind = "tally"
    name_field = "tally"
    _log = get_logger("tests.leader")

    def __init__(self, store, database, name: str, after: str, *, swallow: bool = False) -> None:  # type: ignore[no-untyped-def]
        super().__init__(store, dsn=database.app_dsn, name=name, batch_size=100, poll_interval=0.1,
                         standby_interval=0.05)
        self.after = after
        self.subjects: set[uuid.UUID] = set()
        self.leads = 0
        self.swallow = swallow
        self.swallowed = 0
        self.in_round = asyncio.Event()

    def _lock_keys(self) -> list[int]:
        return [_key(self.name)]

    async def _lead(self, conn: asyncpg.Connection) -> str:
        self.leads += 1
        return self.after

    async def _follow(self, conn: asyncpg.Connection, after: str, events: Sequence[RecordedEvent]) -> str:
        self.subjects.update(e.subject_id for e in events)
        return events[-1].checkpoint

    async def _work(self, conn: asyncpg.Connection) -> None:
        self.in_round.set()
        if self.swallow:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:  # as asyncio.wait_for can in 3.11: the cancellation is lost
                self.swallow = False  # once (as there): the round ends and the loop carries on
                self.swallowed += 1


async def lock_is_free(database, name: str) -> bool:  # type: ignore[no-untyped-def]
    """True when another session can take the leader's lock (it gives it back at once)."""
    conn = await asyncpg.connect(database.app_dsn)
    try:
        return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", _key(name)))
    finally:
        await conn.close()


async def test_a_standby_waits_while_another_leads_and_takes_over_when_its_session_ends(store, database):
    start = await Client().enrol().flush(store)
    name = f"tally-{uuid.uuid4().hex[:8]}"
    a, b = Tally(store, database, name, start), Tally(store, database, name, start)
    owner = await asyncpg.connect(database.owner_dsn)
    try:
        a.start()
        await eventually(lambda: a.leading, within=10, what="a leading")
        b.start()
        await asyncio.sleep(0.3)  # six standby intervals: b has tried the lock again and again
        assert (a.leading, b.leading) == (True, False)
        assert not await lock_is_free(database, name)

        key = _key(name)  # a bigint advisory key is held as (classid, objid) = (high, low) halves
        killed = await owner.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)
        assert killed  # a's session ended, and its lock with it
        await eventually(lambda: b.leading and not a.leading, within=10, what="b leading, a standing by")

        later = Client().enrol()
        await later.flush(store)
        await b.wait_rounds(2)
        assert later.client in b.subjects  # the new leader follows the store
        await asyncio.sleep(0.3)
        assert (a.leading, b.leading) == (False, True)  # a reconnected and stands by: one leader
        assert (a.leads, b.leads) == (1, 1)
    finally:
        await owner.close()
        await asyncio.gather(a.stop(), b.stop())
    assert await lock_is_free(database, name)


async def test_stop_ends_a_leader_whose_round_swallowed_a_cancellation(store, database):
    name = f"tally-{uuid.uuid4().hex[:8]}"
    t = Tally(store, database, name, await Client().enrol().flush(store), swallow=True)
    t.start()
    assert t in Leader.running()
    await asyncio.wait_for(t.in_round.wait(), 10)
    async with asyncio.timeout(10):  # one cancel() is swallowed; stop() cancels again until the task ends
        await t.stop()
    assert t.swallowed == 1
    assert not t.is_running and not t.leading
    assert t not in Leader.running()
    assert await lock_is_free(database, name)


async def test_stop_left_running_stops_and_names_the_leaders_started_since(store, database):
    before = set(Leader.running())
    name = f"tally-{uuid.uuid4().hex[:8]}"
    t = Tally(store, database, name, await Client().enrol().flush(store))
    t.start()
    await eventually(lambda: t.leading, within=10, what="leading")
    other = asyncio.new_event_loop()  # a leader is stopped only from its own loop: another's are not listed
    try:
        assert t in Leader.running(asyncio.get_running_loop()) and t not in Leader.running(other)
    finally:
        other.close()
    with pytest.warns(LeaderLeftRunning, match=name):
        stopped = await stop_left_running(before)
    assert stopped == [t]
    assert not t.is_running and not t.leading
    assert await lock_is_free(database, name)
    assert await stop_left_running(before) == []  # nothing left: no warning, nothing stopped


# The autouse fixture itself: the first test forgets its leader (as one stopped by pytest-timeout
# does: its ``finally`` never runs); the second, run next, finds it stopped and its lock free.
_forgotten: list[Tally] = []


@pytest.mark.filterwarnings("ignore::tests.conftest.LeaderLeftRunning")
async def test_forgotten_1_a_test_leaves_its_leader_running(store, database):
    t = Tally(store, database, f"tally-{uuid.uuid4().hex[:8]}", await Client().enrol().flush(store))
    t.start()
    await eventually(lambda: t.leading, within=10, what="leading")
    _forgotten.append(t)


async def test_forgotten_2_the_next_test_finds_it_stopped(database):
    assert len(_forgotten) == 1, "run with the test before it"
    t = _forgotten[0]
    assert not t.is_running and not t.leading
    assert t not in Leader.running()
    assert await lock_is_free(database, t.name)
