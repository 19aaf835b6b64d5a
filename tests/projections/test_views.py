"""The live views through the real runner and database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from alliance.core.client import ClientDischarged
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.projections.asof import history_as_of, plan_as_of, progress_as_of
from alliance.core.projections.queries import read_history, read_plan, read_progress
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.projections.conftest import wait_projected
from tests.projections.helpers import Client


def registry() -> InstrumentRegistry:
    return InstrumentRegistry.from_plugin_manager(get_plugin_manager())


async def test_plan_progress_history_live(store: PostgresEventStore, app_pool: asyncpg.Pool, runners) -> None:  # type: ignore[no-untyped-def]
    c = Client().typical()
    await wait_projected(app_pool, await c.flush(store))
    plan = await read_plan(app_pool, c.client, keys=store.keys, tenant_id=c.tenant,
                           now=datetime(2025, 3, 20, tzinfo=UTC))
    assert plan is not None
    assert plan["episode_id"] is not None
    assert [x["scope"] for x in plan["consents_in_force"]] == ["care_team_sharing", "goal_setting", "measurement"]
    [goal] = plan["goals"]
    assert goal["status"] == "active" and goal["lifecycle_status"] == "active"
    assert goal["version"] == 3  # revised to 2, then an accepted change
    assert goal["agreement"]["client"] == "agree"
    assert goal["milestones"][0]["overdue"] is True
    assert goal["checkpoints"][0]["due"] is False
    assert "target" in goal["smart"]["present"]
    assert plan["relapse_plan"]["plan_version"] == 1
    # another tenant sees nothing
    assert await read_plan(app_pool, c.client, keys=store.keys, tenant_id=c.clinician) is None

    progress = await read_progress(app_pool, c.client, keys=store.keys, tenant_id=c.tenant, instruments=registry())
    assert progress is not None
    [gp] = progress["goals"]
    [m] = gp["measures"]
    assert [p["scores"]["total"] for p in m["points"]] == [18, 15, 12, 9]
    assert m["baseline"] == 18 and m["latest"] == 9 and m["change"] == -9
    assert m["reliable_change"]["status"] == "improved"
    assert m["reliable_change"]["criterion"] == "threshold"
    assert m["clinically_significant_change"]["status"] == "reliable_recovery"  # NHS TT words (J&T: "recovered")
    assert m["indicators"]["reliable_recovery"]["met"] is True
    assert m["band"] == "mild"
    assert gp["gas"]["level"] == 0
    assert progress["gas_t_score"] == 50
    assert gp["achievement_status"] == "improving"
    assert len(gp["reviews"]) == 1

    history = await read_history(app_pool, c.client, keys=store.keys, tenant_id=c.tenant)
    assert history is not None
    entries = history["entries"]
    assert entries[0]["type"] == "client.enrolled"
    agreed = [e for e in entries if e["type"] == "goal.agreed"]
    assert [(e["details"]["party"], e["goal_version"]) for e in agreed] == [("client", 2), ("clinician", 2)]
    assert {x["scope"] for x in agreed[0]["consents_in_force"]} == {"goal_setting", "measurement",
                                                                    "care_team_sharing"}


async def test_late_and_in_error_measurements(store: PostgresEventStore, app_pool: asyncpg.Pool, runners) -> None:  # type: ignore[no-untyped-def]
    c = Client().enrol()
    gid = c.goal()
    base = c.t
    c.measure(20, goal=gid, observed=base)
    wrong = c.measure(27, goal=gid, observed=base + timedelta(days=1))
    c.measure(12, goal=gid, observed=base + timedelta(days=3))
    c.measure(16, goal=gid, observed=base + timedelta(days=2))  # entered late: belongs before the 12
    c.in_error(wrong)
    await wait_projected(app_pool, await c.flush(store))
    progress = await read_progress(app_pool, c.client, keys=store.keys, instruments=None)
    assert progress is not None
    [m] = progress["goals"][0]["measures"]
    assert [p["scores"]["total"] for p in m["points"]] == [20, 16, 12]
    assert m["instrument_installed"] is False and m["reliable_change"] is None and m["change"] == -8


async def test_as_of_returns_the_earlier_state(store: PostgresEventStore, app_pool: asyncpg.Pool, runners) -> None:  # type: ignore[no-untyped-def]
    c = Client().enrol()
    gid = c.goal(activate=False)
    before = await c.flush(store)
    recorded = datetime.now(UTC)
    c.measure(20, goal=gid)
    c._add(c.stream, ClientDischarged(episode_id=None, **c.by()))
    await wait_projected(app_pool, await c.flush(store))
    now_plan = await read_plan(app_pool, c.client, keys=store.keys)
    assert now_plan is not None and now_plan["discharged"] is True
    old = await plan_as_of(store, c.client, before)
    assert old is not None and old["discharged"] is False
    assert old["goals"][0]["status"] == "proposed"
    old_by_time = await plan_as_of(store, c.client, recorded)
    assert old_by_time is not None and old_by_time["discharged"] is False
    prog = await progress_as_of(store, c.client, before)
    assert prog is not None and prog["measures"] == []
    hist = await history_as_of(store, c.client, before)
    live_hist = await read_history(app_pool, c.client, keys=store.keys)
    assert hist is not None and live_hist is not None
    assert len(hist["entries"]) == len(live_hist["entries"]) - 2
    # as of now equals live
    replayed = await history_as_of(store, c.client, await store.head())
    assert replayed is not None
    for a, b in zip(replayed["entries"], live_hist["entries"], strict=True):
        assert a == b, [(k, a["details"][k], b["details"][k]) for k in a["details"]
                        if a["details"][k] != b["details"][k]]
    assert await plan_as_of(store, c.client, await store.head()) is not None
