"""Who may read a client's records, and the access log of every staff read.

A client (or their proxy) sees only their own records. A clinician sees the
clients whose care team they are on, in their clinic: the primary clinician
always, the rest of the team only while the client's consent to share with the
care team is in force. An auditor reads history only. Nobody crosses a clinic:
a foreign or unknown client answers 404, so existence does not leak.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import asyncpg

from alliance.api.auth import Principal
from alliance.core.client import ClientState
from alliance.core.consent import ConsentScope
from alliance.core.errors import Forbidden, NotFound
from alliance.core.identity import Role

ReadKind = Literal["plan", "progress", "history", "goal", "export", "admin", "stream", "fhir"]


def client_not_found() -> NotFound:
    return NotFound("no such client", code="client_not_found", field="client_id")


def authorize_client(principal: Principal, client: ClientState, kind: ReadKind, *, now: datetime) -> None:
    if not client.enrolled or client.tenant_id != principal.tenant_id:
        raise client_not_found()
    match principal.role:
        case Role.CLIENT:
            if principal.id != client.client_id:
                raise client_not_found()
            if kind in {"admin"}:
                raise Forbidden("clients cannot do clinic set-up", code="role_not_allowed")
        case Role.PROXY:
            if principal.id not in client.proxies:
                raise client_not_found()
            if kind in {"admin"}:
                raise Forbidden("proxies cannot do clinic set-up", code="role_not_allowed")
        case Role.CLINICIAN | Role.SUPERVISOR:
            if kind == "admin":
                raise Forbidden("clinic set-up is for admins", code="admin_only")
            if principal.id == client.primary_clinician:
                return
            if principal.id not in client.care_team:
                raise Forbidden("you are not on this client's care team", code="not_on_care_team")
            if not client.consent_in_force(ConsentScope.CARE_TEAM_SHARING, now):
                raise Forbidden("the client has not consented to share with the care team",
                                code="care_team_sharing_not_consented")
        case Role.AUDITOR:
            if kind not in {"history", "export"}:
                raise Forbidden("auditors read decision history only", code="auditor_history_only")
        case Role.ADMIN:
            if kind not in {"admin"}:
                raise Forbidden("admins manage the clinic; clinical records are for the care team",
                                code="admin_no_clinical_access")
        case _:
            raise client_not_found()


async def record_access(pool: asyncpg.Pool, principal: Principal, client_id: UUID, *, method: str, route: str,
                        status: int) -> None:
    """Append one row to the access log (staff reads only)."""
    if not principal.is_staff:
        return
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO access_log (tenant_id, actor_id, actor_role, client_id, method, route, status) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            principal.tenant_id, principal.id, str(principal.role), client_id, method, route, status)
