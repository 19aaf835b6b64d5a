"""Failover trials: a database host lost under a measurement load with Idempotency-Keys.

1. The synchronous standby killed (``kill -9`` of its keeper and PostgreSQL): the primary goes
   on taking writes once the monitor has released synchronous replication (a few seconds in
   which commits wait), nothing acknowledged is lost, and the standby catches up when it is back.
2. A planned switchover under the same load (``pg_autoctl perform switchover``): every answer
   while the primary is demoted and the standby promoted is a 503 with ``Retry-After``, never a 500.
3. No writable node (the primary set read-only, the app's sessions on it ended): only 503s with
   ``Retry-After``; writes resume by themselves once it is writable again.
4. The primary killed (its whole process group: keeper, postmaster, backends): the monitor
   promotes the standby; the same service processes find it through the multi-host DSN. Promise:
   every acknowledged write is stored exactly once, every retry with its key resolves, the first
   write after the kill succeeds within 60 s (goal 30 s), while no primary is writable every
   answer is a 503 with ``Retry-After``, a progress stream followed across the promotion shows
   every change once and in order, the store verifies against the anchor written before the
   kill, the projections verify, and a client erased just before the kill stays erased.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from deploy.ha_cluster import NODES, HACluster
from tests.faults.db import measurement_counts
from tests.faults.failover.load import Load
from tests.faults.service import Service
from tests.faults.sse import Follower
from tests.faults.world import (
    Clinic,
    active_goal,
    canary,
    connection_per_worker,
    enrol_client,
    eventually,
    retry_all,
    status_counts,
    until,
)

WRITERS = 4
ACKED_BEFORE_KILL = 24
#: Seconds of load after the first successful write following the kill.
AFTER_SECONDS = 3.0
#: The bound on the time to the first successful write after the primary's death, and the goal.
FIRST_WRITE_BOUND, FIRST_WRITE_GOAL = 60.0, 30.0
RETRY_SECONDS = 30.0
#: Seconds the primary stays read-only before the app's sessions on it end, and after.
READ_ONLY_SECONDS = 1.5
#: Seconds for a request already inside a transaction when the setting changed to finish.
SETTLE = 0.3
#: The bound on the first write once a node is writable again (the pool reconnects at once).
RECOVERY_SECONDS = 15.0
READ_SECONDS = 10.0


async def test_standby_killed_the_primary_goes_on_taking_writes(settled: HACluster, ha_service: Service,
                                                                ha_clinic: Clinic, http: httpx.AsyncClient) -> None:
    ha, clinic = settled, ha_clinic
    primary = ha.primary()
    assert primary is not None
    standby = next(n for n in NODES if n != primary)
    sync_before = ha.sync_standby_names(primary)
    load = Load(clinic, [await enrol_client(clinic, http) for _ in range(WRITERS)], "standby-kill")
    load.start()
    assert await until(lambda: len(load.acked()) >= ACKED_BEFORE_KILL, within=30), "the load did not start"
    acked_before = len(load.acked())
    kill_at = time.monotonic()
    await asyncio.to_thread(ha.kill, standby)
    assert await until(lambda: len(load.acked()) >= acked_before + 2 * ACKED_BEFORE_KILL, within=30), \
        f"writes did not go on without the standby: {status_counts([a.status for a in load.answers[-20:]])}"

    async def degraded_state() -> tuple[tuple[str, str] | None, str] | None:
        found = await asyncio.to_thread(ha.role, primary), await asyncio.to_thread(ha.sync_standby_names, primary)
        return found if found == (("wait_primary", "wait_primary"), "") else None

    # the monitor's view settles within a health check of the writes resuming
    degraded = await eventually(degraded_state, within=10) or (
        await asyncio.to_thread(ha.role, primary), await asyncio.to_thread(ha.sync_standby_names, primary))
    await load.stop()
    stall = load.longest_stall(kill_at)

    restart_at = time.monotonic()
    await asyncio.to_thread(ha.start, standby)
    caught_up = await asyncio.to_thread(ha.wait_settled, 90)
    sync_after = await asyncio.to_thread(ha.sync_standby_names, primary)
    rejoin = time.monotonic() - restart_at

    counts = await measurement_counts(ha.dsn(), load.clients)
    acked = load.acked()
    lost = [i.key for i in acked if counts.get(i.measurement_id or "", 0) == 0]
    duplicated = [m for m, n in counts.items() if n > 1]
    print(f"\n[standby kill] primary={primary} standby={standby} synchronous_standby_names before={sync_before!r} "
          f"while the standby was down={degraded[1]!r} primary state={degraded[0]}")
    print(f"[standby kill] writes: sent={len(load.sent)} acknowledged={len(acked)} (before the kill "
          f"{acked_before}) answers={status_counts([a.status for a in load.answers])} longest stall after the "
          f"kill={stall:.2f}s first 2xx after the kill={_s(load.first_ok_after(kill_at))}")
    print(f"[standby kill] acknowledged lost={len(lost)} duplicates={len(duplicated)}; standby back as secondary "
          f"{rejoin:.1f}s after its restart (caught up in {caught_up:.1f}s), synchronous again={sync_after!r}")

    assert sync_before, "replication was not synchronous before the kill"
    assert degraded == (("wait_primary", "wait_primary"), ""), degraded
    assert all(a.status == 201 for a in load.answers), status_counts([a.status for a in load.answers])
    assert not lost and not duplicated, (lost[:5], duplicated[:5])
    assert sync_after, "the standby came back but replication stayed asynchronous"


async def test_switchover_under_load_the_demoted_primary_answers_no_500(
        settled: HACluster, ha_service: Service, ha_clinic: Clinic, http: httpx.AsyncClient) -> None:
    """A planned switchover: the primary is demoted (stopped, restarted as a standby) while
    requests reach it; every answer meanwhile is a 503 with ``Retry-After``, whatever form the
    outage takes (refused, lost mid-command, starting up, read-only), and the pool moves to the
    new primary by itself."""
    ha, service, clinic = settled, ha_service, ha_clinic
    primary = ha.primary()
    assert primary is not None
    load = Load(clinic, [await enrol_client(clinic, http) for _ in range(WRITERS)], "switchover")
    load.start()
    assert await until(lambda: len(load.acked()) >= ACKED_BEFORE_KILL, within=30), "the load did not start"
    log_offset = service.log.stat().st_size
    started = time.monotonic()
    await asyncio.to_thread(ha.switchover)
    switched = time.monotonic() - started
    await until(lambda: load.first_ok_after(started + switched) is not None, within=FIRST_WRITE_BOUND)
    await asyncio.sleep(AFTER_SECONDS)
    await load.stop()
    new_primary = await asyncio.to_thread(ha.primary)
    failed = load.not_acked()
    await retry_all(clinic, http, failed, within=RETRY_SECONDS)
    unresolved = [i for i in failed if not (isinstance(i.final_status, int) and 200 <= i.final_status < 300)]
    counts = await measurement_counts(ha.dsn(), load.clients)
    lost = [i.key for i in load.acked() if counts.get(i.measurement_id or "", 0) == 0]
    known = {i.measurement_id for i in load.sent if i.measurement_id}
    duplicated = [m for m, n in counts.items() if n > 1]
    strays = sum(n for m, n in counts.items() if m not in known)
    not_503 = [a for a in load.answers if not isinstance(a.status, int) or (a.status >= 500 and a.status != 503)]
    bare_503 = [a for a in load.answers if a.status == 503 and not (a.retry_after and a.problem)]
    print(f"\n[switchover] {primary} -> {new_primary} in {switched:.2f}s (pg_autoctl perform switchover); "
          f"longest time without a 2xx={load.longest_stall(started):.2f}s; answers="
          f"{status_counts([a.status for a in load.answers])} 503_without_retry_after_or_problem={len(bare_503)}; "
          f"503s by cause={_outage_causes(service, log_offset)}")
    print(f"[switchover] keys={len(load.sent)} acknowledged={len(load.acked())} acknowledged_lost={len(lost)} "
          f"duplicates={len(duplicated)} events_of_no_key={strays} not_2xx_first={len(failed)} "
          f"retries_final={status_counts([i.final_status for i in failed])} unresolved={len(unresolved)}")

    assert new_primary is not None and new_primary != primary, (primary, new_primary)
    assert load.first_ok_after(started + switched) is not None, "no write succeeded after the switchover"
    assert not not_503 and not bare_503, (status_counts([a.status for a in not_503]), len(bare_503))
    assert not lost and not duplicated and strays == 0, (lost[:5], duplicated[:5], strays)
    assert not unresolved, f"unresolved retries: {status_counts([i.final_status for i in unresolved])}"


async def test_no_writable_node_every_write_is_a_503_and_writes_resume_without_a_restart(
        settled: HACluster, ha_service: Service, ha_clinic: Clinic, http: httpx.AsyncClient) -> None:
    """Both nodes up, neither writable: the primary made read-only by its operator
    (``default_transaction_read_only``, as a demoted node answers), then the app's sessions on
    it ended, so the pool's new connections find no host that target_session_attrs=read-write
    accepts. Every write meanwhile is a 503 with ``Retry-After`` (read-only transaction, 25006,
    on the sessions it had; no matching host on the new ones); writes resume once the primary
    is writable again, without a restart."""
    ha, service, clinic = settled, ha_service, ha_clinic
    primary = ha.primary()
    assert primary is not None
    port = ha.ports[primary]
    load = Load(clinic, [await enrol_client(clinic, http) for _ in range(WRITERS)], "read-only")
    load.start()
    assert await until(lambda: len(load.acked()) >= ACKED_BEFORE_KILL, within=30), "the load did not start"
    log_offset = service.log.stat().st_size
    await asyncio.to_thread(ha.psql, port, "ALTER SYSTEM SET default_transaction_read_only = on")
    await asyncio.to_thread(ha.psql, port, "SELECT pg_reload_conf()")
    read_only_at = time.monotonic()  # each session applies it from its next transaction on
    await asyncio.sleep(READ_ONLY_SECONDS)
    ended = await asyncio.to_thread(ha.psql, port, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                    "WHERE datname = 'alliance' AND pid <> pg_backend_pid()")
    await asyncio.sleep(READ_ONLY_SECONDS)
    reset_at = time.monotonic()
    await asyncio.to_thread(ha.psql, port, "ALTER SYSTEM RESET default_transaction_read_only")
    await asyncio.to_thread(ha.psql, port, "SELECT pg_reload_conf()")
    writable_at = time.monotonic()
    await until(lambda: load.first_ok_after(writable_at) is not None, within=FIRST_WRITE_BOUND)
    await asyncio.sleep(AFTER_SECONDS)
    await load.stop()
    first_write = load.first_ok_after(writable_at)
    during = [a for a in load.answers if a.sent > read_only_at + SETTLE and a.at < reset_at]
    failed = load.not_acked()
    await retry_all(clinic, http, failed, within=RETRY_SECONDS)
    unresolved = [i for i in failed if not (isinstance(i.final_status, int) and 200 <= i.final_status < 300)]
    counts = await measurement_counts(ha.dsn(), load.clients)
    lost = [i.key for i in load.acked() if counts.get(i.measurement_id or "", 0) == 0]
    duplicated = [m for m, n in counts.items() if n > 1]
    not_503 = [a for a in load.answers if not isinstance(a.status, int) or (a.status >= 500 and a.status != 503)]
    bare_503 = [a for a in load.answers if a.status == 503 and not (a.retry_after and a.problem)]
    causes = _outage_causes(service, log_offset)
    print(f"\n[no writable node] {primary} read-only for {reset_at - read_only_at:.1f}s "
          f"({ended} sessions ended half-way); "
          f"answers meanwhile={status_counts([a.status for a in during])} in all="
          f"{status_counts([a.status for a in load.answers])} 503s by cause={causes} "
          f"503_without_retry_after_or_problem={len(bare_503)}; first 2xx once writable={_s(first_write)}")
    print(f"[no writable node] keys={len(load.sent)} acknowledged={len(load.acked())} acknowledged_lost={len(lost)} "
          f"duplicates={len(duplicated)} retries_final={status_counts([i.final_status for i in failed])} "
          f"unresolved={len(unresolved)} "
          f"service pid unchanged={service.proc is not None and service.proc.poll() is None}")

    assert during and all(a.status == 503 for a in during), status_counts([a.status for a in during])
    assert not not_503 and not bare_503, (status_counts([a.status for a in not_503]), len(bare_503))
    assert causes.get("ReadOnlySQLTransactionError") and causes.get("TargetServerAttributeNotMatched"), causes
    assert first_write is not None and first_write < RECOVERY_SECONDS, _s(first_write)
    assert not lost and not duplicated, (lost[:5], duplicated[:5])
    assert not unresolved, f"unresolved retries: {status_counts([i.final_status for i in unresolved])}"


async def test_primary_killed_the_standby_is_promoted_and_nothing_acknowledged_is_lost(
        settled: HACluster, ha_service: Service, ha_clinic: Clinic, http: httpx.AsyncClient) -> None:
    ha, service, clinic = settled, ha_service, ha_clinic
    primary = ha.primary()
    assert primary is not None
    standby = next(n for n in NODES if n != primary)
    clients = [await enrol_client(clinic, http) for _ in range(WRITERS)]

    # A client erased just before the kill, whose text both workers had read (keys, views cached).
    doomed = await enrol_client(clinic, http)
    text = canary()
    await active_goal(clinic, http, doomed, f"Call my sister {text}")
    workers = await connection_per_worker(service)
    assert len(workers) == service.workers, f"reached {len(workers)} of {service.workers} workers"
    for own in workers.values():
        r = await own.get(f"{service.url}/clients/{doomed}/export", headers=clinic.client_headers(doomed))
        assert r.status_code == 200 and text in r.text, r.status_code

    # A subscriber following one writer's client across the promotion.
    followed = clients[0]
    follower = Follower(f"{service.url}/clients/{followed}/progress/stream?heartbeat=1",
                        clinic.client_headers(followed))
    finished = asyncio.Event()
    last_written: list[str] = []
    follow = asyncio.create_task(follower.run(
        lambda: finished.is_set() and _has_seen(follower, last_written), deadline=time.monotonic() + 150))
    assert await eventually(lambda: _started(follower), within=15), f"the stream did not start: {follower.errors}"

    load = Load(clinic, clients, "failover")
    load.start()
    assert await until(lambda: len(load.acked()) >= ACKED_BEFORE_KILL, within=30), "the load did not start"
    anchored = await asyncio.to_thread(service.cli, "anchor")
    assert anchored.returncode == 0, anchored.stdout + anchored.stderr
    before_erasure = _now()
    erase_key = str(uuid.uuid4())
    r = await http.post(f"{service.url}/clients/{doomed}/erasure", json={"reason": "the client asked"},
                        headers=clinic.headers("admin", key=erase_key))
    assert r.status_code == 201, r.text

    acked_before = len(load.acked())
    log_offset = service.log.stat().st_size
    kill_at = time.monotonic()
    await asyncio.to_thread(ha.kill, primary)
    promoted = asyncio.create_task(_promoted(ha, standby, kill_at))
    await until(lambda: load.first_ok_after(kill_at) is not None, within=FIRST_WRITE_BOUND)
    first_write = load.first_ok_after(kill_at)
    writable_again = kill_at + (first_write or FIRST_WRITE_BOUND)
    await asyncio.sleep(AFTER_SECONDS)
    await load.stop()
    promotion = await promoted

    failed = load.not_acked()
    await retry_all(clinic, http, failed, within=RETRY_SECONDS)
    unresolved = [i for i in failed if not (isinstance(i.final_status, int) and 200 <= i.final_status < 300)]
    counts = await measurement_counts(ha.dsn(), clients)
    acked = load.acked()
    lost = [i.key for i in acked if counts.get(i.measurement_id or "", 0) == 0]
    known = {i.measurement_id for i in load.sent if i.measurement_id}
    duplicated = [m for m, n in counts.items() if n > 1]
    strays = sum(n for m, n in counts.items() if m not in known)
    outage = [a for a in load.answers if a.sent > kill_at and a.at < writable_again]
    not_503 = [a for a in load.answers if not isinstance(a.status, int) or (a.status >= 500 and a.status != 503)]
    bare_503 = [a for a in load.answers if a.status == 503 and not (a.retry_after and a.problem)]

    last_written.extend(i.measurement_id for i in load.sent if i.client_id == followed and i.measurement_id)
    finished.set()
    await asyncio.wait_for(follow, 160)
    stream = await _stream_figures(ha.dsn(), follower, followed, last_written)

    erased_hits, erased_statuses = 0, []
    try:
        for own in workers.values():
            for target in (f"/clients/{doomed}/export", f"/clients/{doomed}/plan?as_of={before_erasure}",
                           f"/clients/{doomed}/plan"):
                for headers in (clinic.client_headers(doomed), clinic.headers("clinician")):
                    r = await own.get(service.url + target, headers=headers, timeout=READ_SECONDS)
                    erased_statuses.append(r.status_code)
                    erased_hits += text in r.text
    finally:
        for own in workers.values():
            await own.aclose()
    key_destroyed = await _key_destroyed(ha.dsn(), doomed)
    # Each worker's LISTEN connection died with the primary: a notification gap (caches dropped,
    # the key ring distrusted) until its keeper listens on the new primary.
    gaps = _logged(service, "notification_gap", log_offset)
    verify = await asyncio.to_thread(service.cli, "verify", "--anchors")
    projections = await asyncio.to_thread(service.cli, "projections", "verify")

    print(f"\n[failover] killed {primary} (whole process group) after {acked_before} acknowledged writes; "
          f"{standby} promoted (wait_primary) after {_s(promotion)}; first successful write after the kill "
          f"{_s(first_write)} (bound {FIRST_WRITE_BOUND:.0f}s, goal {FIRST_WRITE_GOAL:.0f}s)")
    print(f"[failover] answers while no primary was writable={status_counts([a.status for a in outage])} "
          f"in all={status_counts([a.status for a in load.answers])} 503_without_retry_after_or_problem="
          f"{len(bare_503)}")
    print(f"[failover] keys={len(load.sent)} acknowledged={len(acked)} acknowledged_lost={len(lost)} "
          f"duplicates={len(duplicated)} events_of_no_key={strays} not_2xx_first={len(failed)} "
          f"retries_final={status_counts([i.final_status for i in failed])} unresolved={len(unresolved)} "
          f"slowest_resolution={max((i.resolved_after or 0.0) for i in failed) if failed else 0.0:.2f}s")
    print(f"[failover] stream across the promotion: {stream}")
    print(f"[failover] erased just before the kill: reads after={status_counts(erased_statuses)} showing the text="
          f"{erased_hits} key destroyed on the new primary={key_destroyed} notification gaps logged={gaps}; "
          f"verify --anchors exit={verify.returncode} projections verify exit={projections.returncode}; "
          f"service pid unchanged={service.proc is not None and service.proc.poll() is None}")

    assert promotion is not None, f"{standby} was not promoted"
    assert first_write is not None and first_write < FIRST_WRITE_BOUND, f"no write within {FIRST_WRITE_BOUND} s"
    assert not lost, f"acknowledged but lost: {lost[:5]}"
    assert not duplicated and strays == 0, (duplicated[:5], strays)
    assert not not_503 and not bare_503, (status_counts([a.status for a in not_503]), len(bare_503))
    assert not unresolved, f"unresolved retries: {status_counts([i.final_status for i in unresolved])}"
    assert stream["duplicates"] == 0 and stream["out_of_order"] == 0 and stream["gaps"] == 0, stream
    assert stream["missing_from_last_view"] == 0 and stream["twice_in_last_view"] == 0, stream
    assert erased_hits == 0 and key_destroyed, (erased_hits, key_destroyed)
    assert gaps >= service.workers, f"{gaps} notification gaps for {service.workers} workers"
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert projections.returncode == 0, projections.stdout + projections.stderr


async def _promoted(ha: HACluster, node: str, since: float, within: float = FIRST_WRITE_BOUND) -> float | None:
    """Seconds from ``since`` until the monitor reports ``node`` as the writable primary."""
    def writable() -> bool:
        found = ha.role(node)
        return found is not None and found[0] in ("wait_primary", "primary")
    while time.monotonic() - since < within:
        try:
            if await asyncio.to_thread(writable):
                return time.monotonic() - since
        except Exception:  # the monitor answers again in a moment
            pass
        await asyncio.sleep(0.2)
    return None


def _has_seen(follower: Follower, written: list[str]) -> bool:
    progress = [e for e in follower.events if e.kind == "progress"]
    return bool(written) and bool(progress) and written[-1] in progress[-1].data


async def _started(follower: Follower) -> bool:
    return follower.start_cursor is not None


async def _stream_figures(dsn: str, follower: Follower, client_id: uuid.UUID, written: list[str]) -> dict[str, object]:
    """The leader-kill trial's checks on a stream: no duplicate, strictly increasing cursors, every
    change recorded after the start delivered (or coalesced into a later one of its kind), and the
    last progress view holding each acknowledged measurement exactly once."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        changes = [(int(r["seq"]), r["kind"]) for r in await conn.fetch(
            "SELECT seq, kind FROM projections.changes WHERE client_id = $1 ORDER BY seq", client_id)]
    finally:
        await conn.close()
    seqs = [int(e.id.removeprefix("c1-"), 16) for e in follower.events]
    start = int((follower.start_cursor or "c1-0").removeprefix("c1-"), 16)
    gaps = [(s, k) for s, k in changes if s > start and not any(
        e.kind == k and int(e.id.removeprefix("c1-"), 16) >= s for e in follower.events)]
    progress = [e for e in follower.events if e.kind == "progress"]
    shown = Counter(_measurement_ids(json.loads(progress[-1].data))) if progress else Counter()
    return dict(events=len(follower.events), connections=follower.connections,
                errors=status_counts(list(follower.errors)), duplicates=len(seqs) - len(set(seqs)),
                out_of_order=sum(1 for a, b in itertools.pairwise(seqs) if b <= a), gaps=len(gaps),
                measurements=len(written), missing_from_last_view=sum(1 for m in written if shown[m] == 0),
                twice_in_last_view=sum(1 for m in written if shown[m] > 1))


def _measurement_ids(view: dict[str, Any]) -> list[str]:
    """The measurement ids of the view's points (a risk flag names its measurement too: not counted)."""
    return [str(pt["measurement_id"]) for measure in view.get("measures", []) for pt in measure.get("points", [])]


async def _key_destroyed(dsn: str, subject: uuid.UUID) -> bool:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT wrapped_key IS NULL AS gone FROM data_keys WHERE subject_id = $1", subject)
    finally:
        await conn.close()
    return bool(rows) and all(r["gone"] for r in rows)


def _logged(service: Service, event: str, offset: int) -> int:
    """How many JSON log lines of ``event`` the service wrote after ``offset``."""
    with service.log.open("rb") as f:
        f.seek(offset)
        return sum(1 for line in f if f'"event": "{event}"'.encode() in line)


def _outage_causes(service: Service, offset: int) -> dict[str, int]:
    """The error classes behind the service's 503s after ``offset`` (its ``database_unavailable`` lines)."""
    counts: dict[str, int] = {}
    with service.log.open("rb") as f:
        f.seek(offset)
        for raw in f:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if isinstance(line, dict) and line.get("event") == "database_unavailable":
                    counts[str(line.get("error"))] = counts.get(str(line.get("error")), 0) + 1
    return counts


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _s(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}s"
