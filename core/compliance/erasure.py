"""The erasure ledger: erasures recorded outside the database, re-applied after a restore.

Erasure destroys the client's data key (crypto-shredding, ``KeyRing.destroy``). A
database restored from a backup taken before the erasure brings the wrapped key back;
the ledger, kept outside the database (default ``settings.home / "erasure-ledger"``),
says which keys to destroy again (``reapply_erasures``).

File: ``ledger.jsonl`` in the ledger directory, one JSON object per line, appended
only (``O_APPEND``, an exclusive ``flock`` per write, fsync)::

    {"kind": "alliance.erasure", "format": 1, "seq": 3, "subject_id": "...", "tenant_id": "...",
     "erased_at": "...", "reason_sha256": "<hex>", "request_id": "..." | null,
     "actor_id": "..." | null, "prev": "<sha256 hex of the previous line>" | null,
     "signature": {"alg": "EdDSA", "kid": "...", "value": "..."}}

No personal text: the reason is kept only as ``sha256(subject id || reason)`` (enough to
show which stated reason was recorded, not to read it). ``prev`` chains the lines, so a
removed or edited line shows (``read_ledger``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from alliance.core.compliance.report import VerifyResult
from alliance.core.compliance.rows import iso
from alliance.core.compliance.signing import Keys, Signer, document_signature_problem, sign_document
from alliance.core.events.crypto import KeyRing

LEDGER_KIND = "alliance.erasure"
LEDGER_FORMAT = 1
LEDGER_FILE = "ledger.jsonl"


def default_ledger_dir(settings: Any) -> Path:
    """``settings.erasure_ledger_dir`` when settings has one, else ``settings.home / "erasure-ledger"``."""
    return Path(getattr(settings, "erasure_ledger_dir", None) or Path(settings.home) / "erasure-ledger")


def reason_hash(subject_id: UUID, reason: str) -> str:
    return hashlib.sha256(subject_id.bytes + reason.encode()).hexdigest()


def _lines(path: Path) -> list[bytes]:
    if not path.exists():
        return []
    return [line for line in path.read_bytes().split(b"\n") if line.strip()]


def record_erasure(ledger_dir: Path, signer: Signer, *, subject_id: UUID, tenant_id: UUID, reason: str,
                   erased_at: datetime | None = None, request_id: UUID | None = None,
                   actor_id: UUID | None = None) -> dict[str, Any]:
    """Append a signed erasure line to the ledger and return it.

    Write the ledger *before* destroying the key (``erase_subject`` does both): an erasure
    interrupted between the two is then finished by ``reapply_erasures``.
    """
    ledger_dir = Path(ledger_dir)
    ledger_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = ledger_dir / LEDGER_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one writer at a time: seq and prev must follow the last line
        lines = _lines(path)
        entry = sign_document({
            "kind": LEDGER_KIND, "format": LEDGER_FORMAT, "seq": len(lines) + 1,
            "subject_id": str(subject_id), "tenant_id": str(tenant_id),
            "erased_at": iso(erased_at or datetime.now(UTC)), "reason_sha256": reason_hash(subject_id, reason),
            "request_id": str(request_id) if request_id else None,
            "actor_id": str(actor_id) if actor_id else None,
            "prev": hashlib.sha256(lines[-1]).hexdigest() if lines else None,
        }, signer)
        data = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        # A crash mid-line leaves a torn last line; start on a fresh line so it stays isolated.
        if os.fstat(fd).st_size and not path.read_bytes().endswith(b"\n"):
            data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return entry


def read_ledger(ledger_dir: Path, keys: Keys | None = None) -> tuple[list[dict[str, Any]], VerifyResult]:
    """The ledger's entries, and its check: unreadable lines, broken ``prev`` links and,
    with ``keys``, bad signatures (codes ``ledger_line_unreadable``, ``ledger_line_missing``,
    ``ledger_signature_missing`` / ``ledger_unknown_signing_key`` / ``ledger_signature_invalid``).
    Entries with a bad signature are not returned when ``keys`` are given."""
    result = VerifyResult(kind="erasure_ledger")
    entries: list[dict[str, Any]] = []
    previous: bytes | None = None
    for number, line in enumerate(_lines(Path(ledger_dir) / LEDGER_FILE), start=1):
        try:
            entry = json.loads(line)
            UUID(entry["subject_id"])
        except (ValueError, KeyError, TypeError):
            result.add("ledger_line_unreadable", f"line {number} is not a ledger entry", file=LEDGER_FILE)
            previous = line
            continue
        expected_prev = hashlib.sha256(previous).hexdigest() if previous is not None else None
        if entry.get("prev") != expected_prev:
            result.add("ledger_line_missing", f"line {number} does not follow the line before it "
                       "(a line was removed, inserted or edited)", file=LEDGER_FILE)
        previous = line
        if keys is not None and (problem := document_signature_problem(entry, keys)) is not None:
            result.add(f"ledger_{problem}", f"line {number}'s signature does not hold", file=LEDGER_FILE)
            continue
        entries.append(entry)
    result.details["entries"] = len(entries)
    return entries, result


async def reapply_erasures(keyring: KeyRing, ledger_dir: Path, *, keys: Keys | None = None,
                           notify: Callable[[UUID], Awaitable[None]] | None = None) -> list[dict[str, Any]]:
    """Destroy again every data key the ledger says was erased (after a restore from backup).

    Returns one item per ledger entry: ``{"subject_id", "tenant_id", "erased_at",
    "redestroyed"}`` — ``redestroyed`` is True when the key had come back and was destroyed
    now. With ``keys``, only entries with a valid signature are applied (a forged line must
    not shred a client's data). ``notify``: e.g. ``PostgresEventStore.notify_key_destroyed``,
    so other processes drop cached keys.
    """
    entries, _ = read_ledger(ledger_dir, keys)
    done: list[dict[str, Any]] = []
    seen: set[UUID] = set()
    for entry in entries:
        subject = UUID(entry["subject_id"])
        if subject in seen:
            continue
        seen.add(subject)
        destroyed = await keyring.destroy(subject)
        if destroyed and notify is not None:
            await notify(subject)
        done.append({"subject_id": str(subject), "tenant_id": entry.get("tenant_id"),
                     "erased_at": entry.get("erased_at"), "redestroyed": destroyed})
    return done


async def erase_subject(keyring: KeyRing, ledger_dir: Path, signer: Signer, *, subject_id: UUID,
                        tenant_id: UUID, reason: str, request_id: UUID | None = None,
                        actor_id: UUID | None = None,
                        notify: Callable[[UUID], Awaitable[None]] | None = None) -> dict[str, Any]:
    """Ledger first, then destroy the key, then tell other processes. Returns the ledger entry
    plus ``destroyed`` (False when the key was already gone). Domain checks (legal hold) and
    the ``erasure.completed`` event belong to the caller."""
    entry = record_erasure(ledger_dir, signer, subject_id=subject_id, tenant_id=tenant_id, reason=reason,
                           request_id=request_id, actor_id=actor_id)
    destroyed = await keyring.destroy(subject_id)
    if notify is not None:
        await notify(subject_id)
    return {**entry, "destroyed": destroyed}
