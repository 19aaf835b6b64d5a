"""What the trials read straight from the private cluster (as its superuser): the store's
own record of what was stored, and who holds the projection leadership."""

from __future__ import annotations

import uuid
from collections import Counter

import asyncpg


async def measurement_counts(dsn: str, client_ids: list[uuid.UUID]) -> Counter[str]:
    """How many ``measurement.recorded`` events each measurement id has on these clients."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT convert_from(payload, 'UTF8')::jsonb ->> 'measurement_id' AS m, count(*) AS n FROM events "
            "WHERE type = 'measurement.recorded' AND subject_id = ANY($1::uuid[]) GROUP BY 1", client_ids)
    finally:
        await conn.close()
    return Counter({r["m"]: int(r["n"]) for r in rows})


def advisory_ids(key: int) -> tuple[int, int]:
    """(classid, objid) under which pg_locks shows a bigint advisory lock key."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


async def lock_holders(dsn: str, keys: list[int]) -> list[tuple[int, int]]:
    """(backend pid, client port) of every session holding one of these advisory locks."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        ids = [advisory_ids(k) for k in keys]
        rows = await conn.fetch(
            "SELECT DISTINCT l.pid, a.client_port FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND (l.classid::bigint, l.objid::bigint) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))",
            [i[0] for i in ids], [i[1] for i in ids])
    finally:
        await conn.close()
    return [(int(r["pid"]), int(r["client_port"])) for r in rows]
