from __future__ import annotations

import json

from alliance.core.compliance.anchors import anchor_files, check_against_anchors, latest_anchor, write_anchor
from alliance.core.events.codec import GENESIS_HASH
from alliance.core.events.verify import check_event
from tests.compliance.helpers import Rewrite, stream_rows


async def _chain_holds(conn, stream_id: str) -> bool:
    """What ``alliance verify`` checks, for one stream: digests, links and versions."""
    prev = GENESIS_HASH
    for expected, row in enumerate(await stream_rows(conn, stream_id), start=1):
        if check_event(row, prev, expected) is not None:
            return False
        prev = bytes(row["hash"])
    head = await conn.fetchrow("SELECT head_hash FROM streams WHERE stream_id = $1", stream_id)
    return bytes(head["head_hash"]) == prev


async def test_anchor_file_is_signed_and_chained(history, signer, app_pool, tmp_path):
    first = await write_anchor(app_pool, signer, tmp_path / "anchors", verify_first=True)
    second = await write_anchor(app_pool, signer, tmp_path / "anchors")
    assert anchor_files(tmp_path / "anchors") == [first, second]
    document = json.loads(first.read_text())
    assert document["streams"][history.goal_stream]["version"] == 5
    assert document["store_check"]["events_checked"] >= 10
    assert json.loads(second.read_text())["previous"]["file"] == first.name
    assert latest_anchor(tmp_path / "anchors")["previous"]["file"] == first.name
    streams = {history.goal_stream, history.client_stream}
    assert (await check_against_anchors(app_pool, tmp_path / "anchors", signer.jwks(), stream_ids=streams)).ok


async def test_rewritten_tail_with_recomputed_hashes_is_caught_by_the_anchor(history, signer, app_pool, owner,
                                                                            tmp_path):
    directory = tmp_path / "anchors"
    await write_anchor(app_pool, signer, directory)
    streams = {history.goal_stream, history.client_stream}
    forged = json.dumps({"type": "goal.measure_attached", "instrument_id": "gad7", "schedule": "daily",
                         "by": str(history.clinician), "by_role": "clinician"}).encode()
    async with Rewrite(owner, history.goal_stream) as rewrite:
        await rewrite.change_payload(4, forged, recompute=True)
        assert await _chain_holds(owner, history.goal_stream)  # invisible to the chain check alone
        result = await check_against_anchors(owner, directory, signer.jwks(), stream_ids=streams)
        assert result.codes == ["anchored_head_mismatch"]
        problem = result.problems[0]
        assert (problem.stream_id, problem.version) == (history.goal_stream, 5)
        assert problem.file and problem.file.startswith("anchor-")

        # the same edit without recomputing: named at the changed event
        await rewrite.change_payload(4, forged + b" ", recompute=False)
        result = await check_against_anchors(owner, directory, signer.jwks(), stream_ids=streams)
        assert result.codes == ["event_content_changed"] and result.problems[0].version == 4
    async with Rewrite(owner, history.goal_stream) as rewrite:
        await rewrite.truncate(keep=3)
        result = await check_against_anchors(owner, directory, signer.jwks(), stream_ids=streams)
        assert result.codes == ["stream_truncated"] and result.problems[0].version == 5
    async with Rewrite(owner, history.goal_stream) as rewrite:
        await rewrite.truncate(keep=0)
        result = await check_against_anchors(owner, directory, signer.jwks(), stream_ids=streams)
        assert result.codes == ["stream_missing"]
    assert (await check_against_anchors(owner, directory, signer.jwks(), stream_ids=streams)).ok


async def test_tampered_or_removed_anchor_files_are_named(history, signer, app_pool, tmp_path):
    directory = tmp_path / "anchors"
    paths = [await write_anchor(app_pool, signer, directory) for _ in range(3)]
    streams = {history.goal_stream}
    document = json.loads(paths[2].read_text())
    document["streams"][history.goal_stream]["version"] = 4
    paths[2].write_text(json.dumps(document))
    result = await check_against_anchors(app_pool, directory, signer.jwks(), stream_ids=streams)
    assert result.codes == ["anchor_signature_invalid"] and result.problems[0].file == paths[2].name
    assert result.details["anchor_file"] == paths[1].name  # falls back to the newest good one
    paths[2].unlink()
    paths[0].unlink()
    result = await check_against_anchors(app_pool, directory, signer.jwks(), stream_ids=streams)
    assert result.codes == ["anchor_missing"] and result.problems[0].file == paths[1].name
    for path in anchor_files(directory):
        path.unlink()
    assert (await check_against_anchors(app_pool, directory, signer.jwks())).codes == ["no_anchor"]
