"""Over HTTP: the progress view reads in plain words beside its statistics, and the client's own
reading of an entry is recorded (sealed like other personal text) and shown beside it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from alliance.core.client import client_stream
from tests.api.support import assert_problem, phq9


async def test_words_and_the_clients_own_reading_of_an_entry(api, clinic, database):
    client_id = await api.enrolled_client(clinic)
    me = api.token(clinic.tenant, "client", client_id)
    staff = api.token(clinic.tenant, "clinician", clinic.clinician)
    start = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    mids = []
    for week, total in enumerate((16, 11, 7)):
        mid = str(uuid.uuid4())
        r = await api.http.post(f"/clients/{client_id}/measurements", headers=me, json={
            "instrument_id": "phq9", "answers": phq9(total), "observed_at": (start + timedelta(weeks=week)).isoformat(),
            "measurement_id": mid})
        assert r.status_code == 201, r.text
        mids.append(mid)

    said = "I had a rough week at work"
    path = f"/clients/{client_id}/measurements/{mids[1]}/interpretation"
    assert_problem(await api.http.post(path, json={"text": said}, headers=staff), 403)
    assert_problem(await api.http.post(path, json={"text": " "}, headers=me), 422, "text_required")
    assert_problem(await api.http.post(f"/clients/{client_id}/measurements/{uuid.uuid4()}/interpretation",
                                       json={"text": said}, headers=me), 404, "measurement_not_found")
    r = await api.http.post(path, json={"text": said}, headers=me)
    assert r.status_code == 201, r.text

    # the words at rest are sealed: the plain text is in no stored event
    events = await api.services.store.read_stream(client_stream(client_id))
    assert [e.type for e in events].count("measurement.interpreted") == 1
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = $1 AND (position(convert_to($2, 'UTF8') in payload) > 0 "
            "OR position(convert_to($2, 'UTF8') in coalesce(secret, ''::bytea)) > 0)", client_stream(client_id), said)
        stored = await conn.fetchval("SELECT count(*) FROM events WHERE stream_id = $1 AND type = "
                                     "'measurement.interpreted' AND secret IS NOT NULL", client_stream(client_id))
    finally:
        await conn.close()
    assert (found, stored) == (0, 1)

    async with asyncio.timeout(10):  # projected a moment after the command
        while True:
            view = (await api.http.get(f"/clients/{client_id}/progress", headers=me)).json()
            [measure] = [m for m in view["measures"] if m["instrument_id"] == "phq9"]
            if measure["points"][1]["interpretation"]:
                break
            await asyncio.sleep(0.05)
    assert measure["points"][1]["interpretation"]["text"] == said
    assert measure["points"][1]["interpretation"]["by_role"] == "client"
    assert measure["reliable_change"]["status"] == "improved"  # the machine field stays
    assert measure["plain_words"]["text"] == ("Since 3 March your PHQ-9 score has gone from 16 to 7. That is a "
                                              "reliable improvement. It is now in the mild range.")
    assert view["language"] == "en"
    assert any("at least 6 points" in line for line in measure["plain_words"]["criteria"])
