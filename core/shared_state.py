"""What the nodes of one database share, checked at start-up (migration 0011, ``node_agreement``).

Two ``alliance serve`` processes (or a ``serve`` and an ``alliance projector``) on one database
must hold the same key-encryption key, sign with the same keys, anchor into the same folder and
keep one erasure ledger. Each of these lives outside the database, by default under the node's
own ``ALLIANCE_HOME``; a second node with a home of its own would silently make a new KEK (its
data keys unreadable by the first node, its Idempotency-Key MACs different), a new signing key
(receipts its JWKS lists and the other node's does not), anchors and erasures the other nodes
never see. So the first node records, in the database:

* ``kek``: HMAC-SHA256 of a fixed label under the KEK (it tells nothing about the key);
* ``store``: a random id, also written as the file ``.alliance-store`` into the signing-key,
  anchor and erasure-ledger folders;

and every later start compares: another KEK, or a folder without this store's marker, stops the
node with one line naming the setting (``ALLIANCE_KEK``/``ALLIANCE_KEK_FILE``,
``ALLIANCE_SIGNING_KEY_DIR``, ``ALLIANCE_ANCHOR_DIR``, ``ALLIANCE_ERASURE_LEDGER_DIR``).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from pathlib import Path

import asyncpg

from alliance.core.errors import ConfigurationError
from alliance.core.settings import Settings

MARKER = ".alliance-store"


def kek_fingerprint(kek: bytes) -> str:
    return hmac.new(kek, b"alliance kek fingerprint v1", hashlib.sha256).hexdigest()[:32]


async def recorded(pool: asyncpg.Pool, what: str) -> str | None:
    value = await pool.fetchval("SELECT value FROM node_agreement WHERE what = $1", what)
    return None if value is None else str(value)


async def _record(pool: asyncpg.Pool, what: str, value: str) -> tuple[str, bool]:
    """The value on record (ours when we are first) and whether this call recorded it."""
    done = await pool.fetchval("INSERT INTO node_agreement (what, value) VALUES ($1, $2) "
                               "ON CONFLICT (what) DO NOTHING RETURNING true", what, value)
    return (value, True) if done else (str(await recorded(pool, what)), False)


async def agree_on_kek(pool: asyncpg.Pool, kek: bytes, *, inline: bool, path: Path) -> None:
    on_record, _ = await _record(pool, "kek", kek_fingerprint(kek))
    if not hmac.compare_digest(on_record, kek_fingerprint(kek)):
        field = "ALLIANCE_KEK" if inline else "ALLIANCE_KEK_FILE"
        where = "ALLIANCE_KEK" if inline else f"the key-encryption key in {path} (ALLIANCE_KEK_FILE)"
        raise ConfigurationError(f"{where} is not the key-encryption key this database's other nodes use: give "
                                 "every node the same ALLIANCE_KEK or ALLIANCE_KEK_FILE", field=field)


def _folders(settings: Settings) -> list[tuple[str, Path]]:
    return [("ALLIANCE_SIGNING_KEY_DIR", settings.signing_key_path), ("ALLIANCE_ANCHOR_DIR", settings.anchor_path),
            ("ALLIANCE_ERASURE_LEDGER_DIR", settings.erasure_ledger_path)]


def _marker(folder: Path) -> str | None:
    try:
        return (folder / MARKER).read_text().strip()
    except FileNotFoundError:
        return None


async def agree_on_folders(pool: asyncpg.Pool, settings: Settings) -> None:
    """Every folder holds this store's marker; the first node (or the first start after an upgrade)
    writes it. Checked before anything is signed, anchored or ledgered."""
    store_id = await recorded(pool, "store")
    first = False
    if store_id is None:
        store_id, first = await _record(pool, "store", str(uuid.uuid4()))
    for variable, folder in _folders(settings):
        found = _marker(folder)
        if found == store_id:
            continue
        if found is None and first:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            (folder / MARKER).write_text(store_id + "\n")
            continue
        what = "belongs to another database" if found is not None else "is not the folder this database's nodes share"
        raise ConfigurationError(
            f"{folder} ({variable}) {what}: point every node at the same shared folder (a folder restored from a "
            f"backup keeps its {MARKER} file; a lost one is recreated by writing {store_id} into {folder / MARKER})",
            field=variable)
