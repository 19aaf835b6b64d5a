"""An Idempotency-Key claim commits without waiting for a WAL flush (issue 18: one flush fewer
per keyed POST), and only the claim: its transaction alone turns synchronous_commit off, so the
append and the stored answer that follow still wait for theirs (and so make the claim durable)."""

from __future__ import annotations

import uuid

import asyncpg

from alliance.api.idempotency import _CLAIM


async def test_the_claim_alone_commits_without_a_flush_and_claims_once(database):
    conn = await asyncpg.connect(database.app_dsn)
    try:
        claim = (uuid.uuid4(), uuid.uuid4(), "digest-" + uuid.uuid4().hex, "POST", "/clients/{id}/measurements",
                 b"mac", 42)
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
        async with conn.transaction():
            assert await conn.fetchval(_CLAIM, *claim) is True
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
        assert await conn.fetchval("SHOW synchronous_commit") == "on"  # SET LOCAL: the next statement flushes
        assert await conn.fetchval(_CLAIM, *claim) is None  # the key is taken: the second claim gets nothing
        row = await conn.fetchrow("SELECT method, route, body_mac, owner, status FROM idempotency_keys "
                                  "WHERE tenant_id = $1 AND principal_id = $2 AND key = $3", *claim[:3])
        assert (row["method"], row["route"], bytes(row["body_mac"]), row["owner"], row["status"]) == (
            "POST", "/clients/{id}/measurements", b"mac", 42, None)
    finally:
        await conn.close()
