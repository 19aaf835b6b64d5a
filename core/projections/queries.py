"""Reading the live views: one round trip to the active version's document, rendered here.

Documents with parts (history, progress) come back as their head row and item rows in one
round trip (``projections.active_parts``) and are reassembled with the projection's layout.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from core.projections.base import Projection
from core.projections.history import HISTORY, HistoryDoc, render_history
from core.projections.plan import PLAN, PlanDoc, render_plan
from core.projections.progress import PROGRESS, Instruments, ProgressDoc, render_progress

_DOCUMENT = "SELECT doc FROM projections.active_document($1, $2, $3)"
_PARTS = "SELECT part, ord, data FROM projections.active_parts($1, $2, $3)"


async def _document(pool: asyncpg.Pool, name: str, client_id: UUID, tenant_id: UUID | None) -> bytes | None:
    async with pool.acquire() as conn:
        return await conn.fetchval(_DOCUMENT, name, client_id, tenant_id)  # type: ignore[no-any-return]


async def read_document(pool: asyncpg.Pool, projection: Projection[Any], client_id: UUID,
                        tenant_id: UUID | None = None) -> Any | None:
    """The active version's document of one client (None: none, or not in this tenant)."""
    if not projection.layout:
        data = await _document(pool, projection.name, client_id, tenant_id)
        return projection.decode(data) if data is not None else None
    async with pool.acquire() as conn:
        rows = await conn.fetch(_PARTS, projection.name, client_id, tenant_id)
    if not rows or rows[0][0] != -1:
        return None
    doc, _ = projection.layout.assemble(projection.decode(rows[0][2]), (tuple(r) for r in rows[1:]))
    return doc


async def plan_document(pool: asyncpg.Pool, client_id: UUID, *, tenant_id: UUID | None = None
                        ) -> PlanDoc | None:
    data = await _document(pool, PLAN.name, client_id, tenant_id)
    return PLAN.decode(data) if data is not None else None


async def progress_document(pool: asyncpg.Pool, client_id: UUID, *, tenant_id: UUID | None = None
                            ) -> ProgressDoc | None:
    return await read_document(pool, PROGRESS, client_id, tenant_id)  # type: ignore[no-any-return]


async def history_document(pool: asyncpg.Pool, client_id: UUID, *, tenant_id: UUID | None = None
                           ) -> HistoryDoc | None:
    return await read_document(pool, HISTORY, client_id, tenant_id)  # type: ignore[no-any-return]


async def read_plan(pool: asyncpg.Pool, client_id: UUID, *, tenant_id: UUID | None = None,
                    now: datetime | None = None) -> dict[str, Any] | None:
    """The client's current plan (None: no such client in this tenant, or not projected yet)."""
    doc = await plan_document(pool, client_id, tenant_id=tenant_id)
    return render_plan(doc, now=now or datetime.now(UTC)) if doc is not None else None


async def read_progress(pool: asyncpg.Pool, client_id: UUID, *, tenant_id: UUID | None = None,
                        goal_id: UUID | None = None, instruments: Instruments | None = None
                        ) -> dict[str, Any] | None:
    doc = await progress_document(pool, client_id, tenant_id=tenant_id)
    return render_progress(doc, instruments=instruments, goal_id=goal_id) if doc is not None else None


async def read_history(pool: asyncpg.Pool, client_id: UUID, *, tenant_id: UUID | None = None,
                       goal_id: UUID | None = None) -> dict[str, Any] | None:
    doc = await history_document(pool, client_id, tenant_id=tenant_id)
    return render_history(doc, goal_id=goal_id) if doc is not None else None
