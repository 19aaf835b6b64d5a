"""The real app on the test database, driven over HTTP (Litestar's test client)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import httpx

from api.app import create_app
from api.auth import issue_token
from core.clinic import ActivateStaff
from core.handling import CommandHandler
from core.identity import Actor, Role
from core.runtime import domain_codec
from core.settings import Settings

KEK = base64.b64encode(bytes(range(32))).decode()


def api_settings(database: Any, home: Path) -> Settings:
    return Settings(database_url=database.owner_dsn, kek=KEK, home=home, log_level="warning",
                    jwt_secret="test-secret-for-alliance-api-tests-0123456789")


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


@pytest.fixture
def ids() -> Any:
    _ = domain_codec
    return uuid.uuid4
