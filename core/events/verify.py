"""Walk the store and check every stream's hash chain (``alliance verify``).

For each event, in stream order: the content digest is recomputed from the
stored columns (``codec.content_digest``) and compared with the stored digest;
the chain link ``sha256(prev || digest || position || tx || recorded_at)`` is
recomputed and compared with the stored hash; versions must run 1, 2, 3… with
no gap; and the stream head must name the last event's hash and version. The
first break is reported with its stream, version and position.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import msgspec

from alliance.core.events.codec import GENESIS_HASH, chain_hash, content_digest


class Break(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    version: int
    position: int | None
    reason: str


class VerifyReport(msgspec.Struct, kw_only=True):
    events_checked: int = 0
    streams_checked: int = 0
    first_break: Break | None = None
    #: Last hash of each stream (the chain heads), for anchoring and exports.
    heads: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.first_break is None


_SQL = ("SELECT stream_id, version, position, tx_id::text::bigint AS tx, event_id, type, schema_version, "
        "tenant_id, subject_id, actor_id, actor_role, occurred_at, recorded_at, correlation_id, "
        "causation_id, key_id, hash_scheme, payload, secret, digest, hash "
        "FROM events ORDER BY stream_id, version")


def check_event(row: asyncpg.Record | dict, prev_hash: bytes, expected_version: int) -> str | None:
    """Why this stored event breaks its chain, or None when it holds."""
    if row["version"] != expected_version:
        return f"version {row['version']} where {expected_version} was expected (an event is missing or moved)"
    digest = content_digest(
        event_id=row["event_id"], stream_id=row["stream_id"], version=row["version"], type_name=row["type"],
        schema_version=row["schema_version"], tenant_id=row["tenant_id"], subject_id=row["subject_id"],
        actor_id=row["actor_id"], actor_role=row["actor_role"], occurred_at=row["occurred_at"],
        correlation_id=row["correlation_id"], causation_id=row["causation_id"], key_id=row["key_id"],
        hash_scheme=row["hash_scheme"], payload=row["payload"], secret=row["secret"])
    if digest != row["digest"]:
        return "stored content does not match its digest (an envelope field or the payload was changed)"
    if chain_hash(prev_hash, digest, row["position"], row["tx"], row["recorded_at"]) != row["hash"]:
        return "hash chain broken (position, transaction, recorded-at, digest or an earlier event changed)"
    return None


async def verify_store(conn: asyncpg.Connection, *, progress: Callable[[int], None] | None = None,
                       batch: int = 2000) -> VerifyReport:
    report = VerifyReport()
    heads = {r["stream_id"]: (r["version"], bytes(r["head_hash"]))
             for r in await conn.fetch("SELECT stream_id, version, head_hash FROM streams")}
    stream: str | None = None
    prev = GENESIS_HASH
    expected = 1

    def close_stream() -> Break | None:
        if stream is None:
            return None
        report.heads[stream] = prev.hex()
        head = heads.pop(stream, None)
        if head is None:
            return Break(stream_id=stream, version=expected - 1, position=None, reason="stream has no head row")
        if head != (expected - 1, prev):
            return Break(stream_id=stream, version=head[0], position=None,
                         reason=f"stream head says version {head[0]}, the chain ends at {expected - 1}")
        return None

    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor(_SQL, prefetch=batch):
            if row["stream_id"] != stream:
                if (broken := close_stream()) is not None:
                    report.first_break = broken
                    return report
                stream, prev, expected = row["stream_id"], GENESIS_HASH, 1
                report.streams_checked += 1
            reason = check_event(row, prev, expected)
            if reason is not None:
                report.first_break = Break(stream_id=row["stream_id"], version=row["version"],
                                           position=row["position"], reason=reason)
                return report
            prev, expected = bytes(row["hash"]), expected + 1
            report.events_checked += 1
            if progress is not None and report.events_checked % batch == 0:
                progress(batch)
        if (broken := close_stream()) is not None:
            report.first_break = broken
            return report
    for orphan, (version, _) in sorted(heads.items()):
        if version > 0:
            report.first_break = Break(stream_id=orphan, version=version, position=None,
                                       reason="stream head names events that are not there")
            return report
    return report
