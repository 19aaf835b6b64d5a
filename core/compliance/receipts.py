"""Signed receipts for agreements and consents, which the client keeps.

In the spirit of the Kantara consent receipt: a small signed JSON document that lets
a client prove what they agreed to and when, and that nobody changed it since.

A receipt (``format`` 1) holds the event id, stream, version, global position, type,
the event's chain hash (hex), the stream's chain head at issue time (version and
hash), recorded-at, tenant, subject and actor, the event's stored payload with the
personal fields blanked (what was agreed: goal id and version, consent scope and text
version — never personal words), the time of issue and the server's signature
(``core.compliance.signing``).

``verify_receipt`` checks the signature, then the store: the event is still there
with the same hash, its content still matches its digest, the chain from it still
verifies link by link up to the current head, and the head named in the receipt is
still part of that chain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from alliance.core.compliance.report import VerifyResult, break_code
from alliance.core.compliance.rows import EVENT_COLUMNS, Source, iso, snapshot
from alliance.core.compliance.signing import Keys, Signer, document_signature_problem, sign_document
from alliance.core.errors import NotFound
from alliance.core.events.codec import GENESIS_HASH
from alliance.core.events.envelope import RecordedEvent
from alliance.core.events.verify import check_event

RECEIPT_KIND = "alliance.receipt"
RECEIPT_FORMAT = 1

#: Event types that answer with a receipt: agreements (to a goal version, to a change)
#: and consent decisions.
RECEIPT_TYPES: frozenset[str] = frozenset({"goal.agreed", "goal.change_accepted", "consent.granted",
                                           "consent.withdrawn"})


def needs_receipt(event_type: str) -> bool:
    return event_type in RECEIPT_TYPES


def build_receipt(row: Any, *, head_version: int, head_hash: bytes, signer: Signer,
                  issued_at: datetime | None = None) -> dict[str, Any]:
    """A signed receipt from a stored event row (``rows.EVENT_COLUMNS``) and its stream head. Pure."""
    return sign_document({
        "kind": RECEIPT_KIND,
        "format": RECEIPT_FORMAT,
        "event_id": str(row["event_id"]),
        "stream_id": row["stream_id"],
        "version": row["version"],
        "position": row["position"],
        "type": row["type"],
        "event_hash": bytes(row["hash"]).hex(),
        "chain_head": {"version": head_version, "hash": bytes(head_hash).hex()},
        "recorded_at": iso(row["recorded_at"]),
        "occurred_at": iso(row["occurred_at"]),
        "tenant_id": str(row["tenant_id"]),
        "subject_id": str(row["subject_id"]),
        "actor_id": str(row["actor_id"]),
        "actor_role": row["actor_role"],
        # The stored payload has every personal field blanked: safe to hand out and to keep.
        "what": json.loads(bytes(row["payload"])),
        "issued_at": iso(issued_at or datetime.now(UTC)),
    }, signer)


async def issue_receipt(source: Source, event: UUID | RecordedEvent, signer: Signer, *,
                        issued_at: datetime | None = None) -> dict[str, Any]:
    """Read the stored event and its stream's head in one snapshot and sign a receipt.

    ``source``: an asyncpg pool or connection (or a ``PostgresEventStore``). Raises
    ``NotFound`` when no such event is stored (yet: readers see committed events only).
    """
    event_id = event.event_id if isinstance(event, RecordedEvent) else event
    async with snapshot(source) as conn:
        row = await conn.fetchrow(f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1", event_id)
        if row is None:
            raise NotFound(f"event {event_id} is not stored", code="event_not_found")
        head = await conn.fetchrow("SELECT version, head_hash FROM streams WHERE stream_id = $1",
                                   row["stream_id"])
    head_version, head_hash = (head["version"], bytes(head["head_hash"])) if head else (row["version"],
                                                                                       bytes(row["hash"]))
    return build_receipt(row, head_version=head_version, head_hash=head_hash, signer=signer,
                         issued_at=issued_at)


async def issue_receipts(source: Source, events: Sequence[RecordedEvent], signer: Signer, *,
                         issued_at: datetime | None = None) -> list[dict[str, Any]]:
    """Receipts for those of ``events`` that need one (``RECEIPT_TYPES``), in order."""
    return [await issue_receipt(source, e, signer, issued_at=issued_at)
            for e in events if needs_receipt(e.type)]


async def verify_receipt(receipt: dict[str, Any], source: Source, keys: Keys) -> VerifyResult:
    """Check a receipt's signature and that the store still holds what it names.

    Problem codes: ``malformed_receipt``, ``signature_missing``, ``unknown_signing_key``,
    ``signature_invalid``, ``event_missing``, ``event_moved`` (stream, version, position or
    type differ), ``event_hash_mismatch`` (the stored event's hash is not the receipt's: the
    event or one before it was rewritten), ``event_content_changed`` / ``chain_broken``
    (a stored event no longer matches its digest or link), ``head_rewritten`` (the head named
    in the receipt is no longer in the chain), ``stream_truncated``.
    """
    result = VerifyResult(kind="receipt")
    if receipt.get("kind") != RECEIPT_KIND or not isinstance(receipt.get("chain_head"), dict):
        result.add("malformed_receipt", "this is not an Alliance receipt")
        return result
    if (problem := document_signature_problem(receipt, keys)) is not None:
        result.add(problem, {"signature_missing": "the receipt carries no signature",
                             "unknown_signing_key": "the receipt is signed by a key this server never used",
                             "signature_invalid": "the receipt was changed after it was signed"}[problem])
    try:
        event_id = UUID(str(receipt["event_id"]))
        stream_id = str(receipt["stream_id"])
        version, position = int(receipt["version"]), int(receipt["position"])
        event_hash = bytes.fromhex(str(receipt["event_hash"]))
        head_version = int(receipt["chain_head"]["version"])
        head_hash = bytes.fromhex(str(receipt["chain_head"]["hash"]))
    except (KeyError, TypeError, ValueError):
        result.add("malformed_receipt", "the receipt lacks a field or has one of the wrong kind")
        return result
    where = {"stream_id": stream_id, "version": version, "position": position}
    async with snapshot(source) as conn:
        stored = await conn.fetchrow(f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1", event_id)
        if stored is None:
            result.add("event_missing", "the event this receipt names is no longer stored", **where)
            return result
        if (stored["stream_id"], stored["version"], stored["position"], stored["type"]) != \
                (stream_id, version, position, receipt.get("type")):
            result.add("event_moved", "the stored event sits elsewhere or has another type than the receipt "
                       f"says (now {stored['stream_id']} v{stored['version']} #{stored['position']} "
                       f"{stored['type']})", **where)
        if bytes(stored["hash"]) != event_hash:
            result.add("event_hash_mismatch", "the stored event's hash is not the one on the receipt: the event "
                       "or an earlier one in its stream was rewritten", **where)
        prev = await conn.fetchval("SELECT hash FROM events WHERE stream_id = $1 AND version = $2",
                                   stored["stream_id"], stored["version"] - 1) if stored["version"] > 1 \
            else GENESIS_HASH
        rows = await conn.fetch(f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version >= $2 "
                                "ORDER BY version", stored["stream_id"], stored["version"])
        head = await conn.fetchrow("SELECT version, head_hash FROM streams WHERE stream_id = $1",
                                   stored["stream_id"])
    result.details.update(events_checked=0, current_head_version=head["version"] if head else None)
    link = bytes(prev) if prev is not None else None
    expected = stored["version"]
    hashes: dict[int, bytes] = {}
    walked = True
    for row in rows:
        if link is None:
            result.add("chain_broken", "the event before this one is missing", **where)
            walked = False
            break
        reason = check_event(row, link, expected)
        if reason is not None:
            result.add(break_code(reason), reason, stream_id=row["stream_id"], version=row["version"],
                       position=row["position"])
            walked = False
            break
        link, expected = bytes(row["hash"]), expected + 1
        hashes[row["version"]] = link
        result.details["events_checked"] += 1
    last_version = expected - 1
    if not walked:
        return result
    if head_version > last_version:
        result.add("stream_truncated", f"the receipt saw the stream at version {head_version}; it now ends at "
                   f"{last_version}", stream_id=stream_id, version=head_version)
    elif head_version >= version and hashes.get(head_version, head_hash) != head_hash:
        result.add("head_rewritten", f"the stream's head at version {head_version} when the receipt was issued "
                   "is no longer in its chain: the stream's tail was rewritten", stream_id=stream_id,
                   version=head_version)
    if head is not None and result.ok and (head["version"], bytes(head["head_hash"])) != (last_version, link):
        result.add("chain_broken", "the stream's head row does not name the end of its chain",
                   stream_id=stream_id, version=head["version"])
    return result

