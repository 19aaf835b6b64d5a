"""Trial: the restore drill. A base backup, then an erasure, then the backup restored (stop,
swap the data directory, start) and ``alliance reapply-erasures`` run before serving, as the
README's operations section says.

Promise: an erasure survives a restore from a backup taken before it: no read shows the
erased text, while what was not erased is still there.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from tests.faults.stack import own_stack
from tests.faults.world import active_goal, bootstrap_clinic, canary, enrol_client, eventually, status_counts

READS = 40


async def test_restore_from_a_backup_older_than_an_erasure_then_reapply(workdir, http) -> None:
    with own_stack(workdir / "restore-home") as (cluster, service):
        url = service.url
        clinic = await bootstrap_clinic(service, http)
        erased, kept = await enrol_client(clinic, http), await enrol_client(clinic, http)
        text, other = canary(), canary()
        await active_goal(clinic, http, erased, f"Swim on Sundays {text}")
        await active_goal(clinic, http, kept, f"Cook on Mondays {other}")

        async def projected() -> bool:
            r = await http.get(f"{url}/clients/{erased}/plan", headers=clinic.headers("clinician"))
            return r.status_code == 200 and text in r.text

        assert await eventually(projected, within=15), "the projection did not catch up within 15 s"
        backup = await asyncio.to_thread(cluster.base_backup, cluster.root / "backup")
        before_erasure = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        r = await http.post(f"{url}/clients/{erased}/erasure", json={"reason": "the client asked"},
                            headers=clinic.headers("admin", key=str(uuid.uuid4())))
        assert r.status_code == 201, r.text

        await asyncio.to_thread(service.stop)
        await asyncio.to_thread(cluster.restore, backup)
        reapplied = await asyncio.to_thread(service.cli, "reapply-erasures")
        await asyncio.to_thread(service.start)

        reads = _reads(url, erased, clinic, before_erasure)
        statuses, hits = [], 0
        for n in range(READS):
            target, headers = reads[n % len(reads)]
            r = await http.get(target, headers=headers, timeout=5.0)
            statuses.append(r.status_code)
            hits += text in r.text
        kept_plan = await http.get(f"{url}/clients/{kept}/plan", headers=clinic.client_headers(kept))

    print(f"\n[restore drill] reapply-erasures exit={reapplied.returncode} says {reapplied.stdout.strip()!r}; "
          f"reads after restore={len(statuses)} statuses={status_counts(statuses)} showing the erased text={hits}; "
          f"not-erased client's plan {kept_plan.status_code} shows its text={other in kept_plan.text}")
    assert reapplied.returncode == 0, reapplied.stdout + reapplied.stderr
    assert hits == 0, f"{hits} of {len(statuses)} reads after the restore showed the erased text"
    assert kept_plan.status_code == 200 and other in kept_plan.text, "the restore lost what was not erased"


def _reads(url: str, client_id: uuid.UUID, clinic, before: str) -> list[tuple[str, dict[str, str]]]:
    me, clinician = clinic.client_headers(client_id), clinic.headers("clinician")
    base = f"{url}/clients/{client_id}"
    return [(f"{base}/plan", clinician), (f"{base}/plan", me), (f"{base}/plan?as_of={before}", clinician),
            (f"{base}/history", clinician), (f"{base}/export", me), (f"{base}/progress", me),
            (f"{base}/history?as_of={before}", clinician), (f"{base}/fhir", clinician)]

