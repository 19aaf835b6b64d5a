"""Read-model rows sealed with the client's data key: no personal text at rest in any read model.

Every stored row of a client's document (the head row and each item row, see ``parts``) is
sealed with that client's data key (AES-256-GCM, a random nonce per row), so a dump, the WAL,
a base backup or a replica holds no personal text, and destroying the key (erasure) makes
every read model row of that client unreadable at once, wherever copies of it went.

A stored row says how it was written, in its first byte:

* ``0x01 | key id (16) | nonce (12) | ciphertext and tag``: sealed with data key ``key id``;
* ``0x00 | JSON``: not sealed. Only for a document re-folded from the store *after* its key was
  destroyed (every personal field then decodes as erased), or of a client who never had a key
  (no event of theirs ever carried a personal field): either way it holds no personal text.

The associated data binds a ciphertext to (projection, client, part, ord) and its own format
byte and key id, so a row cannot be moved to another client, another item or another read
model. Not to the table's name: a rebuild writes the same rows into the next version's table.
The head row is part ``HEAD`` (-1), ord 0.

Every writer (the live runner, the rebuild's bulk path) and every reader (views, the view cache's
fill, verify, the caseload) goes through here, so there is one format and one place to check it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag

from alliance.core.errors import ConfigurationError
from alliance.core.events.crypto import NONCE_BYTES, DataKey, KeyRing

SEALED = 0x01
UNSEALED = 0x00
#: The head row's part and ord in the associated data (item rows use their own).
HEAD = -1
_KEY_ID = 16
_PREFIX = 1 + _KEY_ID
_PLACE = struct.Struct(">hq")

Row = tuple[int, int, bytes]


def keys_of(store: Any) -> KeyRing:
    """The key ring of an event store (the ``EventStore`` protocol does not name it; both stores have one)."""
    keys = getattr(store, "keys", None)
    if keys is None:
        raise TypeError("read models are sealed: the event store needs a key ring")
    return keys  # type: ignore[no-any-return]


class RowSealer:
    """Seals the rows of one client in one projection, with one key (None: stored unsealed)."""

    __slots__ = ("_aad", "_encrypt", "_prefix", "client")

    def __init__(self, projection: str, client: UUID, key: DataKey | None) -> None:
        if key is not None and key.cipher is None:
            raise ValueError("a destroyed key seals nothing")
        self.client = client
        self._prefix = bytes((SEALED,)) + key.key_id.bytes if key is not None else bytes((UNSEALED,))
        # Per row only the place and a fresh nonce differ: the rest is built once (a rebuild seals
        # every row of every client; the per-call work was a third of the sealing cost, measured).
        self._aad = self._prefix + projection.encode() + b"\x00" + client.bytes
        self._encrypt = key.cipher.encrypt if key is not None and key.cipher is not None else None

    @property
    def sealed(self) -> bool:
        return self._encrypt is not None

    def seal(self, part: int, ord_: int, plaintext: bytes) -> bytes:
        if self._encrypt is None:
            return self._prefix + plaintext
        nonce = os.urandom(NONCE_BYTES)
        return self._prefix + nonce + self._encrypt(nonce, plaintext, self._aad + _PLACE.pack(part, ord_))

    def head(self, plaintext: bytes) -> bytes:
        return self.seal(HEAD, 0, plaintext)


async def sealer(keys: KeyRing, projection: str, tenant_id: UUID, client_id: UUID) -> RowSealer:
    """A sealer with the client's live data key (created when the client has none yet).

    Raises ``SubjectErased`` when the key was destroyed: the caller must then re-fold the client
    from the store and store that with :func:`unsealed`, never a document folded earlier.
    """
    return RowSealer(projection, client_id, await keys.key_for_append(tenant_id, client_id))


def unsealed(projection: str, client_id: UUID) -> RowSealer:
    """For a document re-folded after its client's key was destroyed (or who never had one)."""
    return RowSealer(projection, client_id, None)


async def sealer_after_refold(keys: KeyRing, projection: str, client_id: UUID, key_id: UUID | None) -> RowSealer:
    """How to store a document just re-folded from the store (after an erasure event).

    ``key_id``: the data key named by the client's events (None: no event carried personal
    fields). Never creates a key (an erased client must not get a new one): a destroyed or
    absent key means the document holds no personal text and is stored unsealed; a live one
    (the erasure event without a destroyed key, say after a restore before ``reapply-erasures``)
    still seals it.
    """
    if key_id is None:
        return unsealed(projection, client_id)
    key = await keys.key_for_read(client_id, key_id)
    return RowSealer(projection, client_id, None if key.destroyed else key)


def key_ids(rows: Iterable[bytes]) -> set[UUID]:
    """The data keys that sealed these stored rows (empty: none was sealed)."""
    # distinct prefixes first: a read opens some hundred rows sealed with one key
    return {UUID(bytes=bytes(prefix)) for prefix in {data[1:_PREFIX] for data in rows if data[0] == SEALED}}


async def keys_live(keys: KeyRing, client_id: UUID, rows: Iterable[bytes]) -> bool:
    """Whether every key that sealed these rows still exists (rows held opened in memory may be
    served again only then: a destroyed key means the client was erased since)."""
    for key_id in key_ids(rows):
        if (await keys.key_for_read(client_id, key_id)).destroyed:
            return False
    return True


async def open_rows(keys: KeyRing, projection: str, client_id: UUID, rows: Sequence[Row]) -> list[Row] | None:
    """The plaintext of one client's stored rows ``(part, ord, data)`` (the head as part ``HEAD``).

    None when a row is sealed with a destroyed key: the client was erased and the runner has
    not re-folded them yet; the caller answers as for an erased client (from the store, where
    the personal fields read erased), never from these rows. One key lookup per read (the key
    ring caches keys per process). Tampered rows raise ``ConfigurationError`` (not "erased").
    """
    name = projection.encode() + b"\x00" + client_id.bytes
    ciphers: dict[bytes, Any] = {}
    out: list[Row] = []
    for part, ord_, data in rows:
        data = bytes(data)
        if data[0] == UNSEALED:
            out.append((part, ord_, data[1:]))
            continue
        if data[0] != SEALED:
            raise ValueError(f"a {projection} row of an unknown format ({data[0]:#04x})")
        prefix = data[:_PREFIX]
        cipher = ciphers.get(prefix)
        if cipher is None:
            cipher = ciphers[prefix] = (await keys.key_for_read(client_id, UUID(bytes=prefix[1:]))).cipher
        if cipher is None:  # destroyed
            return None
        try:
            plain = cipher.decrypt(data[_PREFIX:_PREFIX + NONCE_BYTES], data[_PREFIX + NONCE_BYTES:],
                                   prefix + name + _PLACE.pack(part, ord_))
        except InvalidTag as exc:  # tampered (or moved) ciphertext is not "erased": say so
            raise ConfigurationError(f"a {projection} row failed authentication (tampered or moved?)") from exc
        out.append((part, ord_, plain))
    return out
