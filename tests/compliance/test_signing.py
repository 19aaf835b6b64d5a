from __future__ import annotations

import hashlib
import json

from alliance.core.compliance.signing import (
    Signer,
    b64url_decode,
    document_signature_problem,
    load_keys,
    sign_document,
    verify,
)


def test_keys_persist_with_a_key_id_and_sign(tmp_path):
    signer = Signer.open(tmp_path / "keys")
    kid, signature = signer.sign(b"hello")
    [jwk] = signer.public_keys()
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["kid"] == kid
    assert kid == hashlib.sha256(b64url_decode(jwk["x"])).hexdigest()[:16]
    assert verify(kid, b"hello", signature, signer.public_keys())
    assert not verify(kid, b"hellO", signature, signer.public_keys())
    assert Signer.open(tmp_path / "keys").kid == kid  # reloaded from disk, not a new key
    assert oct((tmp_path / "keys" / f"{kid}.key").stat().st_mode & 0o777) == "0o600"


def test_rotation_keeps_old_signatures_verifiable(tmp_path):
    signer = Signer.open(tmp_path / "keys")
    old_doc = sign_document({"what": "agreed", "n": 1}, signer)
    old = signer.kid
    new = signer.rotate()
    assert new != old and signer.kid == new
    assert not (tmp_path / "keys" / f"{old}.key").exists()  # the old private half is gone
    jwks = json.loads(json.dumps(signer.jwks()))  # as served at the well-known URL
    assert {k["kid"] for k in jwks["keys"]} == {old, new}
    assert document_signature_problem(old_doc, jwks) is None
    new_doc = sign_document({"what": "agreed", "n": 2}, signer)
    assert new_doc["signature"]["kid"] == new
    assert document_signature_problem(new_doc, jwks) is None
    # another process sees the rotation after a reload
    other = Signer.open(tmp_path / "keys")
    assert other.kid == new


def test_changed_or_foreign_signatures_are_named(tmp_path):
    signer = Signer.open(tmp_path / "a")
    stranger = Signer.open(tmp_path / "b")
    doc = sign_document({"amount": 1}, signer)
    assert document_signature_problem({**doc, "amount": 2}, signer) == "signature_invalid"
    assert document_signature_problem(sign_document(doc, stranger), signer) == "unknown_signing_key"
    assert document_signature_problem({"amount": 1}, signer) == "signature_missing"
    assert set(load_keys(signer)) == {signer.kid}
