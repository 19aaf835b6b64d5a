"""Personal-field encryption: per-subject data keys wrapped by a key-encryption key.

* The key-encryption key (KEK) lives outside the database: a file (created with
  mode 0600 on first use) or the ``ALLIANCE_KEK`` environment variable. A database
  dump alone therefore reveals no personal text.
* Each subject (client) has one data key (AES-256-GCM), stored wrapped by the KEK
  (AES-GCM, the subject id as associated data so a wrapped key cannot be moved to
  another subject).
* Each event's personal fields are sealed with the subject's data key, the event
  id as associated data (a ciphertext cannot be moved to another event).
* Erasure destroys the wrapped key (see ``KeyRing.destroy``): every personal field
  of that subject, in every event and every read model that keeps ciphertext,
  becomes unreadable at once. Nothing else changes, so hash chains still verify.

Why a cached key can never decrypt after its destruction (the cache is per process):
* ``destroy`` sends the key-destroyed NOTIFY in the transaction that destroys the key,
  so PostgreSQL delivers it to every listening process exactly when the destruction
  becomes visible, and each process drops its copy on delivery.
* The cache is *trusted* only while its process is known to be listening. The store's
  listener keeper calls ``distrust()`` the moment its LISTEN connection is lost (a
  restart of PostgreSQL, a dropped connection, a failed health check) and ``trust()``
  only after LISTEN is in force again; both empty the cache. While distrusted every
  key is read from the database and nothing is cached, so a destruction whose
  notification fell into the gap is seen by the next read.
* A load that was in flight while the cache was emptied (a gap, a destruction) does
  not store its result: every emptying bumps an epoch, and a load caches only when
  the epoch it started in is still current.
* As a last bound, a cached key lives at most ``max_age`` seconds (60).
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from uuid import UUID, uuid4

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from alliance.core.errors import AllianceError, ConfigurationError

NONCE_BYTES = 12

#: Longest a process keeps a data key in memory without reading it again (seconds).
KEY_CACHE_SECONDS = 60.0


class SubjectErased(AllianceError):
    """The subject's data key was destroyed: no new personal data can be recorded."""

    code = "subject_erased"
    status = 409


def load_kek(*, path: Path, inline: str | None, existing: bool = False) -> bytes:
    """The key-encryption key from the environment or its file.

    The file is created when absent, but only for a database that holds no data key yet
    (``existing`` False): beside stored data keys a new KEK would silently make every
    personal field unreadable, so the missing file is an error to fix (restore it).
    """
    if inline:
        key = _decode_kek(inline, "ALLIANCE_KEK")
    else:
        if not path.exists():
            if existing:
                raise ConfigurationError(
                    f"the key-encryption key file {path} (ALLIANCE_KEK_FILE) is missing, but this database "
                    "holds data keys wrapped by it: restore the file (a new key would leave every stored "
                    "personal field unreadable)", field="ALLIANCE_KEK_FILE")
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode())
        key = _decode_kek(path.read_text().strip(), "ALLIANCE_KEK_FILE")
    return key


def _decode_kek(text: str, field: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigurationError(f"{field}: the key-encryption key must be 32 random bytes, base64-encoded",
                                 field=field)
    return key


async def open_key_ring(pool: asyncpg.Pool, *, path: Path, inline: str | None) -> PostgresKeyRing:
    """The store's key ring, after checking that its KEK belongs to this database.

    One stored data key (a live one when there is any) is unwrapped at start-up, so a wrong
    KEK stops the process at once instead of failing on the first personal field read.
    """
    from alliance.core.shared_state import agree_on_kek, recorded

    row = await pool.fetchrow("SELECT subject_id, key_id, wrapped_key FROM data_keys "
                              "ORDER BY wrapped_key IS NULL LIMIT 1")
    # Another node recorded its KEK: never make a new one here (core/shared_state.py).
    kek = load_kek(path=path, inline=inline, existing=row is not None or await recorded(pool, "kek") is not None)
    ring = PostgresKeyRing(pool, kek)
    if row is not None and row["wrapped_key"] is not None:
        try:
            ring._unwrap(row["subject_id"], row["key_id"], row["wrapped_key"])
        except ConfigurationError:
            field = "ALLIANCE_KEK" if inline else "ALLIANCE_KEK_FILE"
            where = "ALLIANCE_KEK" if inline else f"the key-encryption key in {path} (ALLIANCE_KEK_FILE)"
            raise ConfigurationError(f"{where} does not open the data keys stored in this database: "
                                     "it is not the key they were wrapped with", field=field) from None
    await agree_on_kek(pool, kek, inline=bool(inline), path=path)
    return ring


def seal(key: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + key.encrypt(nonce, plaintext, aad)


def open_sealed(key: AESGCM, sealed: bytes, aad: bytes) -> bytes:
    return key.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


class DataKey:
    __slots__ = ("cipher", "key_id")

    def __init__(self, key_id: UUID, cipher: AESGCM | None) -> None:
        self.key_id = key_id
        self.cipher = cipher  # None: destroyed

    @property
    def destroyed(self) -> bool:
        return self.cipher is None

    def decrypt(self, sealed: bytes, aad: bytes) -> bytes | None:
        """The plaintext, or None when the key is destroyed (erased subject)."""
        if self.cipher is None:
            return None
        try:
            return open_sealed(self.cipher, sealed, aad)
        except InvalidTag as exc:  # tampered ciphertext is not "erased": say so
            raise ConfigurationError("personal fields failed authentication (tampered?)") from exc


class KeyRing(Protocol):
    async def key_for_append(self, tenant_id: UUID, subject_id: UUID) -> DataKey: ...
    async def key_for_read(self, subject_id: UUID, key_id: UUID) -> DataKey: ...
    async def destroy(self, subject_id: UUID) -> bool: ...
    def forget(self, subject_id: UUID) -> None: ...
    def forget_all(self) -> None: ...
    def distrust(self) -> None: ...
    def trust(self) -> None: ...


class _CachingKeyRing:
    """Wrapping, unwrapping and an in-process cache shared by both key rings (rules in the module docstring)."""

    def __init__(self, kek: bytes, *, max_age: float = KEY_CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._kek = AESGCM(kek)
        self._cache: dict[UUID, tuple[DataKey, float]] = {}
        self._max_age = max_age
        self._clock = clock
        self._epoch = 0
        # Untrusted until the owner says its key-destroyed notifications are being received.
        self._trusted = False

    @property
    def trusted(self) -> bool:
        return self._trusted

    def _cached(self, subject_id: UUID) -> DataKey | None:
        if not self._trusted:
            return None
        hit = self._cache.get(subject_id)
        if hit is None:
            return None
        key, loaded_at = hit
        if self._clock() - loaded_at > self._max_age:
            self._cache.pop(subject_id, None)
            return None
        return key

    def _remember(self, subject_id: UUID, key: DataKey, epoch: int) -> None:
        """Cache a key loaded during ``epoch``, unless the cache was emptied (or distrusted) since."""
        if self._trusted and epoch == self._epoch and not key.destroyed:
            self._cache[subject_id] = (key, self._clock())

    def _wrap(self, subject_id: UUID, raw: bytes) -> bytes:
        return seal(self._kek, raw, subject_id.bytes)

    def _unwrap(self, subject_id: UUID, key_id: UUID, wrapped: bytes | None) -> DataKey:
        if wrapped is None:
            return DataKey(key_id, None)
        try:
            raw = open_sealed(self._kek, wrapped, subject_id.bytes)
        except InvalidTag as exc:
            raise ConfigurationError(
                "a data key does not open with this key-encryption key (wrong ALLIANCE_KEK?)") from exc
        return DataKey(key_id, AESGCM(raw))

    def forget(self, subject_id: UUID) -> None:
        """Drop a cached key (another process destroyed it); a load in flight will not cache it."""
        self._epoch += 1
        self._cache.pop(subject_id, None)

    def forget_all(self) -> None:
        self._epoch += 1
        self._cache.clear()

    def distrust(self) -> None:
        """Key-destroyed notifications may be missed from now on: read every key from the database."""
        self._trusted = False
        self.forget_all()

    def trust(self) -> None:
        """Notifications are received again: start caching afresh (what was cached before is gone)."""
        self.forget_all()
        self._trusted = True


#: The channel on which a key's destruction is announced (payload: the subject id).
KEYS_CHANNEL = "alliance_keys"


class PostgresKeyRing(_CachingKeyRing):
    """Keys in table ``data_keys``. The cache stays untrusted (every read goes to the database)
    until the event store's listener calls ``trust()``; a key ring without a listener never caches."""

    def __init__(self, pool: asyncpg.Pool, kek: bytes, *, max_age: float = KEY_CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(kek, max_age=max_age, clock=clock)
        self._pool = pool

    async def _load(self, subject_id: UUID, pool: asyncpg.Pool | None = None) -> DataKey | None:
        epoch = self._epoch
        row = await (pool or self._pool).fetchrow(
            "SELECT key_id, wrapped_key FROM data_keys WHERE subject_id = $1", subject_id)
        if row is None:
            return None
        key = self._unwrap(subject_id, row["key_id"], row["wrapped_key"])
        self._remember(subject_id, key, epoch)
        return key

    async def key_for_append(self, tenant_id: UUID, subject_id: UUID) -> DataKey:
        key = self._cached(subject_id) or await self._load(subject_id)
        if key is None:
            raw = AESGCM.generate_key(bit_length=256)
            await self._pool.execute(
                "INSERT INTO data_keys (subject_id, tenant_id, key_id, wrapped_key) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (subject_id) DO NOTHING",
                subject_id, tenant_id, uuid4(), self._wrap(subject_id, raw))
            key = await self._load(subject_id)
            assert key is not None
        if key.destroyed:
            raise SubjectErased("this client's personal data was erased; nothing personal can be added")
        return key

    async def key_for_read(self, subject_id: UUID, key_id: UUID, *, pool: asyncpg.Pool | None = None) -> DataKey:
        """``pool``: where an uncached key is read instead of the primary — a hot standby known to have
        replayed past every destruction announced so far (core/events/replica.py); cached as any other."""
        key = self._cached(subject_id) or await self._load(subject_id, pool)
        if key is None or key.key_id != key_id:
            return DataKey(key_id, None)
        return key

    async def destroy(self, subject_id: UUID) -> bool:
        self.forget(subject_id)
        async with self._pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE data_keys SET wrapped_key = NULL, destroyed_at = now() "
                "WHERE subject_id = $1 AND wrapped_key IS NOT NULL", subject_id)
            # In the same transaction: delivered to every listener exactly when the destruction commits.
            await conn.execute("SELECT pg_notify($1, $2)", KEYS_CHANNEL, str(subject_id))
        self.forget(subject_id)
        return status.endswith(" 1")


class MemoryKeyRing(_CachingKeyRing):
    """The same behaviour without a database, for the in-memory store."""

    def __init__(self, kek: bytes | None = None) -> None:
        super().__init__(kek or AESGCM.generate_key(bit_length=256))
        self._trusted = True  # one process, no notifications to miss (and it caches nothing)
        self._wrapped: dict[UUID, tuple[UUID, bytes | None]] = {}

    async def key_for_append(self, tenant_id: UUID, subject_id: UUID) -> DataKey:
        if subject_id not in self._wrapped:
            self._wrapped[subject_id] = (uuid4(), self._wrap(subject_id, AESGCM.generate_key(bit_length=256)))
        key_id, wrapped = self._wrapped[subject_id]
        key = self._unwrap(subject_id, key_id, wrapped)
        if key.destroyed:
            raise SubjectErased("this client's personal data was erased; nothing personal can be added")
        return key

    async def key_for_read(self, subject_id: UUID, key_id: UUID) -> DataKey:
        stored = self._wrapped.get(subject_id)
        if stored is None or stored[0] != key_id:
            return DataKey(key_id, None)
        return self._unwrap(subject_id, *stored)

    async def destroy(self, subject_id: UUID) -> bool:
        stored = self._wrapped.get(subject_id)
        if stored is None or stored[1] is None:
            return False
        self._wrapped[subject_id] = (stored[0], None)
        return True
