"""Reading the live views: one round trip to the active version's document, rendered here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from core.projections.history import HISTORY, HistoryDoc, render_history
from core.projections.plan import PLAN, PlanDoc, render_plan
from core.projections.progress import PROGRESS, Instruments, ProgressDoc, render_progress

_DOCUMENT = "SELECT doc FROM projections.active_document($1, $2, $3)"


async def _document(pool: asyncpg.Pool, name: str, client_id: UUID, tenant_id: UUID | None) -> bytes | None:
    async with pool.acquire() as conn:
        return await conn.fetchval(_DOCUMENT, name, client_id, tenant_id)  # type: ignore[no-any-return]


async def plan_document(pool: asyncpg.Pool, client_id: UUID, *, tenant_id: UUID | None = None
                        ) -> PlanDoc | None:
    data = await _document(pool, PLAN.name, client_id, tenant_id)
    return PLAN.decode(data) if data is not None else None


async def progress_document(pool: asyncpg.Pool, client_id: UUID, *, tenant_id: UUID | None = None
                            ) -> ProgressDoc | None:
    data = await _document(pool, PROGRESS.name, client_id, tenant_id)
    return PROGRESS.decode(data) if data is not None else None


async def history_document(pool: asyncpg.Pool, client_id: UUID, *, tenant_id: UUID | None = None
                           ) -> HistoryDoc | None:
    data = await _document(pool, HISTORY.name, client_id, tenant_id)
    return HISTORY.decode(data) if data is not None else None


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
