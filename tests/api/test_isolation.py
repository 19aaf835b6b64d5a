"""Cross-tenant and cross-client isolation, generated from the app's own route table.

Every route that names a client or a goal is tried by callers who must not see it: staff and
clients of another clinic, a token that claims our client's id under another clinic, another
client of the same clinic and that client's proxy. Each answers 404 (existence does not leak,
so never 403), and a refused write leaves the event store exactly as it was. A route added
later is covered without anyone remembering to add it here.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from alliance.api.app import create_app
from alliance.core.settings import Settings
from tests.api.support import (
    EXAMPLES,
    assert_problem,
    body_for_route,
    build_world,
    fill,
    route_table,
)

_APP = create_app(Settings(database_url="postgresql://unused/unused", kek=base64.b64encode(bytes(range(32))).decode(),
                           home=Path("/nonexistent"), jwt_secret="collection-only-" * 3))
ROUTES = route_table(_APP)
SCOPED = [r for r in ROUTES if {"client_id", "goal_id"} & set(r.params)]
UNSCOPED_WRITES = [r for r in ROUTES if r.method == "POST" and not {"client_id", "goal_id"} & set(r.params)]
OPENAPI = _APP.openapi_schema.to_schema()


def test_the_route_table_is_what_we_think():
    assert len(SCOPED) >= 40, [r.id for r in SCOPED]
    assert any(r.path == "/clients/{client_id}/progress/stream" for r in SCOPED)
    missing = [r.id for r in ROUTES if r.method == "POST" and r.path not in EXAMPLES]
    assert not missing, f"add an example body to tests/api/support.py EXAMPLES for {missing}"


@pytest.fixture(scope="module")
async def setting(api) -> dict[str, Any]:
    ours = await api.clinic()
    world = await build_world(api, ours)
    theirs = await api.clinic()
    their_client = await api.enrolled_client(theirs)
    intruders = {
        "foreign clinician": api.token(theirs.tenant, "clinician", theirs.clinician),
        "foreign supervisor": api.token(theirs.tenant, "supervisor", theirs.supervisor),
        "foreign auditor": api.token(theirs.tenant, "auditor", theirs.auditor),
        "foreign admin": api.token(theirs.tenant, "admin", theirs.admin),
        "foreign client": api.token(theirs.tenant, "client", their_client),
        "our client's id under another clinic": api.token(theirs.tenant, "client", world.client_id),
        "another client": api.token(ours.tenant, "client", world.other_client_id),
        "a proxy of nobody here": api.token(ours.tenant, "proxy", uuid.uuid4()),
    }
    return {"world": world, "intruders": intruders, "theirs": theirs}


async def snapshot(conn: asyncpg.Connection) -> tuple[Any, ...]:
    row = await conn.fetchrow("SELECT count(*), max(position) FROM events")
    return tuple(row)


@pytest.mark.parametrize("route", SCOPED, ids=lambda r: r.id)
async def test_foreign_callers_get_404_and_change_nothing(api, database, setting, route):
    world = setting["world"]
    path = fill(route.path, world.path_values())
    body = body_for_route(OPENAPI, route, world)
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        before = await snapshot(conn)
        for who, headers in setting["intruders"].items():
            if route.method == "GET":
                r = await api.http.get(path, headers=headers)
            else:
                r = await api.http.post(path, json=body, headers={**headers, "Idempotency-Key": str(uuid.uuid4())})
            problem = assert_problem(r, 404)
            assert problem["code"] in {"client_not_found", "goal_not_found"}, (who, problem)
            # nothing about the record in the answer: no ids but the ones the caller sent
            for secret in (world.clinic.clinician, world.clinic.tenant, world.proxy_id):
                assert str(secret) not in r.text, (who, r.text)
        assert await snapshot(conn) == before, f"a refused {route.id} changed the store"
    finally:
        await conn.close()


@pytest.mark.parametrize("route", UNSCOPED_WRITES, ids=lambda r: r.id)
async def test_clinic_writes_stay_in_the_callers_clinic(api, database, setting, route):
    """Another clinic's admin aiming at our staff or clinic changes nothing of ours."""
    world = setting["world"]
    ours = world.clinic
    path = fill(route.path, world.path_values())
    body = body_for_route(OPENAPI, route, world)
    store = api.services.store
    before = await store.stream_version(f"clinic-{ours.tenant}")
    r = await api.http.post(path, json=body, headers=setting["intruders"]["foreign admin"])
    assert r.status_code < 500, r.text
    assert await store.stream_version(f"clinic-{ours.tenant}") == before
    # our staff are untouched and still get in
    r = await api.http.get(f"/clients/{world.client_id}/plan", headers=api.token(ours.tenant, "clinician",
                                                                                  ours.clinician_2))
    assert r.status_code == 200, r.text


async def test_listings_do_not_cross(api, setting):
    world = setting["world"]
    theirs = setting["theirs"]
    for role, sub in (("admin", theirs.admin), ("clinician", theirs.clinician), ("supervisor", theirs.supervisor)):
        headers = api.token(theirs.tenant, role, sub)
        for path in ("/clients", "/clients?limit=200", "/staff"):
            r = await api.http.get(path, headers=headers)
            assert r.status_code in (200, 403), r.text
            for ours in (world.client_id, world.other_client_id, world.clinic.clinician, world.clinic.admin):
                assert str(ours) not in r.text, (role, path)
