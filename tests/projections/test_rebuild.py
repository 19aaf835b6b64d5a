"""The rebuild's bulk path writes exactly the rows the runner writes (compared decrypted: each
row has its own random nonce), keeps the version's checkpoint honest after every write, and
hands over to the runner's path for what writers append meanwhile."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from alliance.core.consent import ConsentGranted, ConsentScope, ConsentWithdrawn
from alliance.core.events.crypto import KeyRing, PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.events.store import parse_checkpoint
from alliance.core.identity import Role
from alliance.core.projections import bulk
from alliance.core.projections.base import ERASURE_EVENT
from alliance.core.projections.history import _in_force, _in_force_at
from alliance.core.projections.rebuild import rebuild, status, verify
from alliance.core.projections.registry import PROJECTIONS
from alliance.core.projections.runner import active_target, catch_up
from alliance.core.projections.sealing import HEAD, SEALED, UNSEALED, open_rows
from tests.projections.helpers import Client, domain_codec

Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]


async def stored(pool: asyncpg.Pool, name: str) -> Rows:
    """Every stored row of the active version of ``name`` as stored (all but ``updated_at``), in a fixed order."""
    table = await pool.fetchval("SELECT table_name FROM projections.projection_versions "
                                "WHERE name = $1 AND state = 'active'", name)
    heads = await pool.fetch(f'SELECT client_id, tenant_id, doc, cp_tx, cp_pos FROM projections."{table}" '
                             "ORDER BY client_id")
    items: list[Any] = []
    if await pool.fetchval("SELECT to_regclass($1)", f'projections."{table}_items"'):
        items = await pool.fetch(f'SELECT client_id, part, ord, data FROM projections."{table}_items" '
                                 "ORDER BY client_id, part, ord")
    return [tuple(r) for r in heads], [tuple(r) for r in items]


def _how(data: bytes) -> bytes:
    """How a row was stored: sealed with key id (format byte and key id), or unsealed (format byte)."""
    return bytes(data[:17]) if data[0] == SEALED else bytes(data[:1])


async def snapshot(pool: asyncpg.Pool, keys: KeyRing, name: str) -> Rows:
    """Every stored row of the active version of ``name``, opened: how it was stored (the key that
    sealed it) and its plaintext instead of its bytes (nonces are random), in a fixed order."""
    heads, items = await stored(pool, name)
    by_client: dict[Any, list[tuple[int, int, bytes]]] = {}
    for client, part, ord_, data in items:
        by_client.setdefault(client, []).append((part, ord_, data))
    opened_heads, opened_items = [], []
    for client, tenant, doc, tx, pos in heads:
        rows = [(HEAD, 0, doc), *by_client.get(client, ())]
        opened = await open_rows(keys, name, client, rows)
        assert opened is not None, (name, client)  # no row is left sealed with a destroyed key
        opened_heads.append((client, tenant, _how(doc), opened[0][2], tx, pos))
        opened_items += [(client, part, ord_, _how(raw), plain)
                         for (part, ord_, raw), (_, _, plain) in zip(rows[1:], opened[1:], strict=True)]
    return opened_heads, opened_items


async def runner_rows(pool: asyncpg.Pool, store: PostgresEventStore, dsn: str, batch_size: int) -> dict[str, Rows]:
    """Bring the active versions up to the head the live runner's way, in small batches; their rows, opened."""
    conn = await asyncpg.connect(dsn)
    try:
        for projection in PROJECTIONS:
            await catch_up(conn, store, await active_target(conn, projection), batch_size=batch_size, emit=False)
    finally:
        await conn.close()
    return {p.name: await snapshot(pool, store.keys, p.name) for p in PROJECTIONS}


async def interleaved(store: PostgresEventStore, *, eraser: PostgresEventStore | None = None,
                      cached: dict[Any, Any] | None = None) -> list[Client]:
    """Clients whose events are spread over the log (so over many pages), ending at different
    points; with ``eraser`` (another process), the second one is erased half-way."""
    clients = [Client(canary="CANARY").enrol() for _ in range(8)]
    for c in clients:
        c.goal()
    erased: set[int] = set()
    for round_ in range(4):
        for i, c in enumerate(clients):
            if i in erased or round_ > i % 4:  # erased: nothing personal can be recorded any more
                continue
            c.measure(20 - round_, goal=c.goals[0])
            if (i + round_) % 2:
                c.feedback()
            if round_ == 1 and i == 0:
                c.withdraw(ConsentScope.MEASUREMENT)
            if round_ == 2:
                c.review(c.goals[0])
            await c.flush(store)
        if round_ == 1 and eraser is not None:
            victim = clients[1]
            if cached is not None:  # what ``store``'s key cache held before the erasure (its listener drops it)
                cached[victim.client] = store.keys._cache[victim.client]  # type: ignore[attr-defined]
            assert await eraser.keys.destroy(victim.client)
            victim.erase()
            await victim.flush(eraser)
            erased.add(1)
    return clients


@pytest.mark.parametrize("passes", [1, 3])
async def test_bulk_rebuild_writes_the_runners_rows_and_a_true_checkpoint(
        store: PostgresEventStore, app_pool: asyncpg.Pool, database, kek: bytes,
        monkeypatch: pytest.MonkeyPatch, passes: int) -> None:  # type: ignore[no-untyped-def]
    eraser = PostgresEventStore(app_pool, domain_codec(), PostgresKeyRing(app_pool, kek), dsn=database.app_dsn)
    cached: dict[Any, Any] = {}
    erased = (await interleaved(store, eraser=eraser, cached=cached))[1].client
    stale = cached[erased]  # this process cached it before the erasure
    live = await runner_rows(app_pool, store, database.app_dsn, batch_size=7)  # the runner's re-fold forgets it
    live_stored = {p.name: await stored(app_pool, p.name) for p in PROJECTIONS}
    # As in a process that cached the key before another one erased: the bulk path must re-fold too.
    store.keys._cache[erased] = stale  # type: ignore[attr-defined]
    handles = {p.name: [*p.handles, ERASURE_EVENT] for p in PROJECTIONS}
    writes: list[str] = []
    write = bulk.Build._write

    async def checked_write(self: bulk.Build, chunk: bulk.Chunk) -> None:
        """After every write: each client with an event at or below the version's checkpoint has its row."""
        await write(self, chunk)
        target = self.target
        tx, pos = parse_checkpoint(target.checkpoint)
        due = {r[0] for r in await app_pool.fetch(
            "SELECT DISTINCT subject_id FROM events WHERE (tx_id, position) <= ($1::text::xid8, $2) "
            "AND type = ANY($3::text[])", str(tx), pos, handles[target.projection.name])}
        stored = {r[0] for r in await self.conn.fetch(f"SELECT client_id FROM {target.qualified}")}
        assert due <= stored, (target.projection.name, target.checkpoint)
        writes.append(target.projection.name)

    monkeypatch.setattr(bulk.Build, "_write", checked_write)
    # Small pages, chunks and writes: clients span pages, writes happen while pages are folded.
    await rebuild(app_pool, store, dsn=database.app_dsn, batch_size=40, write_size=15, write_rows=4,
                  drop_old=False, passes=passes)
    assert all(writes.count(p.name) >= 3 for p in PROJECTIONS), writes
    for projection in PROJECTIONS:
        heads, items = rebuilt = await snapshot(app_pool, store.keys, projection.name)
        # The same rows, decrypted, sealed with the same keys (or unsealed for the same erased client) ...
        assert rebuilt == live[projection.name], projection.name
        assert erased in {r[0] for r in heads}
        plain = [r[3] for r in heads if r[0] == erased] + [r[4] for r in items if r[0] == erased]
        assert plain and not any(b"CANARY" in data for data in plain)  # re-folded as erased
        assert {r[2] for r in heads if r[0] == erased} == {bytes((UNSEALED,))}  # its key is gone: nothing to seal
        # every client not erased (by this run or an earlier one in this database) is sealed
        ever_erased = {r[0] for r in await app_pool.fetch("SELECT DISTINCT subject_id FROM events WHERE type = $1",
                                                          ERASURE_EVENT)}
        sealed = [r for r in heads if r[0] not in ever_erased]
        assert sealed and all(r[2][0] == SEALED for r in sealed)
        # the words are there, under the key (in the head or in the items, as the projection keeps them)
        assert any(b"CANARY" in r[3] for r in sealed) or any(b"CANARY" in r[4] for r in items if r[0] != erased)
        # ... but not the same bytes: every row has its own random nonce.
        raw_heads, raw_items = await stored(app_pool, projection.name)
        live_heads, live_items = live_stored[projection.name]
        assert not {r[2] for r in raw_heads if r[0] not in ever_erased} \
            & {r[2] for r in live_heads if r[0] not in ever_erased}
        assert not {r[3] for r in raw_items if r[0] not in ever_erased} \
            & {r[3] for r in live_items if r[0] not in ever_erased}
        assert not any(b"CANARY" in r[2] for r in raw_heads) and not any(b"CANARY" in r[3] for r in raw_items)
    assert all(r.ok for r in await verify(app_pool, store))


async def test_rebuild_while_writers_append(store: PostgresEventStore, app_pool: asyncpg.Pool, database,
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    clients = await interleaved(store)
    head_before = await store.head()
    folding, appending = asyncio.Event(), asyncio.Event()
    appended: list[str] = []
    fold = bulk.Build.fold

    async def fold_while_they_append(self: bulk.Build, store_: Any, events: Any) -> None:
        folding.set()
        await appending.wait()  # the writers are at it while the store is folded in memory
        await fold(self, store_, events)
        await asyncio.sleep(0)

    async def writer(c: Client, appends: int) -> None:
        rng = random.Random(str(c.client))
        await folding.wait()
        for n in range(appends):  # bounded: the rebuild must catch up with them at some point
            c.measure(rng.randint(0, 27), goal=c.goals[0])
            if rng.random() < 0.3:
                c.feedback()
            appended.append(await c.flush(store))
            if n == 1 and len(appended) >= 2 * len(clients):
                appending.set()
            await asyncio.sleep(rng.random() * 0.005)

    monkeypatch.setattr(bulk.Build, "fold", fold_while_they_append)
    tasks = [asyncio.create_task(writer(c, 12)) for c in clients]
    try:
        [result, *_] = await rebuild(app_pool, store, dsn=database.app_dsn, batch_size=30, write_size=10,
                                     write_rows=25)
    finally:
        appending.set()
        await asyncio.gather(*tasks)
    assert parse_checkpoint(min(appended, key=parse_checkpoint)) > parse_checkpoint(head_before)
    assert parse_checkpoint(result.checkpoint) > parse_checkpoint(head_before)  # folded some of them
    # The rebuilt versions follow as a runner would; a fresh rebuild then writes the very same rows.
    followed = await runner_rows(app_pool, store, database.app_dsn, batch_size=50)
    assert all(r.ok for r in await verify(app_pool, store))
    monkeypatch.undo()
    await rebuild(app_pool, store, dsn=database.app_dsn, batch_size=500)
    for projection in PROJECTIONS:
        assert await snapshot(app_pool, store.keys, projection.name) == followed[projection.name], projection.name


async def test_rebuild_killed_mid_write_leaves_nothing_behind(store: PostgresEventStore, app_pool: asyncpg.Pool,
                                                              database, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    await interleaved(store)
    before = await runner_rows(app_pool, store, database.app_dsn, batch_size=100)
    wrote = asyncio.Event()
    write = bulk.Build._write

    async def write_then_hang(self: bulk.Build, chunk: bulk.Chunk) -> None:
        await write(self, chunk)
        wrote.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(bulk.Build, "_write", write_then_hang)
    task = asyncio.create_task(rebuild(app_pool, store, dsn=database.app_dsn, batch_size=40, write_rows=4))
    await asyncio.wait_for(wrote.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert {s.state for s in await status(app_pool)} == {"active", "building"}  # the build is left as it was
    monkeypatch.undo()
    await rebuild(app_pool, store, dsn=database.app_dsn)
    assert {s.state for s in await status(app_pool)} == {"active"}
    for projection in PROJECTIONS:
        assert await snapshot(app_pool, store.keys, projection.name) == before[projection.name], projection.name


def test_in_force_remembered_equals_computed() -> None:
    by, t0 = Client().client, datetime(2025, 3, 1, tzinfo=UTC)
    consents: tuple[ConsentGranted | ConsentWithdrawn, ...] = ()
    for minutes, scope, grant in ((0, ConsentScope.MEASUREMENT, True), (10, ConsentScope.GOAL_SETTING, True),
                                  (30, ConsentScope.MEASUREMENT, False), (20, ConsentScope.MEASUREMENT, True)):
        at = t0 + timedelta(minutes=minutes)
        consent = ConsentGranted(scope=scope, text_version="v1", mode="self", effective_at=at, by=by,
                                 by_role=Role.CLIENT) if grant else \
            ConsentWithdrawn(scope=scope, mode="self", effective_at=at, by=by, by_role=Role.CLIENT)
        consents = (*consents, consent)
        for probe in range(-5, 45, 5):
            moment = t0 + timedelta(minutes=probe)
            assert _in_force(consents, moment) == _in_force_at(consents, moment)


async def test_rebuild_waits_out_a_brief_lock_holder_but_reports_a_running_rebuild(
        store: PostgresEventStore, app_pool: asyncpg.Pool, database, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from alliance.core.projections import rebuild as rebuild_module
    from alliance.core.projections.runner import lock_key

    await Client().typical().flush(store)
    other = await asyncpg.connect(database.app_dsn)
    try:
        key = lock_key("rebuild", "plan")
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", key)
        # a live runner holds it for a moment while it re-targets: the rebuild waits, then runs
        release = asyncio.get_running_loop().call_later(
            0.3, lambda: asyncio.ensure_future(other.execute("SELECT pg_advisory_unlock($1)", key)))
        [done] = await rebuild(app_pool, store, names=["plan"], dsn=database.app_dsn)
        release.cancel()
        assert done.name == "plan"
        # a holder that stays (another rebuild) is reported, not waited for forever
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", key)
        monkeypatch.setattr(rebuild_module, "LOCK_PATIENCE", 0.2)
        with pytest.raises(rebuild_module.RebuildRunning):
            await rebuild(app_pool, store, names=["plan"], dsn=database.app_dsn)
    finally:
        await other.close()


async def test_a_rebuilt_table_has_the_planners_statistics_before_readers_switch(
        store: PostgresEventStore, app_pool: asyncpg.Pool, database) -> None:  # type: ignore[no-untyped-def]
    """Filled in bulk and never analysed, a new table left the planner guessing until autovacuum
    came by: progress reads took ~100 ms instead of ~1 ms right after a rebuild at 3M events."""
    await interleaved(store)
    await rebuild(app_pool, store, dsn=database.app_dsn, batch_size=40, drop_old=True)
    for projection in PROJECTIONS:
        table = await app_pool.fetchval("SELECT table_name FROM projections.projection_versions "
                                        "WHERE name = $1 AND state = 'active'", projection.name)
        tables = [table, f"{table}_items"] if projection.layout else [table]
        for name in tables:
            analysed = await app_pool.fetchval(
                "SELECT coalesce(last_analyze, last_autoanalyze) IS NOT NULL FROM pg_stat_user_tables "
                "WHERE schemaname = 'projections' AND relname = $1", name)
            assert analysed, f"{name} was switched to without statistics"


async def test_a_rebuild_in_passes_writes_the_same_rows_holding_a_part_of_the_documents(
        store: PostgresEventStore, app_pool: asyncpg.Pool, database,
        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A decade's events are interleaved, so one pass holds every document to the end (8.9 GB at
    3M events, ~30 GB at 10M: more than the machine has). Passes over parts of the clients hold
    a part each and must write exactly the rows one pass writes, with an honest checkpoint."""
    clients = [Client(canary="CANARY").enrol() for _ in range(12)]
    for round_ in range(3):  # interleaved: every client has events in every round
        for c in clients:
            if round_ == 0:
                c.goal()
            c.measure(10 + round_, goal=c.goals[0])
            await c.flush(store)
    held: list[int] = []
    fold = bulk.Build.fold

    async def counting_fold(self: bulk.Build, store_: Any, events: Any) -> None:
        await fold(self, store_, events)
        held.append(len(self.docs))

    monkeypatch.setattr(bulk.Build, "fold", counting_fold)
    await rebuild(app_pool, store, dsn=database.app_dsn, batch_size=10, write_size=5, write_rows=4)
    one_pass, one_peak = {p.name: await snapshot(app_pool, store.keys, p.name) for p in PROJECTIONS}, max(held)
    held.clear()
    await rebuild(app_pool, store, dsn=database.app_dsn, batch_size=10, write_size=5, write_rows=4, passes=3)
    three_passes = {p.name: await snapshot(app_pool, store.keys, p.name) for p in PROJECTIONS}
    assert three_passes == one_pass
    assert max(held) < one_peak, (max(held), one_peak)  # each pass held fewer documents
    head = await store.head()
    for projection in PROJECTIONS:
        assert parse_checkpoint(await status_of(app_pool, projection.name)) == parse_checkpoint(head)
    assert all(r.ok for r in await verify(app_pool, store))
    with pytest.raises(ValueError):
        await rebuild(app_pool, store, dsn=database.app_dsn, passes=0)


async def status_of(pool: asyncpg.Pool, name: str) -> str:
    return str(await pool.fetchval("SELECT checkpoint FROM projections.projection_versions "
                                   "WHERE name = $1 AND state = 'active'", name))
