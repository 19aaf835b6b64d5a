from __future__ import annotations

import json

from alliance.core.compliance.receipts import issue_receipt, issue_receipts, verify_receipt
from alliance.core.compliance.signing import Signer


async def _agreement(store, history):
    events = await store.read_stream(history.goal_stream)
    return next(e for e in events if e.type == "goal.agreed")


async def test_receipt_for_an_agreement_verifies(store, history, signer, app_pool):
    agreed = await _agreement(store, history)
    receipt = await issue_receipt(app_pool, agreed, signer)
    assert receipt["event_id"] == str(agreed.event_id) and receipt["version"] == agreed.version
    assert receipt["event_hash"] == agreed.hash.hex()
    assert receipt["chain_head"]["version"] == 5
    assert receipt["what"]["party"] == "client"
    assert "canary" not in json.dumps(receipt)
    result = await verify_receipt(json.loads(json.dumps(receipt)), store, signer.jwks())
    assert result.ok, result.problems
    assert result.details["events_checked"] == 5 - agreed.version + 1


async def test_receipts_only_for_agreements_and_consents(store, history, signer, app_pool):
    events = await store.read_stream(history.goal_stream) + await store.read_stream(history.client_stream)
    receipts = await issue_receipts(app_pool, events, signer)
    assert sorted(r["type"] for r in receipts) == ["consent.granted", "consent.granted", "goal.agreed",
                                                   "goal.agreed"]


async def test_changed_receipt_is_named(store, history, signer, app_pool):
    receipt = await issue_receipt(app_pool, await _agreement(store, history), signer)
    forged = {**receipt, "what": {**receipt["what"], "version": 2}}
    result = await verify_receipt(forged, app_pool, signer.jwks())
    assert result.codes == ["signature_invalid"]
    stranger = Signer.open(signer.directory.parent / "stranger")
    from alliance.core.compliance.signing import sign_document
    result = await verify_receipt(sign_document(forged, stranger), app_pool, signer.jwks())
    assert result.codes == ["unknown_signing_key"]


async def test_receipt_survives_key_rotation(store, history, signer, app_pool):
    receipt = await issue_receipt(app_pool, await _agreement(store, history), signer)
    signer.rotate()
    assert (await verify_receipt(receipt, app_pool, signer.public_keys())).ok


async def test_changed_stored_event_is_named(store, history, signer, app_pool, owner):
    from tests.compliance.helpers import Rewrite

    agreed = await _agreement(store, history)
    receipt = await issue_receipt(app_pool, agreed, signer)
    forged = json.dumps({"type": "goal.agreed", "goal_id": str(history.goal), "version": 7, "party": "client",
                         "by": str(history.client), "by_role": "client", "on_behalf": False}).encode()
    async with Rewrite(owner, history.goal_stream) as rewrite:
        await rewrite.change_payload(agreed.version, forged, recompute=False)
        result = await verify_receipt(receipt, app_pool, signer.jwks())
        assert result.codes == ["event_content_changed"]
        assert (result.problems[0].stream_id, result.problems[0].version) == (history.goal_stream, agreed.version)
    assert (await verify_receipt(receipt, app_pool, signer.jwks())).ok


async def test_rewritten_history_with_recomputed_hashes_is_named(store, history, signer, app_pool, owner):
    from tests.compliance.helpers import Rewrite

    agreed = await _agreement(store, history)
    receipt = await issue_receipt(app_pool, agreed, signer)
    forged = json.dumps({"type": "goal.agreed", "goal_id": str(history.goal), "version": 7, "party": "client",
                         "by": str(history.client), "by_role": "client", "on_behalf": False}).encode()
    async with Rewrite(owner, history.goal_stream) as rewrite:
        await rewrite.change_payload(agreed.version, forged, recompute=True)
        result = await verify_receipt(receipt, app_pool, signer.jwks())
        assert "event_hash_mismatch" in result.codes and "head_rewritten" in result.codes
        assert result.problems[0].version == agreed.version
    async with Rewrite(owner, history.goal_stream) as rewrite:  # a later event rewritten: the head shows it
        await rewrite.change_payload(5, json.dumps({"type": "goal.measure_attached", "instrument_id": "gad7",
                                                    "schedule": "daily", "by": str(history.clinician),
                                                    "by_role": "clinician"}).encode(), recompute=True)
        result = await verify_receipt(receipt, app_pool, signer.jwks())
        assert result.codes == ["head_rewritten"] and result.problems[0].version == 5
    async with Rewrite(owner, history.goal_stream) as rewrite:
        await rewrite.truncate(keep=3)
        result = await verify_receipt(receipt, app_pool, signer.jwks())
        assert result.codes == ["stream_truncated"]
    async with Rewrite(owner, history.goal_stream) as rewrite:
        await rewrite.truncate(keep=1)
        result = await verify_receipt(receipt, app_pool, signer.jwks())
        assert result.codes == ["event_missing"]
