from __future__ import annotations

import base64
import json

from alliance.core.compliance.export import build_export, verify_export_file
from alliance.core.compliance.signing import Signer, sign_document
from tests.compliance.helpers import CANARY


async def test_export_verifies_offline(history, signer, app_pool, store):
    document = await build_export(app_pool, history.client, signer, store=store)
    assert document["verification"]["ok"]
    assert set(document["streams"]) == {history.client_stream, history.goal_stream}
    assert len(document["events"]) == 10
    assert document["streams"][history.goal_stream]["version"] == 5
    raw = json.dumps(document).encode()
    assert CANARY.encode() in raw  # the readable part (data) carries the decrypted words
    keys = json.loads(json.dumps(signer.jwks()))
    result = verify_export_file(raw, keys)  # from bytes, with only the public keys: no database
    assert result.ok, result.problems
    assert result.details["events_checked"] == 10


async def test_export_without_store_holds_no_plaintext(history, signer, app_pool):
    document = await build_export(app_pool, history.client, signer, tenant_id=history.tenant)
    assert CANARY not in json.dumps(document)
    assert all("data" not in e for e in document["events"])
    assert verify_export_file(document, signer).ok


async def test_tampered_export_is_named(history, signer, app_pool, tmp_path):
    document = await build_export(app_pool, history.client, signer)
    keys = signer.jwks()
    index = next(i for i, e in enumerate(document["events"])
                 if e["stream_id"] == history.goal_stream and e["version"] == 2)
    changed = json.loads(json.dumps(document))
    payload = json.loads(base64.b64decode(changed["events"][index]["payload_b64"]))
    payload["version"] = 9
    changed["events"][index]["payload_b64"] = base64.b64encode(json.dumps(payload).encode()).decode()
    path = tmp_path / "export.json"
    path.write_text(json.dumps(changed))
    result = verify_export_file(path, keys)
    assert result.codes == ["signature_invalid", "event_content_changed"]
    assert (result.problems[1].stream_id, result.problems[1].version) == (history.goal_stream, 2)

    # re-signed by someone else: the key is unknown, the content still does not add up
    stranger = Signer.open(tmp_path / "stranger")
    result = verify_export_file(sign_document(changed, stranger), keys)
    assert result.codes == ["unknown_signing_key", "event_content_changed"]

    # an event left out: the stream is incomplete
    partial = json.loads(json.dumps(document))
    del partial["events"][index]
    result = verify_export_file(sign_document(partial, signer), keys)
    assert result.codes == ["event_missing_or_moved"]
    assert (result.problems[0].stream_id, result.problems[0].version) == (history.goal_stream, 3)

    # a whole tail left out, heads adjusted to match: the signed heads would have to change too
    partial = json.loads(json.dumps(document))
    partial["events"] = [e for e in partial["events"] if not (e["stream_id"] == history.goal_stream
                                                             and e["version"] > 3)]
    result = verify_export_file(partial, keys)
    assert result.codes == ["signature_invalid", "head_mismatch"]

    assert verify_export_file(b"not json", keys).codes == ["malformed_export"]
