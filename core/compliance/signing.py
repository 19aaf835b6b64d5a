"""Server signing keys (Ed25519): persisted as files, rotatable, every public key kept.

Layout of ``settings.signing_key_path`` (one directory):

* ``<kid>.key``      — the private key, PKCS#8 PEM, mode 0600. Only the *current*
  key's private half is kept: ``rotate()`` deletes the old one, so a stolen old
  file cannot sign anything new.
* ``<kid>.jwk.json`` — the public key as a JWK (``kty=OKP, crv=Ed25519``) plus
  ``created_at``/``retired_at``; never deleted, so every signature ever made stays
  verifiable (they are served at the well-known URL).
* ``current``        — the key id that signs now (replaced atomically).

The key id is the first 16 hex digits of sha256 over the raw 32-byte public key,
so a key id names its key and cannot be re-pointed to another one.

Signed documents (receipts, anchors, exports, erasure-ledger lines) carry
``"signature": {"alg": "EdDSA", "kid": …, "value": <base64url>}`` over the
canonical JSON (``canonical_json``) of the document without its ``signature``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from alliance.core.errors import ConfigurationError

ALG = "EdDSA"
SIGNATURE_FIELD = "signature"

#: What ``verify``/``verify_document`` accept as the trusted public keys: JWKs (a list,
#: or a JWKS ``{"keys": [...]}``), a ``{kid: Ed25519PublicKey}`` map, or a ``Signer``.
#: (Typed ``Any``: the forms are told apart at run time by ``load_keys``.)
Keys: TypeAlias = Any


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, UTF-8. What signatures are made over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """The first 16 hex digits of sha256 over the raw public key."""
    return hashlib.sha256(_raw_public(public)).hexdigest()[:16]


def public_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(_raw_public(public)), "kid": key_id(public),
            "alg": ALG, "use": "sig"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class Signer:
    """The server's signing keys in one directory (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._private: Ed25519PrivateKey | None = None
        self._kid: str | None = None

    @classmethod
    def open(cls, directory: Path) -> Signer:
        """Load the current key, creating the directory and a first key when there is none."""
        signer = cls(directory)
        signer.reload()
        return signer

    # -- files -------------------------------------------------------------------
    def reload(self) -> None:
        """(Re)read the current key from disk (another process may have rotated it)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        pointer = self.directory / "current"
        if not pointer.exists():
            self._create_and_point()
            return
        kid = pointer.read_text().strip()
        path = self.directory / f"{kid}.key"
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise ConfigurationError(f"signing key {kid} is named current but {path} is missing",
                                     field="signing_key_path") from None
        if not isinstance(private, Ed25519PrivateKey) or key_id(private.public_key()) != kid:
            raise ConfigurationError(f"{path} does not hold the Ed25519 key {kid}", field="signing_key_path")
        self._private, self._kid = private, kid

    def _create_and_point(self) -> str:
        private = Ed25519PrivateKey.generate()
        kid = key_id(private.public_key())
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        fd = os.open(self.directory / f"{kid}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        jwk = {**public_jwk(private.public_key()), "created_at": _now()}
        _write_atomic(self.directory / f"{kid}.jwk.json", json.dumps(jwk, indent=1).encode())
        _write_atomic(self.directory / "current", kid.encode())
        self._private, self._kid = private, kid
        return kid

    # -- the API -----------------------------------------------------------------
    @property
    def kid(self) -> str:
        if self._kid is None:
            self.reload()
        assert self._kid is not None
        return self._kid

    def rotate(self) -> str:
        """Make a new current key; the old public key stays listed, its private half is deleted."""
        old = self.kid
        new = self._create_and_point()
        jwk_path = self.directory / f"{old}.jwk.json"
        if jwk_path.exists():
            jwk = json.loads(jwk_path.read_text())
            jwk["retired_at"] = _now()
            _write_atomic(jwk_path, json.dumps(jwk, indent=1).encode())
        (self.directory / f"{old}.key").unlink(missing_ok=True)
        return new

    def sign(self, payload: bytes) -> tuple[str, str]:
        """``(kid, signature)``; the signature is base64url (no padding) of the 64 raw bytes."""
        kid = self.kid
        assert self._private is not None
        return kid, b64url(self._private.sign(payload))

    def public_keys(self) -> list[dict[str, Any]]:
        """Every public key ever used, as JWKs (``kid`` sorted by creation), for a JWKS URL."""
        keys = []
        for path in self.directory.glob("*.jwk.json"):
            jwk = json.loads(path.read_text())
            keys.append(jwk)
        keys.sort(key=lambda k: (k.get("created_at", ""), k["kid"]))
        return keys

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """``{"keys": [...]}`` as served at ``/.well-known/jwks.json``."""
        return {"keys": self.public_keys()}


# -- verification (needs only public keys) ------------------------------------------
def load_keys(keys: Keys) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys by key id, from any of the forms in ``Keys``.

    A JWK whose ``kid`` is not the hash of its key is refused (a key id cannot lie).
    """
    if isinstance(keys, Signer):
        keys = keys.public_keys()
    if isinstance(keys, Mapping) and "keys" in keys and isinstance(keys["keys"], list):
        keys = keys["keys"]
    if isinstance(keys, Mapping):
        if all(isinstance(v, Ed25519PublicKey) for v in keys.values()):
            return dict(keys)
        keys = list(keys.values())
    found: dict[str, Ed25519PublicKey] = {}
    for jwk in keys if isinstance(keys, Iterable) else ():
        if not isinstance(jwk, Mapping) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        public = Ed25519PublicKey.from_public_bytes(b64url_decode(str(jwk["x"])))
        kid = key_id(public)
        if jwk.get("kid", kid) != kid:
            raise ConfigurationError(f"JWK kid {jwk.get('kid')} does not name its key ({kid})")
        found[kid] = public
    return found


def verify(kid: str, payload: bytes, signature: str, keys: Keys) -> bool:
    """Whether ``signature`` (base64url) over ``payload`` was made by the trusted key ``kid``."""
    public = load_keys(keys).get(kid)
    if public is None:
        return False
    try:
        public.verify(b64url_decode(signature), payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_document(document: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    """A copy of ``document`` with a ``signature`` member over its canonical JSON."""
    body = {k: v for k, v in document.items() if k != SIGNATURE_FIELD}
    kid, value = signer.sign(canonical_json(body))
    return {**body, SIGNATURE_FIELD: {"alg": ALG, "kid": kid, "value": value}}


def document_signature_problem(document: Mapping[str, Any], keys: Keys) -> str | None:
    """Why the document's signature does not hold (None when it does).

    Codes in the answer: ``signature_missing``, ``unknown_signing_key``, ``signature_invalid``.
    """
    signature = document.get(SIGNATURE_FIELD)
    if not isinstance(signature, Mapping) or not signature.get("kid") or not signature.get("value"):
        return "signature_missing"
    if signature.get("alg", ALG) != ALG:
        return "signature_invalid"
    trusted = load_keys(keys)
    if signature["kid"] not in trusted:
        return "unknown_signing_key"
    body = {k: v for k, v in document.items() if k != SIGNATURE_FIELD}
    if not verify(str(signature["kid"]), canonical_json(body), str(signature["value"]), trusted):
        return "signature_invalid"
    return None
