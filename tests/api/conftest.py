"""The real app on the test database, driven over HTTP (Litestar's test client)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from alliance.api.app import create_app
from alliance.api.auth import issue_token
from alliance.core.clinic import ActivateStaff
from alliance.core.handling import CommandHandler
from alliance.core.identity import Actor, Role
from alliance.core.settings import Settings

KEK = base64.b64encode(bytes(range(32))).decode()
JWT_SECRET = "test-secret-for-alliance-api-tests-0123456789"


def api_settings(database: Any, home: Path) -> Settings:
    # Many tests send bad tokens on purpose from the one test address: the failed-authentication
    # limit has its own test (test_auth_rate_limit.py) and must not answer theirs.
    return Settings(database_url=database.owner_dsn, kek=KEK, home=home, log_level="warning",
                    jwt_secret=JWT_SECRET, auth_failures_per_minute=1_000_000)


@dataclass
class Clinic:
    tenant: uuid.UUID
    admin: uuid.UUID
    clinician: uuid.UUID
    clinician_2: uuid.UUID
    outsider: uuid.UUID  # a clinician of the same clinic, on no care team
    auditor: uuid.UUID
    supervisor: uuid.UUID


class Api:
    def __init__(self, client: httpx.AsyncClient, settings: Settings, app: Any) -> None:
        self.http = client
        self.settings = settings
        self.app = app

    @property
    def services(self) -> Any:
        return self.app.state.services

    def token(self, tenant: uuid.UUID, role: Role | str, sub: uuid.UUID) -> dict[str, str]:
        return {"Authorization": "Bearer " + issue_token(self.settings, tenant=tenant, role=Role(role), sub=sub)}

    async def clinic(self) -> Clinic:
        tenant = uuid.uuid4()
        c = Clinic(tenant, *(uuid.uuid4() for _ in range(6)))
        handler: CommandHandler = self.services.handler
        system = Actor(id=uuid.uuid4(), role=Role.SYSTEM)
        await handler.handle_clinic(ActivateStaff(command_id=uuid.uuid4(), actor=system, at=datetime.now(UTC),
                                                  tenant_id=tenant, staff_id=c.admin, role=Role.ADMIN))
        admin = self.token(tenant, Role.ADMIN, c.admin)
        for staff, role in ((c.clinician, "clinician"), (c.clinician_2, "clinician"), (c.outsider, "clinician"),
                            (c.auditor, "auditor"), (c.supervisor, "supervisor")):
            r = await self.http.post("/staff", json={"staff_id": str(staff), "role": role}, headers=admin)
            assert r.status_code == 201, r.text
        return c

    async def enrolled_client(self, clinic: Clinic, *, consents: tuple[str, ...] = (
            "goal_setting", "measurement", "care_team_sharing")) -> uuid.UUID:
        r = await self.http.post("/clients", json={"primary_clinician_id": str(clinic.clinician)},
                                 headers=self.token(clinic.tenant, "admin", clinic.admin))
        assert r.status_code == 201, r.text
        client_id = uuid.UUID(r.json()["created"]["client_id"])
        me = self.token(clinic.tenant, "client", client_id)
        for scope in consents:
            r = await self.http.post(f"/clients/{client_id}/consents",
                                     json={"scope": scope, "text_version": "v1", "mode": "self"}, headers=me)
            assert r.status_code == 201, r.text
        return client_id


@pytest.fixture(scope="session")
async def api(database, tmp_path_factory) -> AsyncIterator[Api]:
    settings = api_settings(database, tmp_path_factory.mktemp("alliance-home"))
    app = create_app(settings)
    async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                               base_url="http://alliance.test") as client:
        yield Api(client, settings, app)


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[None]:
    """Run the app's lifespan on the test's event loop (asyncpg pools are loop-bound), held by
    one task from start to end as anyio's cancel scopes require."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    await asyncio.wait({task, asyncio.create_task(started.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield
    finally:
        stop.set()
        await task


@pytest.fixture
async def clinic(api: Api) -> Clinic:
    return await api.clinic()


# --- real servers: two uvicorn processes on the test database (SSE, idempotency across workers) ---


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Servers:
    urls: list[str]
    settings: Settings

    def token(self, tenant: uuid.UUID, role: Role | str, sub: uuid.UUID) -> dict[str, str]:
        return {"Authorization": "Bearer " + issue_token(self.settings, tenant=tenant, role=Role(role), sub=sub)}


def _spawn(home: Path, port: int, env: dict[str, str], index: int) -> subprocess.Popen[bytes]:
    with open(home / f"worker-{index}.log", "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "alliance.api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2])


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture(scope="session")
async def servers(database, api, tmp_path_factory) -> AsyncIterator[Servers]:
    """Two workers (separate processes) on free loopback ports, healthy before the first test uses them."""
    home = tmp_path_factory.mktemp("alliance-servers")
    env = {**os.environ, "DATABASE_URL": database.owner_dsn, "ALLIANCE_KEK": KEK, "ALLIANCE_JWT_SECRET": JWT_SECRET,
           "ALLIANCE_HOME": str(home), "ALLIANCE_LOG_LEVEL": "warning", "ALLIANCE_AUTH_FAILURES_PER_MINUTE": "1000000"}
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for i in range(2):
            port = free_port()
            procs.append(_spawn(home, port, env, i))
            urls.append(f"http://127.0.0.1:{port}")
        async with httpx.AsyncClient(timeout=2.0) as http:
            for i, (url, proc) in enumerate(zip(urls, procs, strict=True)):
                deadline = asyncio.get_running_loop().time() + 30
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"worker {url} exited: {_tail(home / f'worker-{i}.log')}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(url + "/health")).status_code == 200:
                            break
                    if asyncio.get_running_loop().time() > deadline:
                        raise RuntimeError(f"worker {url} did not become healthy: {_tail(home / f'worker-{i}.log')}")
                    await asyncio.sleep(0.1)
        yield Servers(urls, api.settings)
    finally:
        _stop(procs)
