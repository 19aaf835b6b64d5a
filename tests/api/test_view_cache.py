"""The API's view cache: a client's own plan/progress reads are answered from it and follow
changes at once; staff and other callers always read the database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx

from tests.api.support import assert_problem, phq9


async def caught_up(api: Any) -> None:
    """Until every projection has folded every event (no change is still to be announced)."""
    async with asyncio.timeout(10):
        while True:
            r = await api.http.get("/ready")
            projections = r.json()["checks"]["projections"].values() if r.status_code == 200 else ()
            if projections and all(p["events_behind"] == 0 for p in projections):
                return
            await asyncio.sleep(0.02)


async def test_a_clients_repeated_read_is_answered_from_the_cache(api: Any, clinic: Any) -> None:
    client_id = await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", client_id)
    views = api.services.views
    assert views.enabled  # the app listens for changes from its start
    ready = (await api.http.get("/ready")).json()["checks"]["view_cache"]
    assert ready == {"listening": True, "max_age_seconds": views.max_age}
    r = await api.http.post(f"/clients/{client_id}/measurements", json={
        "instrument_id": "phq9", "answers": phq9(9), "observed_at": "2025-01-06T09:00:00+00:00"}, headers=me)
    assert r.status_code == 201, r.text  # progress is stored from the first measurement on
    await caught_up(api)
    for path in ("plan", "progress"):
        first = await api.http.get(f"/clients/{client_id}/{path}", headers=me)
        assert first.status_code == 200, first.text
        hits = views.hits
        again = await api.http.get(f"/clients/{client_id}/{path}", headers=me)
        assert again.status_code == 200
        assert views.hits == hits + 1
        strip = lambda body: {k: v for k, v in body.items() if k != "as_of"}  # noqa: E731
        assert strip(again.json()) == strip(first.json())


async def test_a_measurement_shows_in_the_clients_progress_long_before_the_cache_would_age_it(
        api: Any, clinic: Any) -> None:
    client_id = await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", client_id)
    views = api.services.views
    r = await api.http.post(f"/clients/{client_id}/measurements", json={
        "instrument_id": "phq9", "answers": phq9(12), "observed_at": "2025-01-05T09:00:00+00:00"}, headers=me)
    assert r.status_code == 201, r.text
    await caught_up(api)
    for _ in range(2):  # held in the cache
        assert (await api.http.get(f"/clients/{client_id}/progress", headers=me)).status_code == 200
    assert views.get("progress", client_id, clinic.tenant) is not None
    r = await api.http.post(f"/clients/{client_id}/measurements", json={
        "instrument_id": "phq9", "answers": phq9(9), "observed_at": "2025-01-06T09:00:00+00:00"}, headers=me)
    assert r.status_code == 201, r.text
    measurement_id = r.json()["created"]["measurement_id"]
    loop = asyncio.get_running_loop()
    start = loop.time()
    while measurement_id not in (await api.http.get(f"/clients/{client_id}/progress", headers=me)).text:
        assert loop.time() - start < 5.0, "the change feed did not drop the cached progress"
        await asyncio.sleep(0.02)
    assert loop.time() - start < views.max_age / 2


async def test_staff_reads_never_come_from_the_cache_and_stay_logged(api: Any, clinic: Any, database: Any) -> None:
    client_id = await api.enrolled_client(clinic)
    clin = api.token(clinic.tenant, "clinician", clinic.clinician)
    views = api.services.views
    hits = views.hits
    for _ in range(3):
        for path in ("plan", "progress"):
            assert (await api.http.get(f"/clients/{client_id}/{path}", headers=clin)).status_code == 200
    assert views.hits == hits
    assert views.get("plan", client_id, clinic.tenant) is None
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        logged = await conn.fetchval("SELECT count(*) FROM access_log WHERE actor_id = $1 AND client_id = $2",
                                     clinic.clinician, client_id)
    finally:
        await conn.close()
    assert logged == 6


async def test_another_clients_view_is_neither_served_nor_cached(api: Any, clinic: Any) -> None:
    mine, theirs = await api.enrolled_client(clinic), await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", mine)
    them = api.token(clinic.tenant, "client", theirs)
    await caught_up(api)
    assert (await api.http.get(f"/clients/{theirs}/plan", headers=them)).status_code == 200
    assert (await api.http.get(f"/clients/{theirs}/plan", headers=them)).status_code == 200  # held now
    assert api.services.views.get("plan", theirs, clinic.tenant) is not None
    assert_problem(await api.http.get(f"/clients/{theirs}/plan", headers=me), 404, "client_not_found")
    stranger = uuid.uuid4()
    assert_problem(await api.http.get(f"/clients/{stranger}/plan", headers=api.token(clinic.tenant, "client",
                                                                                        stranger)), 404)
    assert api.services.views.get("plan", stranger, clinic.tenant) is None


async def test_a_change_made_through_one_worker_shows_at_once_on_the_other(api: Any, clinic: Any, servers: Any) -> None:
    client_id = await api.enrolled_client(clinic)
    me = servers.token(clinic.tenant, "client", client_id)
    first, second = servers.urls
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(f"{second}/clients/{client_id}/measurements", json={
            "instrument_id": "phq9", "answers": phq9(14), "observed_at": "2025-02-01T09:00:00+00:00"}, headers=me)
        assert r.status_code == 201, r.text
        await caught_up(api)
        for _ in range(3):  # the first worker now holds the client's progress
            assert (await http.get(f"{first}/clients/{client_id}/progress", headers=me)).status_code == 200
        r = await http.post(f"{second}/clients/{client_id}/measurements", json={
            "instrument_id": "phq9", "answers": phq9(5), "observed_at": "2025-02-08T09:00:00+00:00"}, headers=me)
        assert r.status_code == 201, r.text
        measurement_id = r.json()["created"]["measurement_id"]
        loop = asyncio.get_running_loop()
        start = loop.time()
        while measurement_id not in (await http.get(f"{first}/clients/{client_id}/progress", headers=me)).text:
            assert loop.time() - start < 5.0, "the other worker kept serving the progress it held"
            await asyncio.sleep(0.02)
        ready = (await http.get(f"{first}/ready")).json()["checks"]["view_cache"]
    assert ready["listening"] is True and ready["max_age_seconds"] > 5.0  # so age alone could not explain it
