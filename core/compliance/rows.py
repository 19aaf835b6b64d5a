"""Stored event rows as the compliance checks read them, and their JSON form in exports.

Rows carry every column ``core.events.verify.check_event`` needs, so the same check
runs against the database and, after a JSON round trip, offline against an export.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

EVENT_COLUMNS = ("stream_id, version, position, tx_id::text::bigint AS tx, event_id, type, schema_version, "
                 "tenant_id, subject_id, actor_id, actor_role, occurred_at, recorded_at, correlation_id, "
                 "causation_id, key_id, hash_scheme, payload, secret, digest, hash")

#: Anything rows can be read from: a pool, a connection, or a store holding a pool.
Source = Any


@contextlib.asynccontextmanager
async def snapshot(source: Source) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside one read-only, repeatable-read transaction (one consistent view)."""
    # PostgresEventStore keeps its pool private; accepting the store saves every caller
    # from reaching for it.
    source = getattr(source, "_pool", source)
    if isinstance(source, asyncpg.Pool):
        async with source.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn
    elif conn_in_transaction(source):
        yield source
    else:
        async with source.transaction(isolation="repeatable_read", readonly=True):
            yield source


def conn_in_transaction(conn: Any) -> bool:
    probe = getattr(conn, "is_in_transaction", None)
    return bool(probe()) if callable(probe) else False


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds: exact, so digests recompute from the text."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(bytes(data)).decode()


def _uuid(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def row_to_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An event row as stored, in JSON: bytes as base64 (payload, secret), hashes as hex."""
    return {
        "event_id": str(row["event_id"]), "stream_id": row["stream_id"], "version": row["version"],
        "position": row["position"], "tx_id": int(row["tx"]), "type": row["type"],
        "schema_version": row["schema_version"], "tenant_id": str(row["tenant_id"]),
        "subject_id": str(row["subject_id"]), "actor_id": str(row["actor_id"]),
        "actor_role": row["actor_role"], "occurred_at": iso(row["occurred_at"]),
        "recorded_at": iso(row["recorded_at"]), "correlation_id": _uuid(row["correlation_id"]),
        "causation_id": _uuid(row["causation_id"]), "key_id": _uuid(row["key_id"]),
        "hash_scheme": row["hash_scheme"], "payload_b64": _b64(row["payload"]),
        "secret_b64": _b64(row["secret"]), "digest": bytes(row["digest"]).hex(),
        "hash": bytes(row["hash"]).hex(),
    }


def json_to_row(item: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of ``row_to_json``: a row ``check_event`` accepts. Raises on malformed input."""

    def opt_uuid(name: str) -> UUID | None:
        value = item.get(name)
        return None if value is None else UUID(str(value))

    secret = item.get("secret_b64")
    return {
        "event_id": UUID(str(item["event_id"])), "stream_id": str(item["stream_id"]),
        "version": int(item["version"]), "position": int(item["position"]), "tx": int(item["tx_id"]),
        "type": str(item["type"]), "schema_version": int(item["schema_version"]),
        "tenant_id": UUID(str(item["tenant_id"])), "subject_id": UUID(str(item["subject_id"])),
        "actor_id": UUID(str(item["actor_id"])), "actor_role": str(item["actor_role"]),
        "occurred_at": datetime.fromisoformat(str(item["occurred_at"])),
        "recorded_at": datetime.fromisoformat(str(item["recorded_at"])),
        "correlation_id": opt_uuid("correlation_id"), "causation_id": opt_uuid("causation_id"),
        "key_id": opt_uuid("key_id"), "hash_scheme": int(item["hash_scheme"]),
        "payload": base64.b64decode(str(item["payload_b64"]), validate=True),
        "secret": None if secret is None else base64.b64decode(str(secret), validate=True),
        "digest": bytes.fromhex(str(item["digest"])), "hash": bytes.fromhex(str(item["hash"])),
    }
