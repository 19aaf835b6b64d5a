"""Reads that tolerate bounded staleness on a real hot standby (core/events/replica.py).

The tests share one primary, one standby and one app; they run in this order, the last one
promoting the standby.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import _APPEND, PostgresEventStore
from alliance.core.events.replica import ReplicaRouter, StandbyWentBack, open_router
from alliance.core.events.store import START
from alliance.core.projections.rebuild import rebuild, verify
from tests.api.support import active_goal
from tests.database import TEST_KEK
from tests.events.helpers import new_event, sample_codec
from tests.events.sample_events import Counted
from tests.replica.conftest import METRICS_TOKEN, WAIT_SECONDS, Pair, current, router_of


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _counted(reason: str) -> float:
    return REGISTRY.get_sample_value("alliance_replica_fallbacks_total", {"reason": reason}) or 0.0


async def _person(api: Any, text: str) -> tuple[Any, uuid.UUID, dict[str, str], dict[str, str]]:
    clinic = await api.clinic()
    client_id = await api.enrolled_client(clinic)
    await active_goal(api, clinic, client_id, text=text)
    return (clinic, client_id, api.token(clinic.tenant, "client", client_id),
            api.token(clinic.tenant, "clinician", clinic.clinician))


def _stale_reads(client_id: uuid.UUID, me: dict[str, str], clin: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Every read that may go to the standby: the as-of views, the exports, the FHIR bundle."""
    moment = _now()
    return [(f"/clients/{client_id}/plan?as_of={moment}", clin), (f"/clients/{client_id}/history?as_of={moment}", clin),
            (f"/clients/{client_id}/export", me), (f"/clients/{client_id}/fhir", clin),
            (f"/clients/{client_id}/progress?as_of={moment}", clin), (f"/clients/{client_id}/history/export", clin)]


async def test_as_of_views_and_exports_read_the_standby_while_it_is_current(api, pair: Pair):
    router = router_of(api)
    assert router.max_lag == 5.0  # ALLIANCE_REPLICA_MAX_LAG_SECONDS' default
    _, client_id, me, clin = await _person(api, "Walk to the harbour")
    await pair.caught_up()
    await current(router)
    reads, fallbacks = router.replica_reads, dict(router.fallbacks)
    for n, (path, headers) in enumerate(_stale_reads(client_id, me, clin)):
        r = await api.http.get(path, headers=headers)
        assert r.status_code == 200, (path, r.text)
        if n < 3:  # the views and the client's own export carry the words (the signed export only ciphertext)
            assert "Walk to the harbour" in r.text, path
    assert router.replica_reads == reads + 6 and router.fallbacks == fallbacks, router.fallbacks

    # Observed on the standby: with its replay paused, a goal added on the primary is missing from the
    # as-of view (the standby's, stale within the bound) while the primary has it.
    pair.pause()
    try:
        r = await api.http.post(f"/clients/{client_id}/goals", json={"text": "Swim on Sundays"}, headers=me)
        assert r.status_code == 201, r.text
        sample = await router.sample(fresh=True)
        assert sample.reason is None and sample.lag < router.max_lag, sample
        r = await api.http.get(f"/clients/{client_id}/history?as_of={_now()}", headers=clin)
        assert router.replica_reads == reads + 7, router.fallbacks
        assert r.status_code == 200 and "Walk to the harbour" in r.text and "Swim on Sundays" not in r.text, r.text
        primary = await api.services.runtime.store.read_subject(client_id)
        assert any("Swim on Sundays" in str(e.payload) for e in primary)
    finally:
        pair.resume()

    # The lag is a figure at /metrics, and so is every fallback reason (at 0 until one happens).
    r = await api.http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    assert "alliance_replica_lag_seconds " in r.text, r.text[-3000:]
    for reason in ("lag", "erasure", "unreachable", "promoted"):
        assert f'alliance_replica_fallbacks_total{{reason="{reason}"}}' in r.text


async def test_beyond_the_lag_bound_reads_go_to_the_primary_and_are_fresh(api, pair: Pair):
    router = router_of(api)
    _, client_id, me, clin = await _person(api, "Read one chapter")
    await pair.caught_up()
    pair.pause()
    try:
        r = await api.http.post(f"/clients/{client_id}/goals", json={"text": "Call my sister"}, headers=me)
        assert r.status_code == 201, r.text
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while (await router.sample(fresh=True)).lag <= router.max_lag:  # the real bound: 5 s
            assert asyncio.get_running_loop().time() < deadline, router.lag_seconds
            await asyncio.sleep(0.25)
        reads, lagged, counted = router.replica_reads, router.fallbacks["lag"], _counted("lag")
        r = await api.http.get(f"/clients/{client_id}/history?as_of={_now()}", headers=clin)
        assert r.status_code == 200 and "Call my sister" in r.text, r.text  # fresh: the primary's
        assert router.replica_reads == reads and router.fallbacks["lag"] == lagged + 1
        assert _counted("lag") == counted + 1
    finally:
        pair.resume()
    await pair.caught_up()
    await current(router)
    reads = router.replica_reads
    r = await api.http.get(f"/clients/{client_id}/history?as_of={_now()}", headers=clin)
    assert r.status_code == 200 and "Call my sister" in r.text, r.text
    assert router.replica_reads == reads + 1  # back on the standby once it caught up


async def test_a_standby_that_has_not_replayed_an_erasure_serves_no_erased_text(api, pair: Pair):
    router = router_of(api)
    canary = f"cnry{uuid.uuid4().hex[:12]}"
    clinic, client_id, me, clin = await _person(api, f"{canary} walks")
    admin = api.token(clinic.tenant, "admin", clinic.admin)
    await pair.caught_up()
    await current(router)
    reads = router.replica_reads
    r = await api.http.get(f"/clients/{client_id}/plan?as_of={_now()}", headers=clin)
    assert canary in r.text and router.replica_reads == reads + 1  # the standby decrypts while nothing is erased

    router.max_lag = 3600.0  # only the erasure watermark may keep reads off the standby here
    pair.pause()
    try:
        r = await api.http.post(f"/clients/{client_id}/erasure", json={"reason": "asked to be forgotten"},
                                headers=admin)
        assert r.status_code == 201 and r.json()["key_destroyed"] is True, r.text
        # the standby still holds the key: its copy of data_keys has not replayed the destruction
        wrapped = pair.standby.sql(f"SELECT wrapped_key IS NOT NULL FROM data_keys WHERE subject_id = '{client_id}'",
                                   database="alliance").strip()
        assert wrapped == "t", wrapped
        reads, erasure, counted = router.replica_reads, router.fallbacks["erasure"], _counted("erasure")
        paths = _stale_reads(client_id, me, clin)
        for path, headers in paths:
            r = await api.http.get(path, headers=headers)
            assert r.status_code == 200, (path, r.text)
            assert canary not in r.text, path
        assert router.replica_reads == reads, "a read went to a standby that still holds the erased key"
        assert router.fallbacks["erasure"] == erasure + len(paths) and _counted("erasure") == counted + len(paths)
    finally:
        pair.resume()
        router.max_lag = 5.0
    await pair.caught_up()
    await current(router)
    reads = router.replica_reads
    r = await api.http.get(f"/clients/{client_id}/plan?as_of={_now()}", headers=clin)
    assert r.status_code == 200 and canary not in r.text and "[erased]" in r.text, r.text
    assert router.replica_reads == reads + 1  # past the destruction: the standby again


async def _settled(store: Any, subject: uuid.UUID, count: int) -> list[Any]:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        events = await store.read_all(subject_id=subject)
        if len(events) >= count or asyncio.get_running_loop().time() > deadline:
            return events  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)


async def test_the_never_skip_horizon_holds_on_the_standby(pair: Pair, counted_dsns, counted_pools):
    primary_pool, standby_pool = counted_pools
    store = PostgresEventStore(primary_pool, sample_codec(), PostgresKeyRing(primary_pool, TEST_KEK),
                               dsn=counted_dsns[0])
    router = ReplicaRouter(store, primary_pool, standby_pool, dsn=counted_dsns[1])
    on_standby = router.store
    tenant, subject = uuid.uuid4(), uuid.uuid4()
    early, late = (new_event(Counted(number=n), tenant=tenant, subject=subject) for n in (0, 1))
    conn = await asyncpg.connect(counted_dsns[0])
    try:
        # The early writer takes its transaction id and position and stays open ...
        rows = await store._prepare(f"early-{subject}", [early], 0)
        tx = conn.transaction()
        await tx.start()
        early_position = (await conn.fetch(_APPEND, *store._args(f"early-{subject}", 0, tenant, rows)))[0][0]
        # ... while a later writer commits after it, at a higher position.
        result = await store.append(f"late-{subject}", [late], 0)
        assert result.positions[0] > early_position
        await pair.caught_up()
        # The standby has the later event, and a reader by position alone would take it now and so
        # skip the early one once it commits behind its checkpoint ...
        naive = await standby_pool.fetch("SELECT event_id FROM events WHERE subject_id = $1 ORDER BY position",
                                         subject)
        assert [r[0] for r in naive] == [late.event_id]
        # ... but the standby's horizon holds it back while the early transaction runs on the primary.
        for _ in range(3):
            assert await on_standby.read_all(subject_id=subject) == []
            await asyncio.sleep(0.1)
        head = await on_standby.head()
        await tx.commit()
    finally:
        await conn.close()
    await pair.caught_up()
    events = await _settled(on_standby, subject, 2)
    assert [e.event_id for e in events] == [early.event_id, late.event_id]  # each once, in the global order
    assert [e.event_id for e in await on_standby.read_all(after=head, subject_id=subject)] == \
        [early.event_id, late.event_id]  # a checkpoint taken meanwhile is behind both
    assert await on_standby.read_all(after=events[-1].checkpoint, subject_id=subject) == []
    # A page bounded by a checkpoint the standby has not reached is read on the primary instead.
    pair.pause()
    try:
        newer = new_event(Counted(number=2), tenant=tenant, subject=subject)
        done = await store.append(f"late-{subject}", [newer], 1)
        assert done.checkpoint is not None and not await router.covers(done.checkpoint)
        bounded = await on_standby.read_all(after=START, subject_id=subject, until=done.checkpoint)
        assert [e.event_id for e in bounded] == [early.event_id, late.event_id, newer.event_id]
    finally:
        pair.resume()


async def test_a_rebuild_and_a_verification_replay_the_standby(api, pair: Pair):
    router, runtime = router_of(api), api.services.runtime
    _, client_id, _, clin = await _person(api, "Plant tomatoes")
    await pair.caught_up()
    await current(router)
    store = await runtime.stale_store()
    assert store is router.store
    pages = dict(store.pages)
    results = await rebuild(runtime.pool, runtime.store, ["plan"], dsn=runtime.target.app_dsn, bulk_store=store)
    assert [r.name for r in results] == ["plan"] and results[0].events_read > 0
    assert store.pages["standby"] > pages["standby"], store.pages  # the bulk reads came from the standby
    checked = await verify(runtime.pool, store, ["plan"])
    assert [(v.name, v.ok) for v in checked] == [("plan", True)], checked
    assert store.pages["standby"] > pages["standby"] + 1
    r = await api.http.get(f"/clients/{client_id}/plan", headers=clin)  # the new version, live on the primary
    assert r.status_code == 200 and "Plant tomatoes" in r.text, r.text


async def test_a_url_naming_both_nodes_finds_the_standby(pair: Pair, counted_dsns, counted_pools):
    primary_pool, _ = counted_pools
    store = PostgresEventStore(primary_pool, sample_codec(), PostgresKeyRing(primary_pool, TEST_KEK),
                               dsn=counted_dsns[0])
    both = (f"postgresql://alliance_app@127.0.0.1:{pair.primary.port},127.0.0.1:{pair.standby.port}/counted"
            "?target_session_attrs=standby")  # the primary named first: the driver skips it
    router = await open_router(store, primary_pool, both, max_lag=5.0, pool_size=2)
    try:
        assert (await router.sample()).reason is None
        assert await router.pool.fetchval("SELECT pg_is_in_recovery()") is True
        assert await router.pool.fetchval("SELECT current_setting('port')::int") == pair.standby.port
        # A standby whose replay is behind the last sample (it restarted from an earlier point, as after
        # a crash) is refused on every new connection until it is sampled again: here, faked by a sample
        # from "the future".
        seen = await router.sample(fresh=True)
        router._sample = dataclasses.replace(seen, replay_lsn=seen.replay_lsn + 10**12)
        await router.pool.expire_connections()
        with pytest.raises(StandbyWentBack):
            await router.pool.fetchval("SELECT 1")
        assert router._sample is None  # the next read samples first
        assert (await router.sample()).reason is None  # and the sampler's own connections are not refused
        assert await router.pool.fetchval("SELECT 1") == 1
    finally:
        await router.close()


async def test_an_unreachable_or_promoted_standby_sends_reads_to_the_primary(api, pair: Pair):
    router = router_of(api)
    _, client_id, me, clin = await _person(api, "Cook a new recipe")
    await pair.caught_up()
    await current(router)
    pair.standby.stop("fast")
    try:
        reads, unreachable, counted = router.replica_reads, router.fallbacks["unreachable"], _counted("unreachable")
        r = await api.http.get(f"/clients/{client_id}/history?as_of={_now()}", headers=clin)
        assert r.status_code == 200 and "Cook a new recipe" in r.text, r.text
        assert router.fallbacks["unreachable"] == unreachable + 1 and _counted("unreachable") == counted + 1
        r = await api.http.get(f"/clients/{client_id}/export", headers=me)  # while it is down: the primary
        assert r.status_code == 200 and "Cook a new recipe" in r.text
        # at most the first read was sent there (on the sample from before the stop), and answered again here
        assert router.replica_reads <= reads + 1
    finally:
        pair.standby.start()
    await pair.caught_up()
    await current(router)
    reads = router.replica_reads
    r = await api.http.get(f"/clients/{client_id}/history?as_of={_now()}", headers=clin)
    assert r.status_code == 200 and router.replica_reads == reads + 1

    # Promoted: no longer a copy of the primary. Reads leave it, and the promotion is a notification gap.
    store = api.services.runtime.store
    gaps, promoted, counted = store.listen_gaps, router.fallbacks["promoted"], _counted("promoted")
    pair.standby.run("pg_ctl", "-D", str(pair.standby.data), "-w", "-t", "30", "promote")
    sample = await router.sample(fresh=True)
    assert sample.reason == "promoted", sample
    assert store.listen_gaps == gaps + 1
    r = await api.http.get(f"/clients/{client_id}/history?as_of={_now()}", headers=clin)
    assert r.status_code == 200 and "Cook a new recipe" in r.text
    assert router.fallbacks["promoted"] == promoted + 1 and _counted("promoted") == counted + 1
    await router.sample(fresh=True)
    assert store.listen_gaps == gaps + 1  # once per promotion, not once per sample
