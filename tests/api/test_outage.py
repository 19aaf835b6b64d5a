"""The database stopped (``pg_ctl stop -m immediate``) and started again under a running app.

On a private cluster of its own (the fault suite's ``tests/faults/cluster.py``), since it kills the server:
during the outage every answer is a 503 problem with ``Retry-After`` and a stable code
(never a 500), ``/ready`` says why; after the restart the same app serves again without
being restarted, and an Idempotency-Key whose first attempt died in the outage is answered
correctly by a retry within 15 s: by running the command when nothing was recorded, with
the recorded outcome when it was.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest

from alliance.api.app import create_app
from alliance.api.errors import EXCEPTION_HANDLERS, database_outage, outage_reason
from alliance.api.liveness import HELD_SQL
from alliance.core.database import ensure_database, with_database
from alliance.core.settings import Settings
from tests.api.conftest import JWT_SECRET, KEK, Api, running
from tests.api.support import active_goal, assert_problem
from tests.faults.cluster import Cluster

RECOVERY_SECONDS = 15.0


@pytest.fixture(scope="module")
def cluster() -> Any:
    c = Cluster().init()
    try:
        c.start()
        yield c
    finally:
        c.destroy()


@pytest.fixture(scope="module")
async def outage_api(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    await ensure_database(cluster.dsn(), "alliance")
    settings = Settings(database_url=with_database(cluster.dsn(), "alliance"), kek=KEK, jwt_secret=JWT_SECRET,
                        home=tmp_path_factory.mktemp("outage-home"), log_level="warning")
    app = create_app(settings)
    async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                               base_url="http://alliance.test") as client:
        yield Api(client, settings, app)


class CutsTheDatabase:
    """The app's store, except that one append stops the server first (``before``: nothing is
    recorded) or right after it committed (``after``: recorded, the answer not yet stored)."""

    def __init__(self, inner: Any, cut: Callable[[], Awaitable[None]], when: str) -> None:
        self._inner, self._cut, self._when = inner, cut, when
        self.cuts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def _appending(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.cuts += 1
        if self._when == "before":
            await self._cut()
        result = await getattr(self._inner, method)(*args, **kwargs)
        if self._when == "after":
            await self._cut()
        return result

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        return await self._appending("append", *args, **kwargs)

    async def append_many(self, *args: Any, **kwargs: Any) -> Any:
        return await self._appending("append_many", *args, **kwargs)


async def barrier_events(cluster: Cluster, command_id: str) -> int:
    conn = await asyncpg.connect(with_database(cluster.dsn(), "alliance"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE causation_id = $1",
                                       uuid.UUID(command_id)))
    finally:
        await conn.close()


def assert_unavailable(r: httpx.Response, codes: set[str]) -> None:
    body = assert_problem(r, 503)
    assert body["code"] in codes, body
    assert int(r.headers["retry-after"]) >= 1


async def retry_until_answered(http: httpx.AsyncClient, path: str, body: dict[str, Any],
                               headers: dict[str, str]) -> tuple[httpx.Response, float]:
    """Retry as a client would (same key, same body) until the answer is not a 503 or a
    409 "in progress"; returns it and the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        r = await http.post(path, json=body, headers=headers)
        if r.status_code not in (503, 409) or r.json().get("code") not in (
                "database_unavailable", "outcome_unknown", "request_in_progress"):
            return r, loop.time() - started
        assert loop.time() - started < RECOVERY_SECONDS, r.text
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("when", ["before", "after"])
async def test_an_outage_answers_503_and_a_retry_resolves_after_recovery(outage_api: Api,
                                                                         cluster: Cluster,
                                                                         when: str) -> None:
    api = outage_api
    clinic = await api.clinic()
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    me = api.token(clinic.tenant, "client", client_id)
    path = f"/goals/{goal_id}/barriers"
    key = {**me, "Idempotency-Key": f"barrier-{uuid.uuid4()}"}

    async def cut() -> None:
        await asyncio.to_thread(cluster.stop, "immediate")

    handler = api.services.handler
    real_store = handler.store
    handler.store = CutsTheDatabase(real_store, cut, when)
    try:
        first = await api.http.post(path, json={"text": "Snow"}, headers=key)
    finally:
        handler.store = real_store
    assert handler.store is real_store
    if when == "before":  # the connection died under the append: outcome unknown, not stored
        assert_unavailable(first, {"outcome_unknown", "database_unavailable"})
    else:  # recorded; the answer could not be kept under the key, but the caller gets it
        assert first.status_code == 201, first.text

    # during the outage: every kind of request is a 503 with Retry-After, never a 500
    during = [
        await api.http.post(path, json={"text": "Fog"}, headers={**me, "Idempotency-Key": str(uuid.uuid4())}),
        await api.http.post(path, json={"text": "Fog"}, headers=me),
        await api.http.get(f"/clients/{client_id}/plan", headers=me),
        await api.http.get(f"/goals/{goal_id}", headers=me),
        # staff: the token's active-staff check reads the clinic first
        await api.http.get(f"/clients/{client_id}/plan", headers=api.token(clinic.tenant, "clinician",
                                                                           clinic.clinician)),
    ]
    for r in during:
        assert_unavailable(r, {"database_unavailable"})
    ready = await api.http.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "unreachable: connection refused"

    claims = api.app.state.idempotency
    assert claims.pending_releases == 1  # the dead attempt's claim: its owner could not delete it

    await asyncio.to_thread(cluster.start)
    # the owner frees the key by itself within seconds of recovery, retry or not
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECOVERY_SECONDS
    while claims.pending_releases:
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    print(f"\noutage ({when} the append): claim released {RECOVERY_SECONDS - (deadline - loop.time()):.2f} s "
          "after the database came back")
    conn = await asyncpg.connect(with_database(cluster.dsn(), "alliance"))
    try:
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE principal_id = $1 "
                                   "AND status IS NULL", client_id) == 0
    finally:
        await conn.close()
    # the same app serves again (no restart), and the dead attempt's key resolves within 15 s
    retry, seconds = await retry_until_answered(api.http, path, {"text": "Snow"}, key)
    print(f"\noutage ({when} the append): key resolved {seconds:.2f} s after the database came back")
    assert retry.status_code == 201, retry.text
    command_id = retry.json()["command_id"]
    assert await barrier_events(cluster, command_id) == 1  # recorded exactly once
    if when == "after":
        same = ("command_id", "stream_id", "version", "events", "created")
        assert {k: retry.json()[k] for k in same} == {k: first.json()[k] for k in same}
    again = await api.http.post(path, json={"text": "Snow"}, headers=key)
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == retry.json()
    assert (await api.http.get(f"/goals/{goal_id}", headers=me)).status_code == 200
    fresh = await api.http.post(path, json={"text": "Sun"}, headers={**me, "Idempotency-Key": str(uuid.uuid4())})
    assert fresh.status_code == 201, fresh.text
    deadline = loop.time() + RECOVERY_SECONDS
    while (ready := await api.http.get("/ready")).json()["checks"].get("idempotency", {}).get(
            "liveness_lock") != "held":
        assert loop.time() < deadline, ready.text
        await asyncio.sleep(0.2)
    assert ready.json()["checks"]["database"] == "ok"
    conn = await asyncpg.connect(with_database(cluster.dsn(), "alliance"))
    try:  # and the lock is really held again, as every other process sees it
        assert await conn.fetchval(f"SELECT {HELD_SQL.format(key='$1')}", claims.owner)
    finally:
        await conn.close()


OUTAGES = [ConnectionRefusedError(111, "Connect call failed"), ConnectionResetError(104, "reset"),
           OSError(113, "No route to host"), TimeoutError(), asyncpg.CannotConnectNowError("starting up"),
           asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
           asyncpg.TooManyConnectionsError("sorry, too many clients already"),
           asyncpg.AdminShutdownError("terminating connection due to administrator command"),
           asyncpg.CrashShutdownError("terminating connection because of crash of another server process"),
           asyncpg.ConnectionFailureError("connection failure"), asyncpg.InterfaceError("pool is closed"),
           asyncpg.InterfaceError("connection is closed"),
           ExceptionGroup("dependencies", [ConnectionRefusedError(111, "refused"), TimeoutError()])]
NOT_OUTAGES = [ValueError("bug"), FileNotFoundError(2, "No such file"), PermissionError(13, "denied"),
               asyncpg.UniqueViolationError("duplicate key"),
               asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
               ExceptionGroup("dependencies", [ConnectionRefusedError(111, "refused"), KeyError("bug")])]


@pytest.mark.parametrize("exc", OUTAGES, ids=lambda e: type(e).__name__)
def test_every_form_of_lost_or_refused_connection_is_a_503_with_retry_after(exc: Exception) -> None:
    assert database_outage(exc)
    request = SimpleNamespace(url=SimpleNamespace(path="/x"), scope={})
    response = EXCEPTION_HANDLERS[Exception](request, exc)
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    assert response.content.code == "database_unavailable"
    assert outage_reason(exc) != "unavailable"  # /ready names the kind of outage
    assert "127.0.0.1" not in outage_reason(exc) and "server" not in outage_reason(exc)


@pytest.mark.parametrize("exc", NOT_OUTAGES, ids=lambda e: type(e).__name__)
def test_a_bug_is_not_mistaken_for_an_outage(exc: Exception) -> None:
    assert not database_outage(exc)
    request = SimpleNamespace(url=SimpleNamespace(path="/x"), scope={})
    assert EXCEPTION_HANDLERS[Exception](request, exc).status_code == 500
