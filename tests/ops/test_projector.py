"""HTTP workers that only serve (ALLIANCE_BACKGROUND=off) and ``alliance projector`` beside them:
the projector folds what a command appended and writes the change feed; two projectors are a
leader and a standby, and the standby takes over within a bound when the leader is killed -9."""

from __future__ import annotations

import asyncio
import time
from functools import partial

import asyncpg
import httpx

from tests.database import create_test_database, drop_test_database
from tests.faults.service import Service
from tests.faults.world import active_goal, bootstrap_clinic, enrol_client
from tests.ops.projector import Projector, wait_for

#: The leaders api/background.py starts (the projection runner writes the change feed's rows).
LEADERS = ("projections", "notifications", "reminders", "alerts")
#: Seconds a standby may take to lead after the leader's kill -9 (its session ends at once;
#: the standby retries its lock every second).
TAKEOVER_BOUND = 20.0


async def behind(http: httpx.AsyncClient, service: Service) -> dict[str, int]:
    ready = (await http.get(service.url + "/ready")).json()
    return {name: lag["events_behind"] for name, lag in ready["checks"]["projections"].items()}


async def changes(admin_dsn: str, client_id: object) -> int:
    conn = await asyncpg.connect(admin_dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM projections.changes WHERE client_id = $1", client_id))
    finally:
        await conn.close()


async def caught_up(http: httpx.AsyncClient, service: Service, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any((await behind(http, service)).values()):
            return True
        await asyncio.sleep(0.2)
    return False


async def test_workers_only_serve_and_a_standby_projector_takes_over(tmp_path):
    admin, owner, _app = await create_test_database("alliance_projector")
    service = Service(owner, tmp_path / "home", workers=2, extra_env={"ALLIANCE_BACKGROUND": "off"})
    first, second = Projector(service, "a"), Projector(service, "b")
    try:
        await asyncio.to_thread(service.start)
        async with httpx.AsyncClient(timeout=20) as http:
            ready = (await http.get(service.url + "/ready")).json()
            assert ready["checks"]["background"] == {"runs_here": False, "leading": {}}
            clinic = await bootstrap_clinic(service, http)
            client_id = await enrol_client(clinic, http)
            await active_goal(clinic, http, client_id, "walk to the park")
            await asyncio.sleep(1.5)
            # Nobody projects: the workers do not fold, the change feed has no row.
            assert all(n > 0 for n in (await behind(http, service)).values())
            assert await changes(service_admin(admin, owner), client_id) == 0

            first.start()
            for leader in LEADERS:  # every background leader runs in the projector, none in the workers
                led = await asyncio.to_thread(wait_for, partial(first.leads, leader), within=60)
                assert led, (leader, first.text())
            assert await caught_up(http, service, 30), await behind(http, service)
            before = await changes(service_admin(admin, owner), client_id)
            assert before > 0
            second.start()
            assert await asyncio.to_thread(wait_for, lambda: "projector_started" in second.text(), within=60)
            await asyncio.sleep(2)
            assert not any(second.leads(leader) for leader in LEADERS), second.text()  # standing by

            first.kill()
            killed = time.monotonic()
            await active_goal(clinic, http, client_id, "call my sister")
            for leader in LEADERS:
                assert await asyncio.to_thread(wait_for, partial(second.leads, leader), within=TAKEOVER_BOUND), \
                    (leader, second.text())
            assert await caught_up(http, service, TAKEOVER_BOUND), await behind(http, service)
            took = time.monotonic() - killed
            assert await changes(service_admin(admin, owner), client_id) > before
            plan = await http.get(f"{service.url}/clients/{client_id}/plan", headers=clinic.client_headers(client_id))
            assert "call my sister" in plan.text
            print(f"\nstandby projector led and caught up {took:.1f} s after the leader's kill -9")
            assert took < TAKEOVER_BOUND

            assert await asyncio.to_thread(second.terminate) == 0  # SIGTERM: a clean stop
            assert "projector_stopped" in second.text()
    finally:
        first.stop()
        second.stop()
        await asyncio.to_thread(service.stop)
        await drop_test_database(admin, owner)


def service_admin(admin: str, owner: str) -> str:
    """The superuser DSN on the test's own database (it reads the projections schema)."""
    from alliance.core.database import database_name, with_database

    return with_database(admin, database_name(owner))


def test_projector_start_up_problems_are_one_line_and_exit_2(tmp_path):
    import subprocess

    from tests.faults.cluster import free_port
    from tests.faults.service import alliance_command

    env = {"PATH": "/usr/bin:/bin", "ALLIANCE_HOME": str(tmp_path), "ALLIANCE_JWT_SECRET": "s" * 40}
    cases = [({"ALLIANCE_BACKGROUND": "sometimes"}, "ALLIANCE_BACKGROUND"),
             ({"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"}, "cannot connect")]
    for extra, named in cases:
        done = subprocess.run([*alliance_command(), "projector"], env={**env, **extra}, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2, (extra, done.stderr[-1000:])
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("alliance: ") and named in lines[0], done.stderr
