"""What the app holds for its whole life (created in the lifespan, reached from handlers)."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pluggy
from litestar import Request
from litestar.datastructures import State

from alliance.api.auth import Principal, TokenVerifier
from alliance.core.clinic import ClinicState
from alliance.core.clock import SYSTEM_CLOCK, Clock
from alliance.core.errors import Forbidden
from alliance.core.handling import CommandHandler
from alliance.core.identity import Role
from alliance.core.projections.feed import ChangeFeed
from alliance.core.projections.queries import Fetched
from alliance.core.projections.view_cache import ViewCache
from alliance.core.runtime import Runtime
from alliance.plugins.manager import InstrumentRegistry


@dataclass
class AppServices:
    runtime: Runtime
    handler: CommandHandler
    plugins: pluggy.PluginManager
    instruments: InstrumentRegistry
    tokens: TokenVerifier
    feed: ChangeFeed
    #: Recent plan/progress reads, dropped when the change feed announces a change.
    views: ViewCache[Fetched]
    mac_key: bytes
    runners: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    signer: Any = None
    #: Signs receipts for agreements and consents (set in the lifespan).
    issue_receipts: Any = None
    #: The installed notification channels (reminder opt-outs name one of them).
    channels: Any = ()
    #: The time views are read at (due / overdue measures); a test sets a ``SettableClock``.
    clock: Clock = SYSTEM_CLOCK
    #: The background leaders this process runs (api/background.py), None when they run elsewhere.
    background: Any = None

    @property
    def pool(self) -> Any:
        return self.runtime.pool

    @property
    def store(self) -> Any:
        return self.runtime.store

    async def clinic(self, tenant_id: UUID, *, known_version: int | None = None) -> ClinicState:
        """The clinic's staff list and crisis text, from the handler's cached state when that is at
        least as new as the clinic stream's version (read now, unless the caller just read it:
        ``known_version``). A state this process appended since is newer, and is the one used."""
        version = known_version if known_version is not None \
            else await self.store.stream_version(f"clinic-{tenant_id}")
        return (await self.handler.load_clinic(tenant_id, known_version=version)).state  # type: ignore[no-any-return]


def services(state: State) -> AppServices:
    return state.services  # type: ignore[no-any-return]


def derive_mac_key(kek: bytes) -> bytes:
    return hashlib.sha256(b"alliance idempotency mac\x00" + kek).digest()


async def provide_principal(request: Request[Any, Any, Any], svc: AppServices) -> Principal:
    # Depends on ``svc`` so the two resolve one after the other: Litestar resolves
    # independent dependencies in a task group, which costs more than either of them.
    principal = await svc.tokens.authenticate(request)
    await require_active_staff(svc, principal)
    request.scope.setdefault("state", {})["principal_id"] = str(principal.id)
    return principal


async def require_active_staff(svc: AppServices, principal: Principal) -> None:
    """Staff are refused once deactivated (or given another role), even with a valid token;
    checked on every request, and again by open streams (``api/stream_guard.py``)."""
    if principal.is_staff:
        clinic = await svc.clinic(principal.tenant_id)
        active_role = clinic.staff.get(principal.id)
        if active_role is None:
            raise Forbidden("this staff account is not active in this clinic", code="staff_inactive")
        if active_role != principal.role:
            raise Forbidden("the token's role does not match this staff member's role", code="role_mismatch")


def provide_services(request: Request[Any, Any, Any]) -> AppServices:
    return services(request.app.state)


def now() -> datetime:
    return datetime.now(UTC)


ROLE_CLINICAL = (Role.CLINICIAN, Role.SUPERVISOR)
