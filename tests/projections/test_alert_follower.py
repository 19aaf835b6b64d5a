"""The alert follower against a real store, as a fault experiment: leaders that overlap, a
standby that takes over, and restarts, with the figures stated — decided, recorded, duplicated.

On this suite's own database (no app's follower runs here): only the followers started below
record alerts."""

from __future__ import annotations

import asyncio
import uuid

from alliance.core.alerts.follower import AlertFollower, registry_definitions
from alliance.core.alerts.policy import AlertPolicy
from alliance.core.client import client_stream
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.projections.helpers import Client

REGISTRY = InstrumentRegistry.from_plugin_manager(get_plugin_manager())


def follower(store, database, name: str) -> AlertFollower:  # type: ignore[no-untyped-def]
    return AlertFollower(store, registry_definitions(REGISTRY), dsn=database.app_dsn, name=name,
                         poll_interval=0.1, standby_interval=0.1)


async def alerts_of(store, client: Client) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.payload.rule for e in await store.read_stream(client_stream(client.client)) if e.type == "alert.raised"]


async def test_overlapping_leaders_a_standby_and_restarts_record_each_alert_once(store, database):
    worse, steady = Client().enrol(), Client().enrol()
    worse.measure(8)
    worse.measure(15)  # +7: a reliable deterioration on PHQ-9 (at least 6)
    for total in (12, 13, 12):
        steady.measure(total)
    for c in (worse, steady):
        await c.flush(store)

    # A leader that decided and then died before recording: its decision is lost with it.
    crashed = AlertPolicy(registry_definitions(REGISTRY))
    async with asyncio.timeout(10):  # read_all answers below the read horizon: the appends show soon
        while not crashed.pending:
            crashed.observe_all(await store.read_all(after=crashed.checkpoint or "0.0", limit=100_000))
            await asyncio.sleep(0.01)
    assert [d.payload.rule for d in crashed.take_pending() if d.client_id == worse.client] == [
        "reliable_deterioration"]

    # Two leaders at once (separate locks: a deposed leader's late round overlapping the new one).
    name = f"alerts-{uuid.uuid4().hex[:8]}"
    a, b = follower(store, database, name + "-a"), follower(store, database, name + "-b")
    a.start(), b.start()
    try:
        await asyncio.gather(a.wait_rounds(2), b.wait_rounds(2))
    finally:
        await asyncio.gather(a.stop(), b.stop())
    assert await alerts_of(store, worse) == ["reliable_deterioration"]
    assert await alerts_of(store, steady) == []

    # One lock, two processes' worth of followers: one leads, the other stands by and takes over.
    leader, standby = follower(store, database, name), follower(store, database, name)
    leader.start()
    await leader.wait_rounds(1)
    standby.start()
    await asyncio.sleep(0.3)
    assert (leader.leading, standby.leading) == (True, False)
    await leader.stop()  # its session ends: the lock is free
    async with asyncio.timeout(10):
        while not standby.leading:  # noqa: ASYNC110 (a flag of the follower; no event to wait on)
            await asyncio.sleep(0.05)
    worse.measure(17)  # still deteriorated: the open alert covers it
    worse.versions[worse.stream] = (await store.read_stream(worse.stream))[-1].version  # the alert is on it
    await worse.flush(store)
    await standby.wait_rounds(2)
    await standby.stop()
    # decided 1, recorded 1, duplicated 0, after a crash, an overlap, a takeover and a restart
    assert await alerts_of(store, worse) == ["reliable_deterioration"]
    assert standby.policy is not None and not standby.policy.pending
