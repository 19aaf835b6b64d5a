"""What a trial needs in the service, made the way a clinic makes it: the first admin through
``alliance clinic bootstrap``, everything else over HTTP with bearer tokens.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.faults.service import Service

CONSENTS = ("goal_setting", "measurement", "care_team_sharing")


@dataclass
class Clinic:
    service: Service
    tenant: uuid.UUID
    admin: uuid.UUID
    clinician: uuid.UUID

    def headers(self, role: str, sub: uuid.UUID | None = None, key: str | None = None) -> dict[str, str]:
        who = sub or {"admin": self.admin, "clinician": self.clinician}[role]
        headers = self.service.token(self.tenant, role, who)
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def client_headers(self, client_id: uuid.UUID, key: str | None = None) -> dict[str, str]:
        return self.headers("client", client_id, key)


def canary() -> str:
    """A text nobody else writes: found anywhere, it came from this trial."""
    return f"CANARY-{uuid.uuid4().hex}"


async def bootstrap_clinic(service: Service, http: httpx.AsyncClient) -> Clinic:
    tenant, admin, clinician = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    done = await asyncio.to_thread(service.cli, "clinic", "bootstrap", "--tenant", str(tenant),
                                   "--admin", str(admin))
    assert done.returncode == 0, done.stderr
    clinic = Clinic(service, tenant, admin, clinician)
    r = await http.post(service.url + "/staff", json={"staff_id": str(clinician), "role": "clinician"},
                        headers=clinic.headers("admin"))
    assert r.status_code == 201, r.text
    return clinic


async def enrol_client(clinic: Clinic, http: httpx.AsyncClient) -> uuid.UUID:
    url = clinic.service.url
    r = await http.post(url + "/clients", json={"primary_clinician_id": str(clinic.clinician)},
                        headers=clinic.headers("admin"))
    assert r.status_code == 201, r.text
    client_id = uuid.UUID(r.json()["created"]["client_id"])
    for scope in CONSENTS:
        r = await http.post(f"{url}/clients/{client_id}/consents",
                            json={"scope": scope, "text_version": "v1", "mode": "self"},
                            headers=clinic.client_headers(client_id))
        assert r.status_code == 201, r.text
    return client_id


async def active_goal(clinic: Clinic, http: httpx.AsyncClient, client_id: uuid.UUID, text: str) -> uuid.UUID:
    """A goal in the client's words, agreed by client and clinician (so the plan shows it)."""
    url = clinic.service.url
    me = clinic.client_headers(client_id)
    r = await http.post(f"{url}/clients/{client_id}/goals", json={"text": text}, headers=me)
    assert r.status_code == 201, r.text
    goal_id = uuid.UUID(r.json()["created"]["goal_id"])
    version = (await http.get(f"{url}/goals/{goal_id}", headers=me)).json()["version"]
    for who in (me, clinic.headers("clinician")):
        r = await http.post(f"{url}/goals/{goal_id}/agreements", json={"version": version}, headers=who)
        assert r.status_code == 201, r.text
    return goal_id


def phq9(total: int) -> dict[str, int]:
    answers = {f"item{i}": 0 for i in range(1, 10)}
    for i in range(1, 9):
        answers[f"item{i}"] = max(0, min(3, total - sum(answers.values())))
    return answers


@dataclass
class Keyed:
    """One keyed request a trial sends, retries and accounts for."""

    key: str
    client_id: uuid.UUID
    body: dict[str, Any]
    first_status: int | str | None = None  # an HTTP status, or the name of the transport error
    final_status: int | str | None = None
    measurement_id: str | None = None
    attempts: int = 0
    resolved_after: float | None = None  # seconds from the first retry to a 2xx


def measurement(client_id: uuid.UUID, key: str, n: int) -> Keyed:
    observed = (datetime.now(UTC) - timedelta(minutes=1, seconds=n)).isoformat()
    return Keyed(key, client_id, {"instrument_id": "phq9", "answers": phq9(n % 20), "observed_at": observed})


async def send(clinic: Clinic, http: httpx.AsyncClient, item: Keyed, *, seconds: float = 20.0) -> int | str:
    """POST one keyed measurement once; the status, or the transport error's class name."""
    item.attempts += 1
    try:
        r = await http.post(f"{clinic.service.url}/clients/{item.client_id}/measurements", json=item.body,
                            headers=clinic.client_headers(item.client_id, item.key), timeout=seconds)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    if 200 <= r.status_code < 300:
        found = r.json()["created"]["measurement_id"]
        assert item.measurement_id in (None, found), f"{item.key}: {item.measurement_id} then {found}"
        item.measurement_id = found
    return r.status_code


async def retry_until_resolved(clinic: Clinic, http: httpx.AsyncClient, item: Keyed, *, within: float = 15.0
                               ) -> None:
    """Retry with the same key and body until a 2xx or ``within`` seconds (bounded)."""
    started = time.monotonic()
    while True:
        # each attempt may take the server's own wait for a claimed key (10 s) and still be seen
        status = await send(clinic, http, item, seconds=12.0)
        item.final_status = status
        if isinstance(status, int) and 200 <= status < 300:
            item.resolved_after = time.monotonic() - started
            return
        if time.monotonic() - started >= within:
            return
        await asyncio.sleep(0.2)


async def retry_all(clinic: Clinic, http: httpx.AsyncClient, items: list[Keyed], *, within: float = 15.0,
                    concurrency: int = 32) -> None:
    """Retry every item until resolved, all within one bound: ``within`` seconds from now for the
    retries to start, plus one attempt's own time. An item not yet tried by then stays unresolved."""
    deadline = time.monotonic() + within
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Keyed) -> None:
        async with gate:
            left = deadline - time.monotonic()
            if left <= 0:
                item.final_status = "not retried within the bound"
                return
            await retry_until_resolved(clinic, http, item, within=left)

    await asyncio.gather(*(one(item) for item in items))


async def eventually(check: Callable[[], Awaitable[Any]], *, within: float = 15.0, every: float = 0.1) -> Any:
    """The first truthy result of ``check`` within ``within`` seconds, else the last (falsy) one."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = await check()
        except (httpx.HTTPError, OSError):
            result = None
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(every)


async def until(condition: Callable[[], bool], *, within: float, every: float = 0.05) -> bool:
    """Wait (bounded) for a condition on the trial's own state, e.g. enough acknowledged writes."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)
    return True


def status_counts(statuses: list[int | str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in statuses:
        counts[str(s)] = counts.get(str(s), 0) + 1
    return dict(sorted(counts.items()))


async def connections_on_workers(service: Service, per_worker: int = 1, *, attempts: int = 64
                                 ) -> dict[int, list[httpx.AsyncClient]]:
    """``per_worker`` kept-alive connections to each worker (new ones until each worker holds enough).

    Requests on a kept-alive connection are served by the worker that accepted it, so a trial
    can say which worker answered without anything from the product.
    """
    from tests.faults.service import served_by

    found: dict[int, list[httpx.AsyncClient]] = {}
    for _ in range(attempts):
        own = httpx.AsyncClient(timeout=20.0, limits=httpx.Limits(max_connections=1))
        r = await own.get(service.url + "/health")
        pid = served_by(r, service)
        if pid is not None and len(found.setdefault(pid, [])) < per_worker:
            found[pid].append(own)
        else:
            await own.aclose()
        if len(found) >= service.workers and all(len(v) >= per_worker for v in found.values()):
            break
    return found


async def connection_per_worker(service: Service) -> dict[int, httpx.AsyncClient]:
    return {pid: conns[0] for pid, conns in (await connections_on_workers(service)).items() if conns}
