"""Trial: the upgrade. A database filled by the previous main (``alliance demo`` of commit
``PREVIOUS_MAIN``, served by that code), then migrated, upcast and rebuilt by this code.

Promise: every view of every client reads the same after the upgrade as before it (plan,
progress and decision history; fields this code adds are not compared), and the store and
projections verify.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import date
from typing import Any

import asyncpg
import httpx
import msgspec

from alliance.core.schedules import Schedule, parse_free_text
from tests.faults.checkout import snapshot
from tests.faults.service import Service
from tests.faults.world import eventually

#: The main before the faults work (issue 12): the database an operator upgrades from.
PREVIOUS_MAIN = "c8e86fb"
VIEWS = ("plan", "progress", "history")
#: Top-level fields that say when the view was read, not what it holds.
READ_TIME = {"as_of"}


def _reported_by(old: Any, new: Any) -> bool:
    return isinstance(old, str) and isinstance(new, dict) and new.get("informant") == old


def _schedule(old: Any, new: Any) -> bool:
    """The free text is read as the schedule it names, starting on the day it was attached."""
    if not (isinstance(old, str) and isinstance(new, dict) and isinstance(new.get("start"), str)):
        return False
    read = parse_free_text(old, start=date.fromisoformat(new["start"]))
    return msgspec.convert(new, Schedule) == read


def _reliable_recovery(old: Any, new: Any) -> bool:
    return old == new or (old == "recovered" and new == "reliable_recovery")


#: Changes to what a view says that this session made on purpose, each checked narrowly
#: (the old value must still be there, renamed or wrapped): (path pattern, check, why).
#: Anything else that differs fails the trial. Each is a change for API consumers too.
DECLARED: list[tuple[re.Pattern[str], Any, str]] = [
    (re.compile(r"/reported_by$"), _reported_by,
     "6085c02: reported_by became {informant, relationship, channel}; the old value is the informant"),
    (re.compile(r"/details/schedule$"), _schedule,
     "goal.measure_attached v2: a measure's free-text schedule became a structured schedule (history shows the event)"),
    (re.compile(r"/clinically_significant_change/status$"), _reliable_recovery,
     "dc2d7e7: Jacobson-Truax 'recovered' is named by NHS Talking Therapies' 'reliable_recovery' (same criterion)"),
]


async def test_a_database_of_the_previous_main_reads_the_same_after_upgrade(cluster, workdir, http) -> None:
    old_code = await asyncio.to_thread(snapshot, PREVIOUS_MAIN)
    database = f"upgrade_{uuid.uuid4().hex[:8]}"
    dsn = cluster.create_database(database)
    home = workdir / "upgrade-home"  # one home: the same KEK, signing keys and ledger across the upgrade
    old = Service(dsn, home, code=old_code)
    filled = await asyncio.to_thread(old.cli, "demo", timeout=300)
    assert filled.returncode == 0, filled.stdout + filled.stderr
    clients = await _clients(dsn)
    assert clients, "the previous main's demo enrolled nobody"

    before = await _views_served_by(old, http, clients)
    new = Service(dsn, home)
    migrated = await asyncio.to_thread(new.cli, "migrate")
    rebuilt = await asyncio.to_thread(new.cli, "projections", "rebuild", timeout=300)
    assert migrated.returncode == 0 and rebuilt.returncode == 0, migrated.stderr + rebuilt.stderr
    after = await _views_served_by(new, http, clients)
    verify = await asyncio.to_thread(new.cli, "verify")
    projections = await asyncio.to_thread(new.cli, "projections", "verify")

    differences: list[str] = []
    declared: dict[str, int] = {}
    for key, old_view in before.items():
        new_view = after.get(key)
        if isinstance(old_view, dict) and isinstance(new_view, dict):
            old_view = {k: v for k, v in old_view.items() if k not in READ_TIME}
            if key.endswith("/progress") and (moved := _moved_ratings(old_view, new_view)):
                old_view, new_view, pairs = moved
                declared[MOVED] = declared.get(MOVED, 0) + len(pairs)
                for was, now in pairs:  # the moved series itself must read the same
                    differences += [f"{key} (moved): {d}" for d in _differences(was, now, "/measures[]", declared)]
        differences += [f"{key}: {d}" for d in _differences(old_view, new_view, "", declared)]
    events = await _count(dsn)
    kinds: dict[str, int] = {}  # by view and field, list indices and client ids left out
    examples: dict[str, str] = {}
    for d in differences:
        kind = re.sub(r"\[\d+\]", "[]", d.split(": ", 1)[0] + ": " + d.split(": ", 2)[1])
        kind = re.sub(r"^[0-9a-f-]{36}/", "", kind)
        kinds[kind] = kinds.get(kind, 0) + 1
        examples.setdefault(kind, d[:300])
    print(f"\n[upgrade] previous main {PREVIOUS_MAIN}: {events} events, {len(clients)} clients, "
          f"{len(before)} views read; migrate: {migrated.stdout.strip()!r}; rebuild: "
          f"{' | '.join(rebuilt.stdout.split(chr(10))[:3])!r}; declared changes={declared}; "
          f"differences={len(differences)} by field "
          f"{kinds}, first of each: {list(examples.values())}; verify_exit={verify.returncode} "
          f"projections_verify_exit={projections.returncode}")
    assert not differences, differences[:10]
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert projections.returncode == 0, projections.stdout + projections.stderr


async def _clients(dsn: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT DISTINCT subject_id, tenant_id FROM events WHERE type = 'client.enrolled'")
    finally:
        await conn.close()
    return sorted((r["subject_id"], r["tenant_id"]) for r in rows)


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def _views_served_by(service: Service, http: httpx.AsyncClient,
                           clients: list[tuple[uuid.UUID, uuid.UUID]]) -> dict[str, Any]:
    """Every client's own views, read over HTTP once the service says its projections caught up."""
    await asyncio.to_thread(service.start)
    try:
        async def ready() -> bool:
            return (await http.get(service.url + "/ready")).status_code == 200

        assert await eventually(ready, within=30), f"not ready: {(await http.get(service.url + '/ready')).text}"
        views: dict[str, Any] = {}
        for client_id, tenant_id in clients:
            headers = service.token(tenant_id, "client", client_id)
            for view in VIEWS:
                r = await http.get(f"{service.url}/clients/{client_id}/{view}", headers=headers)
                assert r.status_code == 200, (view, r.status_code, r.text[:300])
                views[f"{client_id}/{view}"] = r.json()
        return views
    finally:
        await asyncio.to_thread(service.stop)


MOVED = "dc2d7e7/d4de4ad a rating of one goal left the client-wide measures for its goal"


def _moved_ratings(old: dict[str, Any], new: dict[str, Any]
                   ) -> tuple[dict[str, Any], dict[str, Any], list[tuple[Any, Any]]] | None:
    """The declared move of a rating of one goal (e.g. confidence) from the client-wide ``measures``
    to the goal it names, checked: the same instrument and the same measurements, now under a goal
    that had no such series. Returns the views with the moved series taken out of both and the
    (old, new) pairs of moved series, to be compared on their own; or None."""
    old_measures, new_measures = old.get("measures"), new.get("measures")
    if not isinstance(old_measures, list) or not isinstance(new_measures, list):
        return None
    still = {m.get("instrument_id") for m in new_measures}
    old_goals = {g.get("goal_id"): g for g in old.get("goals", [])}
    new = json.loads(json.dumps(new))
    kept: list[Any] = []
    moved: list[tuple[Any, Any]] = []
    for series in old_measures:
        ids = sorted(p.get("measurement_id") for p in series.get("points", []))
        target = None if series.get("instrument_id") in still else next(
            ((g, m) for g in new.get("goals", []) for m in g.get("measures", [])
             if m.get("instrument_id") == series.get("instrument_id")
             and sorted(p.get("measurement_id") for p in m.get("points", [])) == ids
             and not any(o.get("instrument_id") == m.get("instrument_id")
                         for o in old_goals.get(g.get("goal_id"), {}).get("measures", []))), None)
        if target is None:
            kept.append(series)
            continue
        target[0]["measures"].remove(target[1])
        moved.append((series, target[1]))
    return ({**old, "measures": kept}, new, moved) if moved else None


def _differences(old: Any, new: Any, path: str, declared: dict[str, int]) -> list[str]:
    """Where ``new`` does not read as ``old`` did; keys only ``new`` has are what this code adds,
    and a change named in ``DECLARED`` (counted in ``declared``) is not a difference."""
    if old != new:
        for pattern, holds, why in DECLARED:
            if pattern.search(path) and holds(old, new):
                name = f"{why.split(':', 1)[0]} {pattern.pattern}"
                declared[name] = declared.get(name, 0) + 1
                return []
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return [f"{path or '/'}: was an object"]
        return [d for key, value in old.items()
                for d in (_differences(value, new[key], f"{path}/{key}", declared) if key in new
                          else [f"{path}/{key}: gone"])]
    if isinstance(old, list):
        if not isinstance(new, list) or len(new) != len(old):
            return [f"{path}: {len(old)} items, now {len(new) if isinstance(new, list) else type(new).__name__}"]
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True))
                for d in _differences(a, b, f"{path}[{i}]", declared)]
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]
