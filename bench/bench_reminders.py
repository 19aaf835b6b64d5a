"""The reminder process deciding one day (issue 16), on a dedicated fresh database dropped afterwards.

    .venv/bin/python -m bench.bench_reminders             # 10,000 clients (the issue's figure)
    .venv/bin/python -m bench.bench_reminders --quick     # 1,000 clients

Each client (ten clinics) is enrolled with its consents, has an agreed goal with a weekly PHQ-9
(start dates spread over the week, so a seventh of them falls due on any day), a daily mood diary
attached to the episode, and an email address for reminders (sealed). The runner first follows
the store (building its watch table, as a leader does on taking over), then the clock is set to
09:30 on the day before (the first day: cold, every open administration is reminded, each
client's PHQ-9 among them) and then on the day, and ``decide_due`` decides every client: one
``reminder.scheduled`` per due administration with its link and notification request, appended
for up to 50 clients of a clinic per transaction, six groups at once. The figure is the day's
decision time (every diary, a seventh of the PHQ-9s); target ≤ 60 s for 10,000 clients. Same
run, for scale: appending the very same events alone (``append_many``, same groups, one at a
time, fresh ids and streams, nothing read or decided; at most 2,000 clients' events).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from alliance.core.client import ClientEnrolled, EpisodeMeasureAttached, client_stream
from alliance.core.clock import SettableClock
from alliance.core.consent import ConsentGranted, ConsentScope
from alliance.core.database import create_app_pool
from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.envelope import NewEvent
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.events.store import StreamAppend
from alliance.core.goal import GoalActivated, GoalAgreed, GoalProposed, MeasureAttached, goal_stream
from alliance.core.identity import Role
from alliance.core.reminders.decide import ChannelInfo
from alliance.core.reminders.events import ReminderContactSet, reminders_stream
from alliance.core.reminders.runner import ReminderRunner, load_checkpoint
from alliance.core.schedules import Schedule
from bench.harness import (
    Results,
    console,
    create_bench_database,
    drop_bench_database,
    print_server,
    print_table_size,
)
from tests.projections.helpers import domain_codec

DAY = date(2026, 3, 16)  # the day decided (a Monday)
TARGET_SECONDS = 60.0
CLINICS = 10


def client_appends(tenant: uuid.UUID, n: int) -> list[StreamAppend]:
    client, clinician, goal = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    t = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def ev(payload: object, role: Role = Role.CLINICIAN) -> NewEvent:
        return NewEvent(event_id=uuid.uuid4(), payload=payload, tenant_id=tenant, subject_id=client,  # type: ignore[arg-type]
                        actor_id=client if role is Role.CLIENT else clinician, actor_role=role, occurred_at=t)

    by, me = {"by": clinician, "by_role": Role.CLINICIAN}, {"by": client, "by_role": Role.CLIENT}
    weekly = Schedule(kind="every", interval=1, unit="weeks", start=DAY - timedelta(days=7 + n % 7),
                      timezone="Europe/London")
    daily = Schedule(kind="every", interval=1, unit="days", start=DAY - timedelta(days=14), timezone="Europe/London")
    return [
        StreamAppend(stream_id=client_stream(client), expected_version=0, events=[
            ev(ClientEnrolled(client_id=client, tenant_id=tenant, episode_id=uuid.uuid4(),
                              primary_clinician_id=clinician, **by)),
            *(ev(ConsentGranted(scope=s, text_version="v1", mode="self", effective_at=t, **me), Role.CLIENT)
              for s in ConsentScope),
            ev(EpisodeMeasureAttached(instrument_id="mood_diary", schedule=daily, **by))]),
        StreamAppend(stream_id=goal_stream(goal), expected_version=0, events=[
            ev(GoalProposed(goal_id=goal, client_id=client, tenant_id=tenant, author_party="client",
                            client_words="feel less low", **me), Role.CLIENT),
            ev(MeasureAttached(instrument_id="phq9", schedule=weekly, **by)),
            ev(GoalAgreed(goal_id=goal, version=1, party="client", **me), Role.CLIENT),
            ev(GoalAgreed(goal_id=goal, version=1, party="clinician", **by)),
            ev(GoalActivated(version=1), Role.SYSTEM)]),
        StreamAppend(stream_id=reminders_stream(client), expected_version=0, events=[
            ev(ReminderContactSet(email=f"client-{n}@home.example", **me), Role.CLIENT)]),
    ]


async def generate(store: PostgresEventStore, clients: int, workers: int = 8) -> int:
    tenants = [uuid.uuid4() for _ in range(CLINICS)]
    todo = list(range(clients))

    async def worker() -> None:
        while todo:
            n = todo.pop()
            await store.append_many(client_appends(tenants[n % CLINICS], n))

    await asyncio.gather(*(worker() for _ in range(workers)))
    async with store._pool.acquire() as conn:  # bench-only peek
        return int(await conn.fetchval("SELECT count(*) FROM events"))


Day = tuple[int, int, float]


async def decide_days(store: PostgresEventStore, dsn: str) -> tuple[float, Day, Day]:
    """Seconds following the store; then (clients decided, events recorded, seconds) for the day
    before (the first, cold: every open administration) and for the day itself."""
    clock = SettableClock(datetime.combine(DAY - timedelta(days=1), clock_time(0, 30), tzinfo=UTC))
    runner = ReminderRunner(store, dsn=dsn, channels=[ChannelInfo("email", "email")], key=os.urandom(32), clock=clock)
    conn = await asyncpg.connect(dsn)
    try:
        # read_all shows nothing younger than the oldest transaction still open on the server (the
        # store's no-skip horizon): on a shared server, wait for it to pass what was generated.
        for _ in range(600):
            if len(await store.read_all(limit=1000)) == 1000:
                break
            await asyncio.sleep(0.2)
        started = time.perf_counter()
        checkpoint = await load_checkpoint(conn, runner.name)
        while events := await store.read_all(after=checkpoint, limit=runner.batch_size):
            checkpoint = await runner._follow(conn, checkpoint, events)  # bench-only: one round by hand
        followed = time.perf_counter() - started
        days = []
        for day in (DAY - timedelta(days=1), DAY):
            if days:  # what the running process does between the days: follow what was recorded
                while events := await store.read_all(after=checkpoint, limit=runner.batch_size):
                    checkpoint = await runner._follow(conn, checkpoint, events)
            clock.set(datetime.combine(day, clock_time(9, 30), tzinfo=UTC))
            started, recorded = time.perf_counter(), runner.recorded
            decided = await runner.decide_due(conn)
            days.append((decided, runner.recorded - recorded, time.perf_counter() - started))
        return followed, days[0], days[1]
    finally:
        await conn.close()


async def append_alone(store: PostgresEventStore, group_size: int = 50) -> tuple[int, float]:
    """The decision's events again, with fresh ids on fresh streams, in the runner's groups."""
    async with store._pool.acquire() as conn:  # bench-only peek: which streams the decision wrote
        rows = await conn.fetch("SELECT DISTINCT subject_id FROM events WHERE type = 'reminder.scheduled' "
                                "LIMIT 2000")  # a rate: 2,000 clients' worth is plenty
    by_client: dict[uuid.UUID, list[StreamAppend]] = {}
    for row in rows:
        events = [e for e in await store.read_subject(row[0])
                  if e.type in ("reminder.scheduled", "questionnaire_link.issued", "notification.requested")]
        streams: dict[str, list[NewEvent]] = {}
        for e in events:
            streams.setdefault(e.stream_id + "-again", []).append(NewEvent(
                event_id=uuid.uuid4(), payload=e.payload, tenant_id=e.tenant_id, subject_id=e.subject_id,
                actor_id=e.actor_id, actor_role=e.actor_role, occurred_at=e.occurred_at))
        by_client[row[0]] = [StreamAppend(stream_id=s, expected_version=0, events=evs) for s, evs in streams.items()]
    by_tenant: dict[uuid.UUID, list[list[StreamAppend]]] = {}
    for appends in by_client.values():
        by_tenant.setdefault(appends[0].events[0].tenant_id, []).append(appends)
    total = sum(len(a.events) for appends in by_client.values() for a in appends)
    started = time.perf_counter()
    for groups in by_tenant.values():
        for i in range(0, len(groups), group_size):
            await store.append_many([a for appends in groups[i:i + group_size] for a in appends])
    return total, time.perf_counter() - started


async def run(args: argparse.Namespace) -> Results:
    db = await create_bench_database()
    results = Results("reminder process (issue 16)")
    pool = await create_app_pool(db.app_dsn, min_size=2, max_size=12)
    store = PostgresEventStore(pool, domain_codec(), PostgresKeyRing(pool, os.urandom(32)), dsn=db.app_dsn)
    try:
        await print_server(db)
        started = time.perf_counter()
        total = await generate(store, args.clients)
        console.print(f"  generated {total:,} events for {args.clients:,} clients in {CLINICS} clinics (a weekly "
                      f"PHQ-9 on a goal, a daily mood diary, an address) in {time.perf_counter() - started:.1f} s")
        await print_table_size(db.owner_dsn, "events")
        followed, first, (decided, recorded, secs) = await decide_days(store, db.app_dsn)
        console.print(f"  followed the store in {followed:.1f} s; the first day ({DAY - timedelta(days=1)}, cold: "
                      f"every open administration, each weekly PHQ-9 among them) decided {first[0]:,} clients in "
                      f"{first[2]:.1f} s ({first[1]:,} events)")
        console.print(f"  the day {DAY}: decided {decided:,} clients in {secs:.1f} s ({recorded:,} events recorded: "
                      f"each reminder, its link and its request); target ≤ {TARGET_SECONDS:.0f} s for 10,000 clients")
        n, alone = await append_alone(store)
        console.print(f"  the same {n:,} events appended alone: {alone:.1f} s")
        # Rates in clients/s: the day's decision against the target's rate (10,000 in 60 s).
        results.add("clients decided (a day)", decided / secs, "target: 10,000 in 60 s", 10_000 / TARGET_SECONDS,
                    1.0)
        results.add("events recorded deciding", recorded / secs, "append_many of the same events alone",
                    n / alone, 0.0)
    finally:
        await store.close()
        await pool.close()
        await drop_bench_database(db)
    results.print()
    return results


def main() -> Results:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 clients")
    parser.add_argument("--clients", type=int, default=None)
    args, _ = parser.parse_known_args()
    args.clients = args.clients or (1000 if args.quick else 10_000)
    from alliance.core.logging import configure_logging
    configure_logging(fmt="console", level="warning")
    return asyncio.run(run(args))


if __name__ == "__main__":
    main()
