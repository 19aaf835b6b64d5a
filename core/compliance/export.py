"""Signed history export for one client, verifiable offline by an auditor.

The export holds every event of every stream the client is the subject of — whole
streams from version 1, so the chains recompute — exactly as stored: the envelope,
the payload bytes and the sealed personal fields (``secret``) in base64, the digest
and the chain hash in hex. Personal fields therefore stay encrypted: the export proves
the history without revealing the client's words (and an erased client's words cannot
be recovered from it). With ``store=`` the decoded payloads are added as ``data`` for
reading (personal fields decrypted, or shown erased).

Document (``format`` 1)::

    {"kind": "alliance.history_export", "format": 1, "client_id": ..., "tenant_id": ...,
     "exported_at": ..., "hash_scheme": 1,
     "streams": {"<stream id>": {"version": n, "head_hash": "<hex>"}},
     "events": [{"event_id", "stream_id", "version", "position", "tx_id", "type",
                 "schema_version", "tenant_id", "subject_id", "actor_id", "actor_role",
                 "occurred_at", "recorded_at", "correlation_id", "causation_id", "key_id",
                 "hash_scheme", "payload_b64", "secret_b64", "digest", "hash", ["data"]}, ...],
     "verification": {"ok": ..., "events_checked": ..., "streams_checked": ..., "problems": [...]},
     "signature": {"alg": "EdDSA", "kid": ..., "value": ...}}

``verify_export_file`` needs no database: it checks the signature, that each stream is
complete from version 1, recomputes every digest and chain link with
``core.events.codec`` (through ``core.events.verify.check_event``) and compares the end
of each chain with the exported head.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from alliance.core.compliance.report import VerifyResult, break_code
from alliance.core.compliance.rows import EVENT_COLUMNS, Source, iso, json_to_row, row_to_json, snapshot
from alliance.core.compliance.signing import Keys, Signer, document_signature_problem, sign_document
from alliance.core.events.codec import GENESIS_HASH
from alliance.core.events.verify import check_event

EXPORT_KIND = "alliance.history_export"
EXPORT_FORMAT = 1


def _check_streams(events: list[dict[str, Any]], heads: Mapping[str, Any], result: VerifyResult) -> None:
    """Recompute every stream's chain from rows (``json_to_row`` form); add problems to ``result``."""
    by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in events:
        by_stream[row["stream_id"]].append(row)
    checked = 0
    for stream_id in sorted(set(by_stream) | set(heads)):
        rows = sorted(by_stream.get(stream_id, []), key=lambda r: r["version"])
        if not rows:
            result.add("stream_incomplete", "a stream head is listed but none of its events is",
                       stream_id=stream_id)
            continue
        if rows[0]["version"] != 1:
            result.add("stream_incomplete", f"the stream starts at version {rows[0]['version']}, not 1",
                       stream_id=stream_id, version=rows[0]["version"], position=rows[0]["position"])
            continue
        prev, expected = GENESIS_HASH, 1
        broken = False
        for row in rows:
            reason = check_event(row, prev, expected)
            if reason is not None:
                result.add(break_code(reason), reason, stream_id=stream_id, version=row["version"],
                           position=row["position"])
                broken = True
                break
            prev, expected = row["hash"], expected + 1
            checked += 1
        head = heads.get(stream_id)
        if broken:
            continue
        if head is None:
            result.add("head_missing", "the stream's head is not listed", stream_id=stream_id)
        elif (int(head["version"]), str(head["head_hash"])) != (expected - 1, prev.hex()):
            result.add("head_mismatch", f"the listed head (version {head['version']}) is not where the chain ends "
                       f"(version {expected - 1})", stream_id=stream_id, version=int(head["version"]))
    result.details["events_checked"] = result.details.get("events_checked", 0) + checked
    result.details["streams_checked"] = len(set(by_stream) | set(heads))


async def build_export(source: Source, client_id: UUID, signer: Signer, *, tenant_id: UUID | None = None,
                       store: Any = None, now: datetime | None = None) -> dict[str, Any]:
    """The signed history export of ``client_id`` (every stream it is the subject of, whole).

    ``source``: pool, connection or ``PostgresEventStore``. ``tenant_id`` confines the export
    to one clinic. ``store``: an ``EventStore``; when given, each event also carries its
    decoded payload as ``data`` (personal fields decrypted, or erased).
    """
    async with snapshot(source) as conn:
        if tenant_id is None:
            stream_ids = [r[0] for r in await conn.fetch(
                "SELECT DISTINCT stream_id FROM events WHERE subject_id = $1 ORDER BY 1", client_id)]
        else:
            stream_ids = [r[0] for r in await conn.fetch(
                "SELECT DISTINCT stream_id FROM events WHERE subject_id = $1 AND tenant_id = $2 ORDER BY 1",
                client_id, tenant_id)]
        rows = await conn.fetch(f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($1::text[]) "
                                "ORDER BY stream_id, version", stream_ids)
        heads = await conn.fetch("SELECT stream_id, version, head_hash, tenant_id FROM streams "
                                 "WHERE stream_id = ANY($1::text[]) ORDER BY stream_id", stream_ids)
    events = [row_to_json(r) for r in rows]
    if store is not None:
        decoded: dict[UUID, Any] = {}
        for stream_id in stream_ids:
            for recorded in await store.read_stream(stream_id):
                decoded[recorded.event_id] = msgspec.to_builtins(recorded.payload)
        for item in events:
            if (data := decoded.get(UUID(item["event_id"]))) is not None:
                item["data"] = data
    streams = {h["stream_id"]: {"version": h["version"], "head_hash": bytes(h["head_hash"]).hex()}
               for h in heads}
    check = VerifyResult(kind="export")
    _check_streams([dict(r) for r in rows], streams, check)
    tenants = sorted({str(h["tenant_id"]) for h in heads})
    return sign_document({
        "kind": EXPORT_KIND, "format": EXPORT_FORMAT, "client_id": str(client_id),
        "tenant_id": str(tenant_id) if tenant_id else (tenants[0] if len(tenants) == 1 else None),
        "exported_at": iso(now or datetime.now(UTC)), "hash_scheme": 1,
        "streams": streams, "events": events,
        "verification": {"ok": check.ok, "events_checked": check.details.get("events_checked", 0),
                         "streams_checked": check.details.get("streams_checked", 0),
                         "problems": msgspec.to_builtins(check.problems)},
    }, signer)


def verify_export_file(document: Mapping[str, Any] | bytes | str | Path, keys: Keys) -> VerifyResult:
    """Verify an export offline: signature, completeness, every digest and link, the heads.

    Problem codes: ``malformed_export``, ``signature_missing``, ``unknown_signing_key``,
    ``signature_invalid``, ``malformed_event``, ``stream_incomplete`` (does not start at
    version 1), ``event_missing_or_moved`` (a gap), ``event_content_changed``, ``chain_broken``,
    ``head_missing``, ``head_mismatch``,
    ``recorded_verification_failed`` (the server already found a break when exporting).
    """
    result = VerifyResult(kind="export")
    if isinstance(document, Path):
        document = document.read_bytes()
    if isinstance(document, bytes | str):
        try:
            document = json.loads(document)
        except ValueError:
            result.add("malformed_export", "the export is not JSON")
            return result
    if not isinstance(document, Mapping) or document.get("kind") != EXPORT_KIND \
            or not isinstance(document.get("events"), list) or not isinstance(document.get("streams"), Mapping):
        result.add("malformed_export", "this is not an Alliance history export")
        return result
    if (problem := document_signature_problem(document, keys)) is not None:
        result.add(problem, {"signature_missing": "the export carries no signature",
                             "unknown_signing_key": "the export is signed by a key this server never used",
                             "signature_invalid": "the export was changed after it was signed"}[problem])
    rows = []
    for index, item in enumerate(document["events"]):
        try:
            rows.append(json_to_row(item))
        except (KeyError, TypeError, ValueError) as exc:
            result.add("malformed_event", f"event #{index} cannot be read: {exc}",
                       stream_id=item.get("stream_id") if isinstance(item, Mapping) else None)
    if any(p.code == "malformed_event" for p in result.problems):
        return result
    _check_streams(rows, document["streams"], result)
    recorded = document.get("verification")
    if isinstance(recorded, Mapping) and recorded.get("ok") is False:
        result.add("recorded_verification_failed", "the server found a break when it made this export")
    result.details.update(client_id=document.get("client_id"), exported_at=document.get("exported_at"),
                          signed_by=(document.get("signature") or {}).get("kid"))
    return result
