"""Reading the live views: one round trip to the active version's document, rendered here.

Documents with parts (history, progress) come back as their head row and item rows in one
round trip (``projections.active_parts``) and are reassembled with the projection's layout.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from core.projections.base import Projection
from core.projections.history import HISTORY, HistoryDoc, render_history
from core.projections.plan import PLAN, PlanDoc, render_plan
from core.projections.progress import PROGRESS, Instruments, ProgressDoc, render_progress


class _Rendered:
    """Rendered views by the exact stored bytes they were rendered from (per process, bounded).

    A read still fetches the document (one round trip), but when its bytes are the ones last
    rendered for that key — the common case for a view polled by a frontend — decoding and
    rendering are skipped. Keyed by the bytes themselves, so there is nothing to invalidate:
    any change (a new event, an erasure) changes them.
    """

    def __init__(self, size: int = 5_000) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = OrderedDict()

    def get(self, key: tuple[Any, ...], source: Any) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != source:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: tuple[Any, ...], source: Any, view: dict[str, Any]) -> dict[str, Any]:
        self._entries[key] = (source, view)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return view


_rendered = _Rendered()

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
    data = await _document(pool, PLAN.name, client_id, tenant_id)
    if data is None:
        return None
    moment = now or datetime.now(UTC)
    key = ("plan", client_id, tenant_id, moment.date())  # due/overdue change with the date only
    cached = _rendered.get(key, data)
    if cached is not None and (cached["_valid_until"] is None or moment < cached["_valid_until"]):
        return {k: v for k, v in cached.items() if k != "_valid_until"} | {"as_of": moment.isoformat()}
    doc = PLAN.decode(data)
    view = render_plan(doc, now=moment)
    # consents in force are computed at ``now``: a consent taking effect later ends the reuse
    later = [c.effective_at for c in doc.consents if c.effective_at > moment]
    _rendered.put(key, data, {**view, "_valid_until": min(later) if later else None})
    return view


async def read_progress(pool: asyncpg.Pool, client_id: UUID, *, tenant_id: UUID | None = None,
                        goal_id: UUID | None = None, instruments: Instruments | None = None
                        ) -> dict[str, Any] | None:
    async with pool.acquire() as conn:
        rows = await conn.fetch(_PARTS, PROGRESS.name, client_id, tenant_id)
    if not rows or rows[0][0] != -1:
        return None
    source = tuple(tuple(r) for r in rows)
    key = ("progress", client_id, tenant_id, goal_id, id(instruments))
    cached = _rendered.get(key, source)
    if cached is not None:
        return cached
    assert PROGRESS.layout is not None
    doc, _ = PROGRESS.layout.assemble(PROGRESS.decode(rows[0][2]), (tuple(r) for r in rows[1:]))
    return _rendered.put(key, source, render_progress(doc, instruments=instruments, goal_id=goal_id))


async def read_history(pool: asyncpg.Pool, client_id: UUID, *, tenant_id: UUID | None = None,
                       goal_id: UUID | None = None) -> dict[str, Any] | None:
    doc = await history_document(pool, client_id, tenant_id=tenant_id)
    return render_history(doc, goal_id=goal_id) if doc is not None else None
