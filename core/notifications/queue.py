"""The dispatcher's tables: its checkpoint, the notification queue and the flag watch.

``fold`` turns a page of store events into rows and advances the checkpoint in one
transaction, fenced like the projection runner's: the update names the checkpoint this
dispatcher last wrote, so a deposed leader's late commit changes nothing. Every write
is idempotent and only moves a row forward, so re-folding a page after a crash is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from alliance.core.events.envelope import RecordedEvent
from alliance.core.events.store import START
from alliance.core.notifications.events import (
    EscalationDecided,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
)

RISK_FLAG_RAISED_EVENT = "risk.flag_raised"
RISK_FLAG_ACKNOWLEDGED_EVENT = "risk.flag_acknowledged"
ERASURE_EVENT = "erasure.completed"


class CheckpointMoved(Exception):
    """The stored checkpoint is not the one this dispatcher wrote last (another writer)."""


async def load_checkpoint(conn: asyncpg.Connection, name: str) -> str:
    await conn.execute("INSERT INTO notification_checkpoints (name, checkpoint) VALUES ($1, $2) "
                       "ON CONFLICT (name) DO NOTHING", name, START)
    return str(await conn.fetchval("SELECT checkpoint FROM notification_checkpoints WHERE name = $1", name))


async def fold(conn: asyncpg.Connection, name: str, *, after: str, events: Sequence[RecordedEvent]) -> str:
    """Apply ``events`` (the page after checkpoint ``after``) to the tables; the new checkpoint."""
    new = events[-1].checkpoint
    requested: list[tuple[UUID, UUID, datetime]] = []
    sent: list[UUID] = []
    failed: list[tuple[UUID, int, datetime | None, bool]] = []
    raised: list[tuple[UUID, UUID, UUID, datetime]] = []
    acknowledged: list[UUID] = []
    escalated: list[UUID] = []
    erased: list[UUID] = []
    for e in events:
        p: Any = e.payload
        if isinstance(p, NotificationRequested):
            requested.append((p.notification_id, e.tenant_id, p.requested_at))
        elif isinstance(p, NotificationSent):
            sent.append(p.notification_id)
        elif isinstance(p, NotificationFailed):
            failed.append((p.notification_id, p.attempt, p.retry_at, p.final))
        elif isinstance(p, EscalationDecided):
            escalated.append(p.flag_id)
        elif e.type == RISK_FLAG_RAISED_EVENT:
            raised.append((p.flag_id, e.tenant_id, e.subject_id, p.raised_at))
        elif e.type == RISK_FLAG_ACKNOWLEDGED_EVENT:
            acknowledged.append(p.flag_id)
        elif e.type == ERASURE_EVENT:
            erased.append(e.subject_id)
    async with conn.transaction():
        moved = await conn.fetchval(
            "UPDATE notification_checkpoints SET checkpoint = $3, updated_at = now() "
            "WHERE name = $1 AND checkpoint = $2 RETURNING name", name, after, new)
        if moved is None:
            raise CheckpointMoved(name)
        if requested:
            await conn.executemany(
                "INSERT INTO notification_queue (notification_id, tenant_id, due_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (notification_id) DO NOTHING", requested)
        for nid, attempt, retry_at, final in failed:
            await record_failure(conn, nid, attempt, retry_at, final=final)
        if sent:
            await conn.execute("UPDATE notification_queue SET state = 'sent', updated_at = now() "
                               "WHERE notification_id = ANY($1::uuid[]) AND state = 'pending'", sent)
        if raised:
            await conn.executemany(
                "INSERT INTO risk_flag_watch (flag_id, tenant_id, client_id, raised_at) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (flag_id) DO NOTHING", raised)
        if acknowledged:
            await conn.execute("UPDATE risk_flag_watch SET state = 'acknowledged' "
                               "WHERE flag_id = ANY($1::uuid[])", acknowledged)
        if escalated:
            await mark_escalated(conn, escalated)
        if erased:  # nothing left to act on: the client's record is gone
            await conn.execute("UPDATE risk_flag_watch SET state = 'acknowledged' "
                               "WHERE client_id = ANY($1::uuid[]) AND state = 'open'", erased)
    return new


async def record_failure(conn: asyncpg.Connection, notification_id: UUID, attempt: int,
                         retry_at: datetime | None, *, final: bool) -> None:
    if final or retry_at is None:
        await conn.execute("UPDATE notification_queue SET state = 'given_up', attempts = GREATEST(attempts, $2), "
                           "updated_at = now() WHERE notification_id = $1 AND state = 'pending'",
                           notification_id, attempt)
    else:
        await conn.execute("UPDATE notification_queue SET attempts = $2, due_at = $3, updated_at = now() "
                           "WHERE notification_id = $1 AND state = 'pending' AND attempts < $2",
                           notification_id, attempt, retry_at)


async def record_sent(conn: asyncpg.Connection, notification_id: UUID, attempt: int) -> None:
    await conn.execute("UPDATE notification_queue SET state = 'sent', attempts = GREATEST(attempts, $2), "
                       "updated_at = now() WHERE notification_id = $1 AND state = 'pending'",
                       notification_id, attempt)


async def mark_escalated(conn: asyncpg.Connection, flag_ids: Sequence[UUID]) -> None:
    await conn.execute("UPDATE risk_flag_watch SET state = 'escalated' "
                       "WHERE flag_id = ANY($1::uuid[]) AND state = 'open'", list(flag_ids))


async def mark_closed(conn: asyncpg.Connection, flag_id: UUID) -> None:
    """The client's stream says the flag is acknowledged (or gone): stop watching it."""
    await conn.execute("UPDATE risk_flag_watch SET state = 'acknowledged' WHERE flag_id = $1 AND state = 'open'",
                       flag_id)


async def due_notifications(conn: asyncpg.Connection, now: datetime, limit: int) -> list[UUID]:
    rows = await conn.fetch("SELECT notification_id FROM notification_queue WHERE state = 'pending' "
                            "AND due_at <= $1 ORDER BY due_at LIMIT $2", now, limit)
    return [r[0] for r in rows]


async def open_flags(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch("SELECT flag_id, tenant_id, client_id, raised_at FROM risk_flag_watch "
                                 "WHERE state = 'open' ORDER BY raised_at LIMIT $1", limit))
