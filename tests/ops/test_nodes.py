"""Two ``alliance serve`` nodes on one database, sharing the KEK (ALLIANCE_KEK) and the signing-key,
anchor and erasure-ledger folders (settings pointing at one shared folder), each with a home of
its own: SSE resumes on the other node by Last-Event-ID, an Idempotency-Key retried on the other
node replays, a view cached on one node is dropped by a change made through the other; a node
with another KEK, or folders of its own, refuses to start with one line."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from alliance.core.projections.feed import decode_cursor, encode_cursor
from tests.database import create_test_database, drop_test_database
from tests.faults.service import Service, alliance_command
from tests.faults.sse import Follower
from tests.faults.world import active_goal, bootstrap_clinic, enrol_client, phq9

OTHER_KEK = base64.b64encode(bytes(range(200, 232))).decode()


def shared_folders(shared: Path) -> dict[str, str]:
    return {"ALLIANCE_SIGNING_KEY_DIR": str(shared / "signing-keys"), "ALLIANCE_ANCHOR_DIR": str(shared / "anchors"),
            "ALLIANCE_ERASURE_LEDGER_DIR": str(shared / "erasure-ledger")}


def measurement(n: int) -> dict[str, object]:
    return {"instrument_id": "phq9", "answers": phq9(n),
            "observed_at": (datetime.now(UTC) - timedelta(minutes=1, seconds=n)).isoformat()}


def refused(service: Service, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``alliance serve`` on a free port with ``env``: it must stop by itself (bounded)."""
    from tests.faults.cluster import free_port

    return subprocess.run([*alliance_command(), "serve", "--port", str(free_port()), "--workers", "1"],
                          env={**service.env, **env}, capture_output=True, text=True, timeout=120)


async def test_two_nodes_share_streams_idempotency_and_view_caches(tmp_path):
    admin, owner, _app = await create_test_database("alliance_nodes")
    shared = {**shared_folders(tmp_path / "shared"), "ALLIANCE_VIEW_CACHE_SECONDS": "60"}
    a = Service(owner, tmp_path / "home-a", workers=2, extra_env=shared)
    b = Service(owner, tmp_path / "home-b", workers=2, extra_env=shared)
    try:
        await asyncio.to_thread(a.start)
        await asyncio.to_thread(b.start)
        async with httpx.AsyncClient(timeout=20) as http:
            clinic = await bootstrap_clinic(a, http)
            client_id = await enrol_client(clinic, http)
            me = clinic.client_headers(client_id)
            stream = f"/clients/{client_id}/progress/stream?heartbeat=1"

            # SSE: follow on A until the first measurement shows, then resume on B from its id.
            first = await http.post(f"{a.url}/clients/{client_id}/measurements", json=measurement(1), headers=me)
            assert first.status_code == 201, first.text
            m1 = first.json()["created"]["measurement_id"]
            # From the client's first change (a stream opened without Last-Event-ID starts at "now",
            # and the measurement may be projected before it opens).
            on_a = Follower(a.url + stream, me, last_id=encode_cursor(0))
            await on_a.run(lambda: any(m1 in e.data for e in on_a.events), deadline=time.monotonic() + 20)
            assert any(m1 in e.data for e in on_a.events), on_a.errors
            resumed_from = on_a.last_id
            assert resumed_from is not None
            later = []
            for n in (2, 3):
                r = await http.post(f"{b.url}/clients/{client_id}/measurements", json=measurement(n), headers=me)
                assert r.status_code == 201, r.text
                later.append(r.json()["created"]["measurement_id"])
            on_b = Follower(b.url + stream, me, last_id=resumed_from)
            await on_b.run(lambda: any(later[-1] in e.data for e in on_b.events),
                           deadline=time.monotonic() + 20)
            assert any(all(m in e.data for m in later) for e in on_b.events), (on_b.errors, len(on_b.events))
            seen_a = [decode_cursor(e.id) for e in on_a.events]
            seen_b = [decode_cursor(e.id) for e in on_b.events]
            assert seen_b and min(seen_b) > decode_cursor(resumed_from)  # nothing delivered twice
            assert seen_b == sorted(set(seen_b)) and not set(seen_a) & set(seen_b)

            # Idempotency: the same key and body on the other node replays the first answer.
            key = str(uuid.uuid4())
            body = measurement(4)
            on_first = await http.post(f"{a.url}/clients/{client_id}/measurements", json=body,
                                       headers=clinic.client_headers(client_id, key))
            assert on_first.status_code == 201, on_first.text
            retried = await http.post(f"{b.url}/clients/{client_id}/measurements", json=body,
                                      headers=clinic.client_headers(client_id, key))
            assert retried.status_code == 201, retried.text
            assert retried.headers.get("idempotent-replayed") == "true"
            assert retried.json()["created"] == on_first.json()["created"]

            # View cache: A caches the plan (60 s); a goal agreed through B shows on A at once.
            plan_url = f"{a.url}/clients/{client_id}/plan"
            assert (await http.get(plan_url, headers=me)).status_code == 200
            assert (await http.get(plan_url, headers=me)).status_code == 200  # now from A's cache
            await active_goal(_on(clinic, b), http, client_id, "swim on saturdays")
            deadline = time.monotonic() + 10
            while "swim on saturdays" not in (await http.get(plan_url, headers=me)).text:
                assert time.monotonic() < deadline, "node A kept serving its cached plan"
                await asyncio.sleep(0.1)

            # Both nodes sign with the one key set: a receipt from A verifies against B's JWKS.
            jwks_a = (await http.get(a.url + "/.well-known/alliance-keys.json")).json()
            jwks_b = (await http.get(b.url + "/.well-known/alliance-keys.json")).json()
            assert jwks_a == jwks_b and jwks_a["keys"]
    finally:
        await asyncio.to_thread(a.stop)
        await asyncio.to_thread(b.stop)
        await drop_test_database(admin, owner)


def _on(clinic, service):  # type: ignore[no-untyped-def]
    """The same clinic, reached through another node."""
    from dataclasses import replace

    return replace(clinic, service=service)


async def test_a_node_with_another_kek_or_its_own_folders_refuses_to_start(tmp_path):
    admin, owner, _app = await create_test_database("alliance_nodes")
    a = Service(owner, tmp_path / "home-a", workers=2, extra_env=shared_folders(tmp_path / "shared"))
    try:
        # A new database: no data key exists yet, so only the recorded fingerprint can tell.
        await asyncio.to_thread(a.start)
        other_kek = await asyncio.to_thread(refused, a, {"ALLIANCE_HOME": str(tmp_path / "home-b"),
                                                          "ALLIANCE_KEK": OTHER_KEK})
        assert other_kek.returncode == 2, other_kek.stderr[-2000:]
        lines = [line for line in other_kek.stderr.splitlines() if line.startswith("alliance: ")]
        assert len(lines) == 1 and "ALLIANCE_KEK" in lines[0] and "other nodes" in lines[0], other_kek.stderr
        assert OTHER_KEK not in other_kek.stderr

        # No KEK given and a home of its own: it would make a new KEK file; it refuses instead.
        own_home = {"ALLIANCE_HOME": str(tmp_path / "home-c"), "ALLIANCE_KEK": ""}
        new_kek = await asyncio.to_thread(refused, a, own_home)
        assert new_kek.returncode == 2 and "ALLIANCE_KEK_FILE" in new_kek.stderr, new_kek.stderr[-2000:]
        assert not (tmp_path / "home-c" / "keys" / "kek").exists()

        # The right KEK but its own signing-key folder (the default, in its own home): refused.
        own_folders = await asyncio.to_thread(refused, a, {"ALLIANCE_HOME": str(tmp_path / "home-d"),
                                                           "ALLIANCE_SIGNING_KEY_DIR": ""})
        assert own_folders.returncode == 2, own_folders.stderr[-2000:]
        assert "ALLIANCE_SIGNING_KEY_DIR" in own_folders.stderr and "shared folder" in own_folders.stderr
        assert not list((tmp_path / "home-d").glob("signing-keys/*.key"))
    finally:
        await asyncio.to_thread(a.stop)
        await drop_test_database(admin, owner)
