"""Plan, progress and history as of a moment, replayed from the store (never from tables).

``as_of`` is a datetime (what had been *recorded* by then: ``recorded_until``) or a
checkpoint string from the store (everything up to and including that position).
The folds are the projections' own pure functions, so an as-of view of "now"
equals the live view.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from alliance.core.events.store import EventStore
from alliance.core.projections.base import Projection
from alliance.core.projections.history import HISTORY, render_history
from alliance.core.projections.plan import PLAN, render_plan
from alliance.core.projections.progress import PROGRESS, Instruments, render_progress


async def document_as_of(store: EventStore, projection: Projection[Any], client_id: UUID,
                         as_of: datetime | str, *, tenant_id: UUID | None = None) -> Any | None:
    """Fold the client's events up to ``as_of`` with ``projection.apply``; None if there were none."""
    recorded_until = as_of if isinstance(as_of, datetime) else None
    until = as_of if isinstance(as_of, str) else None
    ctx = projection.context()
    doc = None
    # What is committed now, from one snapshot: not held back by the store's read horizon
    # (a long transaction elsewhere on the server would otherwise hide the latest events).
    for event in await store.read_subject(client_id, tenant_id=tenant_id, recorded_until=recorded_until,
                                          until=until):
        if projection.wants(event):
            if doc is None:
                doc = projection.initial(client_id, event.tenant_id)
            doc = projection.apply(doc, event, ctx)
    return doc


def _moment(as_of: datetime | str) -> datetime:
    return as_of if isinstance(as_of, datetime) else datetime.now(UTC)


async def plan_as_of(store: EventStore, client_id: UUID, as_of: datetime | str, *,
                     tenant_id: UUID | None = None) -> dict[str, Any] | None:
    """The plan as it stood at ``as_of`` (due/overdue and consents judged at that moment)."""
    doc = await document_as_of(store, PLAN, client_id, as_of, tenant_id=tenant_id)
    return render_plan(doc, now=_moment(as_of)) if doc is not None else None


async def progress_as_of(store: EventStore, client_id: UUID, as_of: datetime | str, *,
                         tenant_id: UUID | None = None, goal_id: UUID | None = None,
                         instruments: Instruments | None = None) -> dict[str, Any] | None:
    doc = await document_as_of(store, PROGRESS, client_id, as_of, tenant_id=tenant_id)
    return render_progress(doc, instruments=instruments, goal_id=goal_id) if doc is not None else None


async def history_as_of(store: EventStore, client_id: UUID, as_of: datetime | str, *,
                        tenant_id: UUID | None = None, goal_id: UUID | None = None) -> dict[str, Any] | None:
    doc = await document_as_of(store, HISTORY, client_id, as_of, tenant_id=tenant_id)
    return render_history(doc, goal_id=goal_id) if doc is not None else None
