"""A clinic network's decade, measured: the store and the read paths with millions of events stored.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.bench_decade --keep-db alliance_decade            # 10,000,000 events
    .venv/bin/python -m bench.bench_decade --events 1000000 --keep-db alliance_decade_1m
    .venv/bin/python -m bench.bench_decade --events 200000                         # a fresh database, dropped

Never in CI. Fills ``--events`` events (default 10,000,000) for 10,000 clients in 10 clinics
through the store's bulk path (``append_many``: ten clients of one clinic, each with its
client stream and goal streams, per transaction; several transactions in flight), in rounds,
so that each client's events are spread over the whole table as years of use spread them.
Each client's history: enrolment and consents, three goals (proposed, revised, milestones,
barriers, contingencies, resources, measures attached, agreed by both parties, activated),
an attainment scale, then a daily mood diary, a weekly PHQ-9 on a goal, and now and then a
review, feedback, a change proposal (accepted or not) and a relapse-prevention plan.

Before filling, free disk space where the server keeps its data is checked
(``shutil.disk_usage``): the run refuses unless there is three times the estimated size.
``--keep-db NAME`` fills database NAME (with a fixed KEK, so a later run can open its
sealed fields) up to ``--events`` and keeps it; a second run reuses what is there.

Reported, from one run: the fill rate; single-event append rate (6 concurrent writers,
group commit on, as the service runs) and a lone append's p50/p99, taken with 100,000 events
stored while filling and again with everything stored; ``read_all`` alone over every event;
the rebuild of all projections and its ratio to ``read_all``; plan and progress read p99 of
one client; one client's as-of history (all of its ≈ events/10,000 events, replayed from the
store) p99; table and index sizes per million events; what an anchor costs (every stream head,
and ``verify_store`` over every chain).

Memory: the rebuild folds every client's documents in memory until the client's last event
(``core/projections/bulk.py``); a decade's events are interleaved, so that is every document
until the end: 8.9 GB peak RSS at 3M events here in one pass. Extrapolated (linear), 10M needs
about 30 GB, so the rebuild runs in passes (``--rebuild-passes``; default one per 2.5M events),
each folding a part of the clients and reading the store again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alliance.core.compliance.anchors import read_heads
from alliance.core.compliance.signing import canonical_json
from alliance.core.database import create_app_pool, ensure_database, start_embedded, with_database, with_user
from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.events.store import StreamAppend
from alliance.core.events.verify import verify_store
from alliance.core.logging import configure_logging
from alliance.core.migrations import apply_migrations
from alliance.core.projections.asof import history_as_of
from alliance.core.projections.queries import read_plan, read_progress
from alliance.core.projections.rebuild import rebuild
from alliance.core.projections.registry import PROJECTIONS
from bench.bench_projections import read_all_baseline
from bench.harness import APP_ROLE, bench_settings, console
from tests.database import TEST_KEK
from tests.projections.helpers import Client, domain_codec

#: Bytes a stored event takes, everything counted: the events row and its indexes (1.14 KB) and the
#: projections' rows (1.87 KB), measured with 3M events of this benchmark (pg_database_size 3,022 MB
#: per million events), plus a margin for WAL not yet recycled; the disk check wants three times this.
BYTES_PER_EVENT = 3_300
PROBE_AT = 100_000
CLINICS = 10


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# -- the clients -------------------------------------------------------------------
class History:
    """One client's history, produced a round at a time (``Client`` tracks its stream versions)."""

    def __init__(self, tenant: uuid.UUID, rng: random.Random, t0: datetime) -> None:
        self.c = Client(tenant=tenant, t0=t0)
        self.rng = rng
        self.day = 0
        self.started = False
        self.proposals = 0

    def next_events(self, count: int) -> list[tuple[str, Any]]:
        """At least ``count`` more events (whole steps), as (stream, NewEvent) in order."""
        c = self.c
        if not self.started:  # the first round: enrolment and goals (measurements need the goals first)
            self.started = True
            c.enrol()
            for instrument in ("phq9", "phq9", "gad7"):
                c.goal(instrument=instrument)
            c.attainment(c.goals[0])
        else:
            while len(c.pending) < count:
                self.day += 1
                c.t = max(c.t, c.t.replace(hour=9, minute=0) + timedelta(days=1))
                c.measure(self.rng.randint(0, 10), instrument="mood_diary")  # the daily diary
                if self.day % 7 == 0:
                    c.measure(self.rng.randint(3, 24), goal=c.goals[self.day // 7 % len(c.goals)])
                if self.day % 30 == 0:
                    c.review(c.goals[self.day // 30 % len(c.goals)])
                if self.day % 45 == 0:
                    c.feedback()
                if self.day % 60 == 0:
                    self.proposals += 1
                    c.propose_change(c.goals[self.proposals % len(c.goals)], accept=self.proposals % 3 != 0)
                if self.day % 180 == 0:
                    c.relapse_plan(self.day // 180)
        out, c.pending = c.pending, []
        return out


def stream_appends(client: Client, pending: list[tuple[str, Any]]) -> list[StreamAppend]:
    """One StreamAppend per stream (in each stream's order), advancing the client's versions."""
    by_stream: dict[str, list[Any]] = {}
    for stream, event in pending:
        by_stream.setdefault(stream, []).append(event)
    out = []
    for stream, events in by_stream.items():
        expected = client.versions.get(stream, 0)
        out.append(StreamAppend(stream_id=stream, events=events, expected_version=expected))
        client.versions[stream] = expected + len(events)
    return out


# -- the database ------------------------------------------------------------------
async def open_database(keep: str | None) -> tuple[str, str, str, bytes]:
    """(admin, owner, app) DSNs and the KEK: database ``keep`` (created when missing) or a fresh one."""
    settings = bench_settings()
    admin = settings.database_url or start_embedded(settings)
    name = keep or f"alliance_decade_{uuid.uuid4().hex[:12]}"
    await ensure_database(admin, name)
    owner = with_database(admin, name)
    await apply_migrations(owner, app_role=APP_ROLE)
    # A kept database outlives this process: its KEK must be known next time.
    kek = TEST_KEK if keep else os.urandom(32)
    return admin, owner, with_user(owner, APP_ROLE, settings.app_role_password), kek


#: One rebuild pass per this many events: its documents took ~3 GB per million events in one pass (8.9 GB at 3M).
REBUILD_EVENTS_PER_PASS = 2_500_000
DISK_FACTOR = 1.5  # the peak over the estimate, with a margin (see check_disk)


async def check_disk(owner: asyncpg.Connection, to_add: int) -> None:
    """Refuse (one line, exit 2) unless the server's data directory has DISK_FACTOR × the estimate free.

    Measured at 3M events: the database takes ~3.0 GB per million, 1.2 GB of it projections, which a
    rebuild holds twice until it switches; with WAL (max_wal_size) the peak is ~1.35× the estimate.
    """
    try:
        where = await owner.fetchval("SHOW data_directory")
    except asyncpg.PostgresError:  # not a superuser: the server's data directory is not ours to see
        where = None
    path = where if where and await asyncio.to_thread(os.path.isdir, where) else os.getcwd()
    free = (await asyncio.to_thread(shutil.disk_usage, path)).free
    need = DISK_FACTOR * to_add * BYTES_PER_EVENT
    if free < need:
        print(f"refusing: {free / 1e9:.1f} GB free at {path}, {to_add:,} more events need about "
              f"{to_add * BYTES_PER_EVENT / 1e9:.1f} GB and this wants {DISK_FACTOR}× that ({need / 1e9:.1f} GB)")
        sys.exit(2)
    console.print(f"disk: {free / 1e9:.1f} GB free at {path}; {to_add:,} events to add ≈ "
                  f"{to_add * BYTES_PER_EVENT / 1e9:.1f} GB (estimate: {BYTES_PER_EVENT:,} B/event)")


async def count_events(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM events"))


# -- probes ------------------------------------------------------------------------
async def append_probe(store: PostgresEventStore, owner: asyncpg.Connection, tenant_clients: list[History],
                       *, lone: int, concurrent: int, writers: int) -> dict[str, float]:
    """Lone appends one after the other (p50/p99), then ``writers`` concurrent writers (events/s).

    Each is one mood-diary measurement onto the client's existing stream at its next version.
    """
    stored = await count_events(owner)

    async def one(h: History) -> float:
        h.c.measure(5, instrument="mood_diary")
        (stream, event), = h.c.pending
        h.c.pending = []
        expected = h.c.versions[stream]
        started = time.perf_counter()
        await store.append(stream, [event], expected)
        elapsed = time.perf_counter() - started
        h.c.versions[stream] = expected + 1
        return elapsed

    times = [await one(tenant_clients[i % len(tenant_clients)]) for i in range(lone)]
    shards = [tenant_clients[w::writers] for w in range(writers)]
    per_writer = concurrent // writers

    async def writer(shard: list[History]) -> None:
        for i in range(per_writer):
            await one(shard[i % len(shard)])

    started = time.perf_counter()
    await asyncio.gather(*(writer(s) for s in shards))
    rate = writers * per_writer / (time.perf_counter() - started)
    figures = {"stored": stored, "p50_ms": pct(times, 50) * 1000, "p99_ms": pct(times, 99) * 1000,
               "lone_rate": len(times) / sum(times), "rate": rate}
    console.print(f"  append probe with {stored:,} events stored: lone append p50 {figures['p50_ms']:.2f} ms, "
                  f"p99 {figures['p99_ms']:.2f} ms; {writers} writers {rate:,.0f} events/s")
    return figures


async def remembered_probe(owner: asyncpg.Connection) -> dict[str, float] | None:
    """The append figure taken at 100k events when this database was filled from empty, if it was."""
    await owner.execute("CREATE TABLE IF NOT EXISTS public.bench_decade_probe (figures jsonb NOT NULL)")
    raw = await owner.fetchval("SELECT figures::text FROM public.bench_decade_probe LIMIT 1")
    return json.loads(raw) if raw else None


async def remember_probe(owner: asyncpg.Connection, figures: dict[str, float]) -> None:
    """Keep the 100k figure with the database, so a later run (``--fill-only`` first) still compares."""
    await owner.execute("INSERT INTO public.bench_decade_probe (figures) VALUES ($1::jsonb)", json.dumps(figures))


async def timed_reads(read: Any, reads: int) -> list[float]:
    await read()  # warm: caches, prepared statements
    times = []
    for _ in range(reads):
        started = time.perf_counter()
        view = await read()
        times.append((time.perf_counter() - started) * 1000)
        assert view is not None
    return times


async def sizes(owner: asyncpg.Connection) -> list[tuple[str, int, int, int]]:
    """(relation, heap + TOAST bytes, index bytes, total bytes) of the store's and projections' tables."""
    rows = await owner.fetch(
        "SELECT n.nspname || '.' || c.relname AS rel, pg_table_size(c.oid) AS heap, pg_indexes_size(c.oid) AS idx, "
        "pg_total_relation_size(c.oid) AS total FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'projections') "
        "ORDER BY pg_total_relation_size(c.oid) DESC")
    return [(r["rel"], r["heap"], r["idx"], r["total"]) for r in rows if r["total"] > 1_000_000]


# -- the run -----------------------------------------------------------------------
def compare(rows: list[tuple[str, float, str, float, str]], figure: str, value: float, baseline_name: str,
            baseline: float, unit: str) -> None:
    rows.append((figure, value, baseline_name, baseline, unit))
    console.print(f"  {figure}: {value:,.2f} {unit} vs {baseline_name} {baseline:,.2f} {unit} "
                  f"= {value / baseline:.2f}×")


async def main(args: argparse.Namespace) -> None:
    admin, owner_dsn, app, kek = await open_database(args.keep_db)
    owner = await asyncpg.connect(owner_dsn)
    # Pool, listener and the owner connection stay within --connections on a shared server.
    pool = await create_app_pool(app, min_size=2, max_size=max(2, args.connections - 2))
    store = PostgresEventStore(pool, domain_codec(), PostgresKeyRing(pool, kek), dsn=app, group_commit=True)
    await store.listen()  # as every process does: follow key destructions, so data keys are cached
    rows: list[tuple[str, float, str, float, str]] = []
    try:
        facts = {k: await owner.fetchval(f"SHOW {k}") for k in ("server_version", "fsync", "synchronous_commit",
                                                                "shared_buffers", "max_wal_size")}
        console.print(f"[bold]server[/] {', '.join(f'{k}={v}' for k, v in facts.items())}; database "
                      f"{owner_dsn.rsplit('/', 1)[-1].split('?')[0]}; load average {os.getloadavg()[0]:.1f}")
        stored = await count_events(owner)
        await check_disk(owner, max(0, args.events - stored))
        rng = random.Random(17)
        tenants = [uuid.uuid4() for _ in range(CLINICS)]
        t0 = datetime(2023, 1, 2, 9, 0, tzinfo=UTC)
        histories = [History(tenants[i % CLINICS], rng, t0) for i in range(args.clients)]
        by_tenant = {t: [h for h in histories if h.c.tenant == t] for t in tenants}
        probe_100k = await remembered_probe(owner)  # a kept database remembers the figure its fill took
        writers = max(1, args.connections - 3)
        probe_clients = by_tenant[tenants[0]]
        fill_started = time.perf_counter()
        filled = 0
        if stored >= args.events:  # a reused database: its clients are not known here; enrol new ones to probe
            console.print(f"reusing {stored:,} events; the probes append to {len(probe_clients):,} new clients "
                          + ("(the 100k figure is the one this database's fill took)" if probe_100k
                             else "(no figure at 100k: that needs a fill from empty)"))
            for i in range(0, len(probe_clients), args.per_call):
                await store.append_many([a for h in probe_clients[i:i + args.per_call]
                                         for a in stream_appends(h.c, h.next_events(0))])
        # Rounds: every client gets a slice of its history each round, so its events spread over the table.
        per_round = max(10, args.events // args.clients // args.rounds)
        # Each transaction holds a permit; the 100k probe takes them all, so nothing else is in flight then.
        gate = asyncio.Semaphore(writers)
        done = asyncio.Event()
        reached = asyncio.Event()  # PROBE_AT events stored

        async def worker(queue: list[list[History]]) -> None:
            nonlocal filled
            while queue and stored + filled < args.events:
                async with gate:
                    if not queue or stored + filled >= args.events:
                        break
                    calls = queue.pop()
                    appends: list[StreamAppend] = []
                    for h in calls:
                        appends += stream_appends(h.c, h.next_events(per_round))
                    await store.append_many(appends)
                    filled += sum(len(a.events) for a in appends)
                    if stored + filled >= PROBE_AT:
                        reached.set()

        async def reporter() -> None:
            next_report = time.perf_counter() + args.report_seconds
            while not done.is_set():
                await asyncio.sleep(0.5)
                if time.perf_counter() >= next_report:
                    next_report += args.report_seconds
                    elapsed = time.perf_counter() - fill_started
                    rate = filled / elapsed
                    eta = (args.events - stored - filled) / rate if rate else float("inf")
                    print(f"  filled {stored + filled:,} / {args.events:,} events, {rate:,.0f}/s, "
                          f"{elapsed:,.0f} s elapsed, about {eta:,.0f} s to go "
                          f"(load average {os.getloadavg()[0]:.1f})", flush=True)

        async def prober() -> None:
            nonlocal probe_100k
            if stored >= PROBE_AT:
                return
            await reached.wait()
            if done.is_set():  # the fill ended below PROBE_AT: no figure at 100k
                return
            for _ in range(writers):
                await gate.acquire()
            try:  # the 100k figure, same code and run as the one at the end; the fill pauses for it
                probe_100k = await append_probe(store, owner, probe_clients, lone=args.lone,
                                                concurrent=args.concurrent, writers=writers)
                await remember_probe(owner, probe_100k)
            finally:
                for _ in range(writers):
                    gate.release()

        side = [asyncio.create_task(reporter()), asyncio.create_task(prober())]
        while stored + filled < args.events:
            queue: list[list[History]] = []
            for t in tenants:
                group = by_tenant[t]
                queue += [group[i:i + args.per_call] for i in range(0, len(group), args.per_call)]
            queue.reverse()
            await asyncio.gather(*(worker(queue) for _ in range(writers)))
        done.set()
        reached.set()
        await asyncio.gather(*side)
        fill_seconds = time.perf_counter() - fill_started
        if filled:
            console.print(f"filled {filled:,} events in {fill_seconds:,.0f} s = {filled / fill_seconds:,.0f} "
                          f"events/s ({writers} transactions in flight, {args.per_call} clients each)")
        await owner.execute("VACUUM ANALYZE events")
        await owner.execute("CHECKPOINT")
        total = await count_events(owner)
        console.print(f"[bold]{total:,} events stored[/] (load average {os.getloadavg()[0]:.1f})")
        if args.fill_only:
            console.print("--fill-only: stopping here; run again with the same --keep-db to measure")
            return

        probe_end = await append_probe(store, owner, probe_clients, lone=args.lone,
                                       concurrent=args.concurrent, writers=writers)
        if probe_100k is not None:
            n_end, n_100k = f"{probe_end['stored'] / 1e6:.2f}M stored", f"{probe_100k['stored'] / 1e3:.0f}k stored"
            compare(rows, f"append, {writers} writers, {n_end}", probe_end["rate"], n_100k, probe_100k["rate"],
                    "events/s")
            compare(rows, f"lone append p50, {n_end}", probe_end["p50_ms"], n_100k, probe_100k["p50_ms"], "ms")
            compare(rows, f"lone append p99, {n_end}", probe_end["p99_ms"], n_100k, probe_100k["p99_ms"], "ms")

        # The rebuild opens one connection of its own and one per projection (core/projections/rebuild.py):
        # a smaller pool from here keeps the run within --connections.
        await store.close()
        await pool.close()
        pool = await create_app_pool(app, min_size=1, max_size=max(1, args.connections - 3 - len(PROJECTIONS)))
        store = PostgresEventStore(pool, domain_codec(), PostgresKeyRing(pool, kek), dsn=app, group_commit=True)
        await store.listen()
        n, secs = await read_all_baseline(store, args.batch)
        console.print(f"  read_all alone: {n:,} events in {secs:,.1f} s = {n / secs:,.0f} events/s")
        started = time.perf_counter()
        passes = args.rebuild_passes or max(1, -(-total // REBUILD_EVENTS_PER_PASS))
        await rebuild(pool, store, dsn=app, batch_size=args.batch, passes=passes)
        rebuilt = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
        console.print(f"  rebuild of {', '.join(p.name for p in PROJECTIONS)} in {passes} pass(es): {rebuilt:,.1f} s; "
                      f"peak RSS of this process so far {peak:,.1f} GB")
        compare(rows, "rebuild, all projections", rebuilt, "read_all alone", secs, "s")

        # The client with the most events, of the filled ones (a reused database: of all).
        client, tenant, count = await owner.fetchrow(
            "SELECT subject_id, min(tenant_id::text)::uuid, count(*) FROM events GROUP BY subject_id "
            "ORDER BY count(*) DESC, subject_id LIMIT 1")
        from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
        registry = InstrumentRegistry.from_plugin_manager(get_plugin_manager())
        async def reads(when: str) -> None:
            plan = await timed_reads(lambda: read_plan(pool, client, keys=store.keys, tenant_id=tenant), args.reads)
            prog = await timed_reads(lambda: read_progress(pool, client, keys=store.keys, tenant_id=tenant,
                                                           instruments=registry), args.reads)
            for name, times in (("plan read", plan), ("progress read", prog)):
                console.print(f"  {name} of one client ({count:,} events), {when}: p50 {pct(times, 50):.2f} ms, "
                              f"p99 {pct(times, 99):.2f} ms (n={len(times)}, mean {statistics.fmean(times):.2f} ms)")

        # As the rebuild leaves them (the new tables not analysed yet: the planner guesses), then analysed.
        await reads("right after the rebuild")
        for table in await owner.fetch("SELECT t.table_name FROM projections.projection_versions v "
                                       "JOIN information_schema.tables t ON t.table_schema = 'projections' "
                                       "AND t.table_name LIKE v.name || '_v' || v.version || '%' "
                                       "WHERE v.state = 'active'"):
            await owner.execute(f'ANALYZE projections."{table[0]}"')
        await reads("after ANALYZE of the projection tables")
        asof = await timed_reads(lambda: history_as_of(store, client, datetime.now(UTC), tenant_id=tenant),
                                 args.asof_reads)
        console.print(f"  as-of history of one client ({count:,} events replayed from the store): "
                      f"p50 {pct(asof, 50):.2f} ms, p99 {pct(asof, 99):.2f} ms (n={len(asof)}, "
                      f"mean {statistics.fmean(asof):.2f} ms)")
        total = await count_events(owner)
        console.print(f"[bold]sizes with {total:,} events[/] (per million events)")
        per_m = total / 1e6
        for rel, heap, idx, all_ in await sizes(owner):
            console.print(f"  {rel}: total {all_ / 1e6:,.0f} MB ({all_ / per_m / 1e6:,.0f} MB per M events), "
                          f"heap+TOAST {heap / per_m / 1e6:,.0f} MB/M, indexes {idx / per_m / 1e6:,.0f} MB/M")
        db_size = await owner.fetchval("SELECT pg_database_size(current_database())")
        console.print(f"  database: {db_size / 1e9:,.2f} GB = {db_size / per_m / 1e6:,.0f} MB per M events")
        if args.verify:
            # What an anchor costs (core/compliance/anchors.py): every stream head, and with
            # verify_first the whole store's chains walked once.
            started = time.perf_counter()
            heads = await read_heads(owner)
            took = time.perf_counter() - started
            console.print(f"  anchor: {len(heads):,} stream heads read in {took:.2f} s; as canonical JSON "
                          f"{len(canonical_json(heads)) / 1e6:,.1f} MB")
            started = time.perf_counter()
            report = await verify_store(owner)
            took = time.perf_counter() - started
            console.print(f"  verify_store (every chain, as `alliance verify` and an anchor's store check): "
                          f"{report.events_checked:,} events in {took:,.1f} s = "
                          f"{report.events_checked / took:,.0f} events/s, ok={report.ok}")
            compare(rows, "verify_store, every chain", took, "read_all alone", secs, "s")
        if rows:
            console.print("\n| figure | value | baseline | baseline value | ratio |\n|---|---:|---|---:|---:|")
            for figure, value, bname, base, unit in rows:
                console.print(f"| {figure} | {value:,.2f} {unit} | {bname} | {base:,.2f} {unit} "
                              f"| {value / base:.2f}× |")
    finally:
        await store.close()
        await pool.close()
        await owner.close()
        if not args.keep_db:
            conn = await asyncpg.connect(admin)
            try:
                name = owner_dsn.rsplit("/", 1)[-1].split("?")[0]
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_decade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000, help="events stored at the end (default 10M)")
    parser.add_argument("--clients", type=int, default=10_000, help="clients, in 10 clinics (default 10,000)")
    parser.add_argument("--keep-db", metavar="NAME",
                        help="fill database NAME up to --events (fixed KEK) and keep it; reused when run again")
    parser.add_argument("--connections", type=int, default=8,
                        help="connections this run opens in all (pool, listener, owner); default 8")
    parser.add_argument("--rounds", type=int, default=20, help="slices of each client's history (default 20)")
    parser.add_argument("--per-call", type=int, default=10, help="clients per append_many transaction")
    parser.add_argument("--lone", type=int, default=1000, help="lone appends per probe (p50/p99)")
    parser.add_argument("--concurrent", type=int, default=3000, help="appends per probe over all writers")
    parser.add_argument("--reads", type=int, default=1000, help="plan and progress reads")
    parser.add_argument("--asof-reads", type=int, default=100, help="as-of history reads")
    parser.add_argument("--batch", type=int, default=4000, help="read_all and rebuild page size")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the anchor cost (stream heads, verify_store over every chain)")
    parser.add_argument("--rebuild-passes", type=int, default=0,
                        help="rebuild in this many passes (default: one per 2.5M events, ~7.5 GB of documents each)")
    parser.add_argument("--fill-only", action="store_true",
                        help="fill (and take the 100k append figure) and stop; with --keep-db, measure in a later run")
    parser.add_argument("--report-seconds", type=float, default=30.0, help="fill progress every this many seconds")
    configure_logging(fmt="console", level="warning")
    asyncio.run(main(parser.parse_args()))
