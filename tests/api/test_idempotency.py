"""``Idempotency-Key``: a retry returns the first result and records once, on any worker."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import uuid

import asyncpg
import httpx

from alliance.api.idempotency import forget_expired, key_digest
from alliance.api.liveness import new_owner_id
from alliance.core.errors import ConcurrencyConflict
from tests.api.conftest import JWT_SECRET, KEK, _spawn, free_port
from tests.api.support import active_goal, assert_problem, store_state


async def stream_events(dsn: str, stream_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", stream_id))
    finally:
        await conn.close()


async def test_same_key_same_body_replays_the_first_result(api, clinic, database):
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    me = {**api.token(clinic.tenant, "client", client_id), "Idempotency-Key": f"barrier-{uuid.uuid4()}"}
    first = await api.http.post(f"/goals/{goal_id}/barriers", json={"text": "Rain"}, headers=me)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    before = await store_state(database.owner_dsn)
    again = await api.http.post(f"/goals/{goal_id}/barriers", json={"text": "Rain"}, headers=me)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await store_state(database.owner_dsn) == before

    # same key, another body: a 422 and nothing recorded
    r = await api.http.post(f"/goals/{goal_id}/barriers", json={"text": "Snow"}, headers=me)
    assert_problem(r, 422, "idempotency_key_reused")
    # same key, same body, another route: also another request
    r = await api.http.post(f"/goals/{goal_id}/resources", json={"text": "Rain"}, headers=me)
    assert_problem(r, 422, "idempotency_key_reused")
    assert await store_state(database.owner_dsn) == before

    # keys belong to the caller: the clinician's same key is a different request
    clin = {**api.token(clinic.tenant, "clinician", clinic.clinician), "Idempotency-Key": me["Idempotency-Key"]}
    r = await api.http.post(f"/goals/{goal_id}/barriers", json={"text": "Rain"}, headers=clin)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers


async def test_refusals_replay_and_bad_keys(api, clinic, database):
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    key = f"agree-{uuid.uuid4()}"
    me = {**api.token(clinic.tenant, "client", client_id), "Idempotency-Key": key}
    first = await api.http.post(f"/goals/{goal_id}/agreements", json={"version": 1}, headers=me)
    assert_problem(first, 409)
    again = await api.http.post(f"/goals/{goal_id}/agreements", json={"version": 1}, headers=me)
    assert again.status_code == 409 and again.headers.get("idempotent-replayed") == "true"
    assert again.headers["content-type"].startswith("application/problem+json")
    for bad in ("", "k" * 201):
        r = await api.http.post(f"/goals/{goal_id}/barriers", json={"text": "x"},
                                headers={**me, "Idempotency-Key": bad})
        assert_problem(r, 422, "invalid_idempotency_key")


async def test_same_key_on_two_workers_at_once_records_once(api, clinic, servers, database):
    client_id = await api.enrolled_client(clinic)
    me = servers.token(clinic.tenant, "client", client_id)
    body = {"instrument_id": "phq9", "answers": {f"item{i}": 1 for i in range(1, 10)} | {"item9": 0},
            "observed_at": "2024-05-01T08:00:00+02:00"}
    stream_id = f"client-{client_id}"
    async with httpx.AsyncClient(timeout=20) as http:
        for round_ in range(3):
            key = f"measure-{round_}-{uuid.uuid4()}"
            before = await stream_events(database.owner_dsn, stream_id)
            results = await asyncio.gather(*(
                http.post(f"{url}/clients/{client_id}/measurements", json=body,
                          headers={**me, "Idempotency-Key": key})
                for url in servers.urls for _ in range(2)))
            assert all(r.status_code == 201 for r in results), [r.text for r in results]
            assert len({r.json()["created"]["measurement_id"] for r in results}) == 1
            assert len({tuple(e["event_id"] for e in r.json()["events"]) for r in results}) == 1
            assert sum(r.headers.get("idempotent-replayed") == "true" for r in results) == len(results) - 1
            assert await stream_events(database.owner_dsn, stream_id) == before + 1
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        rows = await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE principal_id = $1", client_id)
    finally:
        await conn.close()
    assert rows == 3


async def test_a_replay_repeats_location_and_etag(api, clinic):
    client_id = await api.enrolled_client(clinic)
    me = {**api.token(clinic.tenant, "client", client_id), "Idempotency-Key": f"propose-{uuid.uuid4()}"}
    first = await api.http.post(f"/clients/{client_id}/goals", json={"text": "Read a chapter a night"}, headers=me)
    assert first.status_code == 201, first.text
    again = await api.http.post(f"/clients/{client_id}/goals", json={"text": "Read a chapter a night"}, headers=me)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers.get("location") == first.headers["location"]
    assert again.headers.get("etag") == first.headers["etag"]


async def test_the_key_itself_is_never_stored_only_its_digest(api, clinic, database):
    client_id = await api.enrolled_client(clinic)
    key = f"mood-7-after-the-argument-{uuid.uuid4()}"  # callers put meaning in keys
    headers = {**api.token(clinic.tenant, "client", client_id), "Idempotency-Key": key}
    body = {"instrument_id": "mood_diary", "answers": {"mood": 7}, "observed_at": "2024-05-02T08:00:00+02:00"}
    first = await api.http.post(f"/clients/{client_id}/measurements", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await api.http.post(f"/clients/{client_id}/measurements", json=body, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        stored = await conn.fetch("SELECT key FROM idempotency_keys WHERE principal_id = $1", client_id)
        leaked = await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE key LIKE '%argument%' "
                                     "OR convert_from(response, 'UTF8') LIKE '%argument%'")
    finally:
        await conn.close()
    assert [r["key"] for r in stored] == [key_digest(api.services.mac_key, key)]
    assert leaked == 0


async def test_expired_keys_are_forgotten_and_then_a_retry_runs_as_new(api, clinic, database):
    client_id = await api.enrolled_client(clinic)
    headers = {**api.token(clinic.tenant, "client", client_id), "Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"instrument_id": "mood_diary", "answers": {"mood": 4}, "observed_at": "2024-05-03T08:00:00+02:00"}
    assert (await api.http.post(f"/clients/{client_id}/measurements", json=body, headers=headers)).status_code == 201
    fresh = {**headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    assert (await api.http.post(f"/clients/{client_id}/measurements", json=body, headers=fresh)).status_code == 201
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        await conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' "
                           "WHERE principal_id = $1 AND key = $2", client_id,
                           key_digest(api.services.mac_key, headers["Idempotency-Key"]))
        assert await forget_expired(api.services.pool, older_than_hours=24) >= 1
        remaining = await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE principal_id = $1", client_id)
    finally:
        await conn.close()
    assert remaining == 1  # the fresh one stays
    again = await api.http.post(f"/clients/{client_id}/measurements", json=body, headers=headers)
    assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    assert again.json()["duplicate"] is True  # the command id still derives from the key: recorded once


# --- retries always resolve: a claim is stale only when its owner is gone --------------------

async def goal_events(dsn: str, goal_id: uuid.UUID) -> int:
    return await stream_events(dsn, f"goal-{goal_id}")


async def dead_owner(dsn: str) -> int:
    """The owner id of a worker that was killed: a session took its liveness lock, then ended."""
    conn = await asyncpg.connect(dsn)
    owner = new_owner_id()
    assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", owner)
    await conn.close()
    return owner


async def test_a_claim_whose_owner_died_before_recording_is_taken_over_and_run(api, clinic, database):
    """The first attempt claimed the key, then its worker died (kill -9) before recording
    anything: while the owner lives a retry is told to come back (409, Retry-After, not
    stored); once its lock is gone the next retry takes the claim over and runs the command,
    well within 15 s."""
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    key = f"barrier-{uuid.uuid4()}"
    me = {**api.token(clinic.tenant, "client", client_id), "Idempotency-Key": key,
          "Content-Type": "application/json"}
    path = f"/goals/{goal_id}/barriers"
    body = json.dumps({"text": "Rain"}).encode()
    mac = hmac.new(api.services.mac_key, b"POST %s %s\n" % (path.encode(), body), hashlib.sha256).digest()
    owner = await asyncpg.connect(database.app_dsn)  # the first attempt's worker, alive
    owner_id = new_owner_id()
    assert await owner.fetchval("SELECT pg_try_advisory_lock($1)", owner_id)
    await owner.execute(
        "INSERT INTO idempotency_keys (tenant_id, principal_id, key, method, route, body_mac, owner) "
        "VALUES ($1, $2, $3, 'POST', '/goals/{goal_id:uuid}/barriers', $4, $5)",
        clinic.tenant, client_id, key_digest(api.services.mac_key, key), mac, owner_id)
    before = await goal_events(database.owner_dsn, goal_id)

    waiting = await api.http.post(path, content=body, headers=me)
    assert_problem(waiting, 409, "request_in_progress")
    assert waiting.headers["retry-after"] == "1"
    await owner.close()  # kill -9: the session ends, its lock with it

    loop = asyncio.get_running_loop()
    started = loop.time()
    retry = await api.http.post(path, content=body, headers=me)
    assert retry.status_code == 201, retry.text
    assert loop.time() - started < 15
    assert "idempotent-replayed" not in retry.headers and retry.json().get("duplicate", False) is False
    assert await goal_events(database.owner_dsn, goal_id) == before + 1
    again = await api.http.post(path, content=body, headers=me)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == retry.json()
    assert await goal_events(database.owner_dsn, goal_id) == before + 1


async def test_a_claim_whose_owner_died_after_recording_answers_with_the_recorded_outcome(api, clinic, database):
    """The first attempt recorded its command, then died before storing the answer: the retry
    takes the claim over, the event store says "already recorded", and the answer names the
    same command, events, versions and created ids as the first would have."""
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    key = f"barrier-{uuid.uuid4()}"
    me = {**api.token(clinic.tenant, "client", client_id), "Idempotency-Key": key}
    path = f"/goals/{goal_id}/barriers"
    first = await api.http.post(path, json={"text": "Wind"}, headers=me)
    assert first.status_code == 201, first.text
    conn = await asyncpg.connect(database.owner_dsn)
    try:  # as if the answer had never been stored, and its owner were gone
        await conn.execute("UPDATE idempotency_keys SET status = NULL, response = NULL, completed_at = NULL, "
                           "owner = $3 WHERE principal_id = $1 AND key = $2", client_id,
                           key_digest(api.services.mac_key, key), await dead_owner(database.app_dsn))
    finally:
        await conn.close()
    before = await goal_events(database.owner_dsn, goal_id)
    retry = await api.http.post(path, json={"text": "Wind"}, headers=me)
    assert retry.status_code == 201, retry.text
    assert retry.json()["duplicate"] is True
    same = ("command_id", "stream_id", "version", "events", "created")
    assert {k: retry.json()[k] for k in same} == {k: first.json()[k] for k in same}
    assert await goal_events(database.owner_dsn, goal_id) == before


async def test_an_exhausted_re_decide_is_not_stored_as_the_answer(api, clinic, database, monkeypatch):
    """A conflict the handler could not resolve in time says nothing about the command: it is
    answered 409 with Retry-After, never stored, and the retry with the same key runs it."""
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    me = {**api.token(clinic.tenant, "client", client_id), "Idempotency-Key": f"barrier-{uuid.uuid4()}"}
    handler = api.services.handler
    real = handler.handle_goal

    async def kept_moving(*args, **kwargs):
        monkeypatch.setattr(handler, "handle_goal", real)
        raise ConcurrencyConflict("stream kept moving", stream_id=f"goal-{goal_id}", expected=1, actual=2,
                                  retry_after=1)

    monkeypatch.setattr(handler, "handle_goal", kept_moving)
    refused = await api.http.post(f"/goals/{goal_id}/barriers", json={"text": "Hail"}, headers=me)
    assert_problem(refused, 409, "concurrency_conflict")
    assert refused.headers["retry-after"] == "1"
    retry = await api.http.post(f"/goals/{goal_id}/barriers", json={"text": "Hail"}, headers=me)
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers


async def test_retention_forgets_an_old_claim_only_once_its_owner_is_gone(api, clinic, database):
    client_id = await api.enrolled_client(clinic)
    alive = await asyncpg.connect(database.app_dsn)
    alive_id = new_owner_id()
    assert await alive.fetchval("SELECT pg_try_advisory_lock($1)", alive_id)
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        for name, owner in (("alive", alive_id), ("dead", await dead_owner(database.app_dsn))):
            await conn.execute(
                "INSERT INTO idempotency_keys (tenant_id, principal_id, key, method, route, body_mac, owner, "
                "created_at) VALUES ($1, $2, $3, 'POST', '/x', '\\x00', $4, now() - interval '25 hours')",
                clinic.tenant, client_id, f"{name}-{uuid.uuid4()}", owner)
        assert await forget_expired(api.services.pool, older_than_hours=24) >= 1
        left = await conn.fetch("SELECT key FROM idempotency_keys WHERE principal_id = $1", client_id)
        assert [r["key"].split("-")[0] for r in left] == ["alive"]  # still running: kept
        await alive.close()
        assert await forget_expired(api.services.pool, older_than_hours=24) >= 1
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE principal_id = $1", client_id) == 0
    finally:
        await conn.close()
        await alive.close()


async def test_a_worker_killed_mid_request_leaves_a_key_the_next_retry_resolves(api, clinic, database,
                                                                                 tmp_path):
    """``kill -9`` of a real worker while its request waits inside the append (the test holds
    the stream's row): the retry, sent to another process, is answered within 15 s, and the
    command is recorded exactly once (here the dead worker's append did commit once the row was
    free: PostgreSQL finishes a statement whose client is gone)."""
    client_id = await api.enrolled_client(clinic)
    me = {**api.token(clinic.tenant, "client", client_id), "Idempotency-Key": f"measure-{uuid.uuid4()}"}
    body = {"instrument_id": "phq9", "answers": {f"item{i}": 1 for i in range(1, 10)} | {"item9": 0},
            "observed_at": "2024-05-04T08:00:00+02:00"}
    stream_id = f"client-{client_id}"
    env = {**os.environ, "DATABASE_URL": database.owner_dsn, "ALLIANCE_KEK": KEK, "ALLIANCE_JWT_SECRET": JWT_SECRET,
           "ALLIANCE_HOME": str(tmp_path), "ALLIANCE_LOG_LEVEL": "warning"}
    port = free_port()
    worker = _spawn(tmp_path, port, env, 9)
    holder = await asyncpg.connect(database.owner_dsn)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            url = f"http://127.0.0.1:{port}"
            async with asyncio.timeout(30):
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(url + "/health")).status_code == 200:
                            break
                    assert worker.poll() is None, (tmp_path / "worker-9.log").read_text()[-2000:]
                    await asyncio.sleep(0.1)
            before = await stream_events(database.owner_dsn, stream_id)
            lock = holder.transaction()
            await lock.start()
            await holder.execute("SELECT 1 FROM streams WHERE stream_id = $1 FOR UPDATE", stream_id)
            first = asyncio.create_task(http.post(f"{url}/clients/{client_id}/measurements", json=body,
                                                  headers=me))
            for _ in range(300):  # until the request waits for the row (its key claimed), 15 s at most
                if await holder.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                         "AND datname = current_database() AND pid <> pg_backend_pid()"):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the request never reached the append")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            with contextlib.suppress(httpx.HTTPError):
                await first
            await lock.rollback()

            loop = asyncio.get_running_loop()
            started = loop.time()
            while True:  # the caller retries with the same key, on another process
                retry = await api.http.post(f"/clients/{client_id}/measurements", json=body, headers=me)
                if retry.status_code != 409 or loop.time() - started > 15:
                    break
                await asyncio.sleep(float(retry.headers.get("retry-after", "1")))
            print(f"\nkill -9 mid-request: the retry answered {retry.status_code} after {loop.time() - started:.2f} s")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        await holder.close()
    assert retry.status_code == 201, retry.text
    assert loop.time() - started < 15
    assert await stream_events(database.owner_dsn, stream_id) == before + 1


async def test_a_live_owner_whose_request_failed_frees_the_key_at_once(api, clinic, database, monkeypatch):
    """A 500 is no answer to keep: the owner deletes its claim, and the retry runs the command."""
    client_id = await api.enrolled_client(clinic)
    goal_id, _ = await active_goal(api, clinic, client_id)
    key = f"barrier-{uuid.uuid4()}"
    me = {**api.token(clinic.tenant, "client", client_id), "Idempotency-Key": key}
    handler = api.services.handler
    real = handler.handle_goal

    async def broken(*args, **kwargs):
        monkeypatch.setattr(handler, "handle_goal", real)
        raise RuntimeError("a bug")

    monkeypatch.setattr(handler, "handle_goal", broken)
    failed = await api.http.post(f"/goals/{goal_id}/barriers", json={"text": "Heat"}, headers=me)
    assert_problem(failed, 500, "internal_error")
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE principal_id = $1 AND key = $2",
                                   client_id, key_digest(api.services.mac_key, key)) == 0
    finally:
        await conn.close()
    retry = await api.http.post(f"/goals/{goal_id}/barriers", json={"text": "Heat"}, headers=me)
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
