"""Chain heads anchored outside the database, so a rewritten history shows.

Someone holding the database can rewrite a stream's tail and recompute every digest
and hash after it: ``alliance verify`` then finds a perfectly consistent chain. What
they cannot change is a copy of the heads kept elsewhere and signed with a key that
is not in the database. ``write_anchor`` (run periodically) writes that copy;
``check_against_anchors`` recomputes each anchored stream's chain from version 1 up
to the anchored version and compares the result with the anchored hash.

Anchor file (``anchor-<8-digit sequence>-<UTC time>.json`` in ``settings.anchor_path``)::

    {"kind": "alliance.anchor", "format": 1, "anchored_at": "...",
     "streams": {"<stream id>": {"version": 7, "hash": "<hex>"}, ...},
     "stream_count": n, "event_count": sum of versions,
     "heads_digest": sha256 hex of the canonical JSON of "streams",
     "previous": {"file": "<name>", "sha256": "<hex of that file's bytes>"} | null,
     "store_check": {"ok": ..., "events_checked": ..., "first_break": ...} | null,
     "signature": {"alg": "EdDSA", "kid": "...", "value": "..."}}

``previous`` chains the anchors, so a deleted or replaced anchor file is noticed too.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from alliance.core.compliance.report import VerifyResult, break_code
from alliance.core.compliance.rows import EVENT_COLUMNS, Source, iso, snapshot
from alliance.core.compliance.signing import Keys, Signer, canonical_json, document_signature_problem, sign_document
from alliance.core.events.codec import GENESIS_HASH
from alliance.core.events.verify import check_event, verify_store

ANCHOR_KIND = "alliance.anchor"
ANCHOR_FORMAT = 1
_PREFIX = "anchor-"


def heads_digest(streams: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(streams)).hexdigest()


def _sequence(path: Path) -> int:
    try:
        return int(path.name[len(_PREFIX):].split("-", 1)[0])
    except ValueError:
        return 0


def anchor_files(directory: Path) -> list[Path]:
    """The anchor files in order of writing (``anchor-<sequence>-<UTC time>.json``)."""
    directory = Path(directory)
    if not directory.exists():
        return []
    return sorted((p for p in directory.glob(f"{_PREFIX}*.json") if p.is_file()), key=lambda p: (_sequence(p), p.name))


def latest_anchor(directory: Path) -> dict[str, Any] | None:
    """The newest anchor document (its ``store_check`` is the last full check, when made)."""
    files = anchor_files(directory)
    return json.loads(files[-1].read_bytes()) if files else None


async def read_heads(source: Source) -> dict[str, dict[str, Any]]:
    """Every non-empty stream's head: ``{stream_id: {"version": n, "hash": hex}}``, in one snapshot."""
    async with snapshot(source) as conn:
        rows = await conn.fetch("SELECT stream_id, version, head_hash FROM streams WHERE version > 0 "
                                "ORDER BY stream_id")
    return {r["stream_id"]: {"version": r["version"], "hash": bytes(r["head_hash"]).hex()} for r in rows}


async def write_anchor(source: Source, signer: Signer, directory: Path, *, verify_first: bool = False,
                       now: datetime | None = None) -> Path:
    """Write a signed anchor of every stream head into ``directory``; returns its path.

    ``verify_first``: walk the whole store (``core.events.verify.verify_store``) first and
    record the outcome in the anchor as ``store_check`` — the "last full check" the audit
    endpoint reports. The anchor is written either way: a broken store is recorded, not hidden.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    moment = now or datetime.now(UTC)
    store_check = None
    if verify_first:
        pool_or_conn: Any = getattr(source, "_pool", source)
        if hasattr(pool_or_conn, "acquire"):
            async with pool_or_conn.acquire() as conn:
                report = await verify_store(conn)
        else:
            report = await verify_store(pool_or_conn)
        store_check = {"ok": report.ok, "events_checked": report.events_checked,
                       "streams_checked": report.streams_checked, "checked_at": iso(datetime.now(UTC)),
                       "first_break": msgspec.to_builtins(report.first_break)}
    streams = await read_heads(source)
    files = anchor_files(directory)
    previous = None
    if files:
        previous = {"file": files[-1].name, "sha256": hashlib.sha256(files[-1].read_bytes()).hexdigest()}
    document = sign_document({
        "kind": ANCHOR_KIND, "format": ANCHOR_FORMAT, "anchored_at": iso(moment),
        "streams": streams, "stream_count": len(streams),
        "event_count": sum(h["version"] for h in streams.values()),
        "heads_digest": heads_digest(streams), "previous": previous, "store_check": store_check,
    }, signer)
    body = json.dumps(document, indent=1, sort_keys=True).encode()
    seq = _sequence(files[-1]) + 1 if files else 1
    tmp = directory / f".anchor-{os.getpid()}-{seq}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        while True:  # link, not rename: never overwrite an anchor another writer made
            path = directory / f"{_PREFIX}{seq:08d}-{moment.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
            try:
                os.link(tmp, path)
                break
            except FileExistsError:
                seq += 1
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_anchor_files(directory: Path, keys: Keys, result: VerifyResult | None = None
                       ) -> tuple[VerifyResult, dict[str, Any] | None, str | None]:
    """Check every anchor's signature, digest and link to its predecessor (no database).

    Returns the result, the newest trustworthy anchor and its file name.
    """
    result = result or VerifyResult(kind="anchors")
    files = anchor_files(directory)
    result.details["anchors_checked"] = len(files)
    trusted: tuple[dict[str, Any], str] | None = None
    previous: Path | None = None
    for path in files:
        raw = path.read_bytes()
        try:
            document = json.loads(raw)
        except ValueError:
            result.add("anchor_unreadable", "the anchor file is not JSON", file=path.name)
            previous = path
            continue
        good = True
        if document.get("kind") != ANCHOR_KIND or not isinstance(document.get("streams"), dict):
            result.add("anchor_unreadable", "the file is not an Alliance anchor", file=path.name)
            good = False
        elif (problem := document_signature_problem(document, keys)) is not None:
            result.add(f"anchor_{problem}", "the anchor's signature does not hold", file=path.name)
            good = False
        elif heads_digest(document["streams"]) != document.get("heads_digest"):
            result.add("anchor_digest_mismatch", "the anchor's heads do not match its digest", file=path.name)
            good = False
        link = document.get("previous") if isinstance(document, dict) else None
        if previous is None and link is not None and good:
            result.add("anchor_missing", f"an earlier anchor ({link.get('file')}) is missing", file=path.name)
        elif previous is not None and good:
            expected = {"file": previous.name, "sha256": hashlib.sha256(previous.read_bytes()).hexdigest()}
            if link != expected:
                result.add("anchor_missing", "the anchor before this one was removed or replaced "
                           f"(this one names {link and link.get('file')})", file=path.name)
        if good:
            trusted = (document, path.name)
        previous = path
    return result, (trusted[0] if trusted else None), (trusted[1] if trusted else None)


async def check_against_anchors(source: Source, directory: Path, keys: Keys, *,
                                stream_ids: set[str] | None = None) -> VerifyResult:
    """Compare the store with the newest trustworthy anchor in ``directory``.

    For each anchored stream (optionally only ``stream_ids``) the chain is recomputed
    from version 1 up to the anchored version with ``check_event``, and the hash reached
    must be the anchored one. Problem codes (each naming stream, version, position):
    ``stream_missing``, ``stream_truncated`` (shorter than anchored), ``chain_broken`` /
    ``event_content_changed`` / ``event_missing_or_moved`` (a stored event does not match its
    digest, link or place),
    ``anchored_head_mismatch`` (a consistent chain that ends in another hash: the tail was
    rewritten and its hashes recomputed). Plus the anchor-file codes of ``check_anchor_files``
    and ``no_anchor``. Streams created after the anchor are not judged here.
    """
    result, anchor, name = check_anchor_files(directory, keys)
    if anchor is None:
        result.add("no_anchor", f"no trustworthy anchor in {directory}")
        return result
    result.details.update(anchor_file=name, anchored_at=anchor.get("anchored_at"))
    anchored = {sid: (int(h["version"]), str(h["hash"])) for sid, h in anchor["streams"].items()
                if stream_ids is None or sid in stream_ids}
    names = sorted(anchored)
    checked = 0
    seen: set[str] = set()
    async with snapshot(source) as conn:
        stream: str | None = None
        prev, expected, broken = GENESIS_HASH, 1, False

        def close(sid: str | None) -> None:
            if sid is None:
                return
            version, digest_hex = anchored[sid]
            if broken:
                return
            if expected - 1 < version:
                result.add("stream_truncated", f"anchored at version {version}, the stream now ends at "
                           f"{expected - 1}", stream_id=sid, version=version, file=name)
            elif prev.hex() != digest_hex:
                result.add("anchored_head_mismatch", f"the chain up to version {version} ends in another hash "
                           "than anchored: the stream's history was rewritten (hashes recomputed)",
                           stream_id=sid, version=version, position=last_position, file=name)

        last_position: int | None = None
        sql = (f"SELECT {EVENT_COLUMNS} FROM events e JOIN unnest($1::text[], $2::bigint[]) AS a(sid, v) "
               "ON e.stream_id = a.sid AND e.version <= a.v ORDER BY e.stream_id, e.version")
        async for row in conn.cursor(sql, names, [anchored[s][0] for s in names], prefetch=2000):
            if row["stream_id"] != stream:
                close(stream)
                stream, prev, expected, broken = row["stream_id"], GENESIS_HASH, 1, False
                seen.add(stream)
            if broken:
                continue
            reason = check_event(row, prev, expected)
            if reason is not None:
                result.add(break_code(reason), reason, stream_id=row["stream_id"], version=row["version"],
                           position=row["position"])
                broken = True
                continue
            prev, expected, last_position = bytes(row["hash"]), expected + 1, row["position"]
            checked += 1
        close(stream)
    for sid in names:
        if sid not in seen:
            result.add("stream_missing", f"anchored at version {anchored[sid][0]}, the stream has no events now",
                       stream_id=sid, version=anchored[sid][0], file=name)
    result.details.update(streams_checked=len(names), events_checked=checked)
    return result
