"""Trial: an erasure right after a PostgreSQL restart, with both workers holding the client's
data (keys, states, views) from reads just before.

Promise: once the erasure is answered, no read on any worker shows the erased text - not
the plan as of a moment before the erasure, not the client's export - however the workers
learnt of the destroyed key (a restart breaks every LISTEN connection).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import httpx

from tests.faults.world import active_goal, canary, connection_per_worker, enrol_client, eventually, status_counts

WARM_READS_PER_WORKER = 8
READS_PER_WORKER = 16  # >= 32 in all with two workers
RECOVERY_SECONDS = 15.0
READ_SECONDS = 5.0  # a read that hangs is a failure, not a stalled trial


async def test_erasure_after_a_database_restart_shows_no_erased_text(service, clinic, http, cluster) -> None:
    client_id = await enrol_client(clinic, http)
    text = canary()
    await active_goal(clinic, http, client_id, f"Walk to the bakery {text}")
    workers = await connection_per_worker(service)
    assert len(workers) == service.workers, f"reached {len(workers)} of {service.workers} workers"
    url = service.url
    me, clinician = clinic.client_headers(client_id), clinic.headers("clinician")

    def reads(moment: str) -> list[tuple[str, dict[str, str]]]:
        return [(f"{url}/clients/{client_id}/plan?as_of={moment}", me),
                (f"{url}/clients/{client_id}/plan?as_of={moment}", clinician),
                (f"{url}/clients/{client_id}/export", me),
                (f"{url}/clients/{client_id}/plan", me)]

    warm_hits = 0
    try:
        for own in workers.values():
            for n in range(WARM_READS_PER_WORKER):
                target, headers = reads(_now())[n % 4]
                r = await own.get(target, headers=headers, timeout=READ_SECONDS)
                assert r.status_code == 200, r.text
                warm_hits += text in r.text
        assert warm_hits == WARM_READS_PER_WORKER * len(workers), "the canary was not readable before the erasure"

        await asyncio.to_thread(cluster.restart, "fast")
        before_erasure = _now()
        erase_started = time.monotonic()
        admin = clinic.headers("admin", key=str(uuid.uuid4()))  # one key: every attempt is a retry
        erasure = await eventually(lambda: _erase(http, url, client_id, admin), within=RECOVERY_SECONDS, every=0.2)
        erase_seconds = time.monotonic() - erase_started
        assert erasure is not None, f"the erasure was not answered 201 within {RECOVERY_SECONDS} s"

        statuses: list[int] = []
        hits: dict[int, int] = {pid: 0 for pid in workers}
        for pid, own in workers.items():
            for n in range(READS_PER_WORKER):
                target, headers = reads(before_erasure if n % 2 else _now())[n % 3]
                r = await own.get(target, headers=headers, timeout=READ_SECONDS)
                statuses.append(r.status_code)
                hits[pid] += text in r.text
    finally:
        for own in workers.values():
            await own.aclose()

    print(f"\n[erasure after restart] warm reads={warm_hits} (all showed the text) erasure answered after "
          f"{erase_seconds:.2f}s; reads after erasure={len(statuses)} statuses={status_counts(statuses)} "
          f"showing the erased text per worker={hits}")
    assert len(statuses) >= 32
    assert sum(hits.values()) == 0, f"{sum(hits.values())} of {len(statuses)} reads showed the erased text"


async def _erase(http: httpx.AsyncClient, url: str, client_id: uuid.UUID, headers: dict[str, str]) -> bool:
    r = await http.post(f"{url}/clients/{client_id}/erasure", json={"reason": "the client asked"}, headers=headers)
    return r.status_code == 201


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
