from __future__ import annotations

import json
import uuid

from alliance.core.catalog import ALL_EVENT_TYPES
from alliance.core.compliance.erasure import LEDGER_FILE, erase_subject, read_ledger, reapply_erasures, record_erasure
from alliance.core.events.base import ERASED
from alliance.core.events.codec import EventCodec
from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from tests.compliance.conftest import KEK
from tests.compliance.helpers import CANARY


async def _proposal_words(app_pool, database, history) -> str | None:
    # a fresh store and key ring: nothing cached from before the "restore"
    store = PostgresEventStore(app_pool, EventCodec(ALL_EVENT_TYPES), PostgresKeyRing(app_pool, KEK),
                               dsn=database.app_dsn)
    try:
        return (await store.read_stream(history.goal_stream))[0].payload.client_words
    finally:
        await store.close()


async def test_erasures_are_reapplied_after_a_restore(history, store, signer, app_pool, database, owner, tmp_path):
    ledger = tmp_path / "erasure-ledger"
    assert CANARY in await _proposal_words(app_pool, database, history)
    saved = await owner.fetchrow("SELECT * FROM data_keys WHERE subject_id = $1", history.client)
    other = uuid.uuid4()
    record_erasure(ledger, signer, subject_id=other, tenant_id=history.tenant, reason="another client")
    entry = await erase_subject(store.keys, ledger, signer, subject_id=history.client, tenant_id=history.tenant,
                                reason=f"client asked ({CANARY})", notify=store.notify_key_destroyed)
    assert entry["destroyed"] and entry["seq"] == 2
    assert await _proposal_words(app_pool, database, history) == ERASED
    text = (ledger / LEDGER_FILE).read_text()
    assert CANARY not in text and str(history.client) in text

    # a restore from a backup taken before the erasure brings the wrapped key back
    await owner.execute("SET session_replication_role = replica")
    try:
        await owner.execute("UPDATE data_keys SET wrapped_key = $2, destroyed_at = NULL WHERE subject_id = $1",
                            history.client, saved["wrapped_key"])
    finally:
        await owner.execute("SET session_replication_role = origin")
    assert CANARY in await _proposal_words(app_pool, database, history)

    keyring = PostgresKeyRing(app_pool, KEK)
    done = await reapply_erasures(keyring, ledger, keys=signer.jwks())
    assert {d["subject_id"]: d["redestroyed"] for d in done} == {str(other): False, str(history.client): True}
    assert await _proposal_words(app_pool, database, history) == ERASED
    assert not any(d["redestroyed"] for d in await reapply_erasures(keyring, ledger, keys=signer.jwks()))


async def test_ledger_tampering_is_named_and_forged_lines_are_not_applied(signer, tmp_path):
    ledger = tmp_path / "ledger"
    subjects = [uuid.uuid4() for _ in range(3)]
    for subject in subjects:
        record_erasure(ledger, signer, subject_id=subject, tenant_id=uuid.uuid4(), reason="asked")
    entries, check = read_ledger(ledger, signer)
    assert check.ok and [e["seq"] for e in entries] == [1, 2, 3]

    lines = (ledger / LEDGER_FILE).read_text().splitlines()
    forged = json.loads(lines[1])
    forged["subject_id"] = str(uuid.uuid4())  # someone aims the shredder at another client
    (ledger / LEDGER_FILE).write_text("\n".join([lines[0], json.dumps(forged), lines[2]]) + "\n")
    entries, check = read_ledger(ledger, signer)
    assert "ledger_signature_invalid" in check.codes and "ledger_line_missing" in check.codes
    assert forged["subject_id"] not in {e["subject_id"] for e in entries}

    class Recorder:
        destroyed: list[uuid.UUID] = []

        async def destroy(self, subject_id):
            self.destroyed.append(subject_id)
            return True

    recorder = Recorder()
    await reapply_erasures(recorder, ledger, keys=signer)  # type: ignore[arg-type]
    assert recorder.destroyed == [subjects[0], subjects[2]]

    (ledger / LEDGER_FILE).write_text("\n".join([lines[0], lines[2]]) + "\n")  # a line removed
    assert read_ledger(ledger, signer)[1].codes == ["ledger_line_missing"]
