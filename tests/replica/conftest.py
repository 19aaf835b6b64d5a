"""A private primary and a hot standby streaming from it, and the app reading through both.

The primary is the fault suite's ``Cluster`` (tests/faults/cluster.py: the machine's PostgreSQL
binaries, a free loopback port, an unprivileged owner when run as root); the standby is a
``pg_basebackup -R`` of it started on a port of its own. Both are started once for this folder,
which runs in the normal suite (a bare ``pytest``), within about half a minute.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from alliance.api.app import create_app
from alliance.core.database import with_user
from alliance.core.migrations import apply_migrations
from alliance.core.settings import Settings
from tests.api.conftest import Api, api_settings, running
from tests.faults.cluster import Cluster

#: Every wait here is bounded: a test fails, it never hangs.
WAIT_SECONDS = 20.0
METRICS_TOKEN = "replica-metrics-token-0123456789abcdef"


class Pair:
    def __init__(self, primary: Cluster, standby: Cluster) -> None:
        self.primary = primary
        self.standby = standby

    def pause(self) -> None:
        self.standby.sql("SELECT pg_wal_replay_pause()")

    def resume(self) -> None:
        self.standby.sql("SELECT pg_wal_replay_resume()")

    async def caught_up(self) -> None:
        """Until the standby has replayed everything the primary had written when this was called."""
        target = int(self.primary.sql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").strip())
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while True:
            replayed = int(self.standby.sql(
                "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint").strip() or 0)
            if replayed >= target:
                return
            assert asyncio.get_running_loop().time() < deadline, f"standby stuck at {replayed} < {target}"
            await asyncio.sleep(0.05)


def start_standby(primary: Cluster) -> Cluster:
    """A hot standby of ``primary``: a base backup with ``-R`` (standby.signal and the primary's address)."""
    standby = Cluster()
    standby.root.mkdir(parents=True, exist_ok=True)
    standby.root.chmod(0o755)
    standby.socket_dir.mkdir(exist_ok=True)
    for path in (standby.root, standby.socket_dir):
        standby._own(path)
    primary.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                "-D", str(standby.data), "-R", "-X", "stream", "-c", "fast", "--no-sync")
    with (standby.data / "postgresql.conf").open("a") as conf:
        # The later lines win: its own port and socket; replies every second so the primary's view is current.
        conf.write(f"\nport = {standby.port}\nunix_socket_directories = '{standby.socket_dir}'\n"
                   "hot_standby = on\nwal_receiver_status_interval = 1s\n")
    standby.start()
    return standby


@pytest.fixture(scope="session")
def pair() -> Iterator[Pair]:
    primary = Cluster().init()
    primary.start()
    standby = None
    try:
        primary.create_database("alliance")
        primary.create_database("counted")  # test-only event types, away from the app's followers
        standby = start_standby(primary)
        yield Pair(primary, standby)
    finally:
        if standby is not None:
            standby.destroy()
        primary.destroy()


@pytest.fixture(scope="session")
def replica_settings(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    class Database:
        owner_dsn = pair.primary.dsn("alliance")

    base = api_settings(Database(), tmp_path_factory.mktemp("replica-home"))
    return msgspec.structs.replace(base, replica_url=pair.standby.dsn("alliance"), metrics_token=METRICS_TOKEN)


@pytest.fixture(scope="session")
async def api(replica_settings: Settings) -> AsyncIterator[Api]:
    app = create_app(replica_settings)
    async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                               base_url="http://alliance.test") as client:
        yield Api(client, replica_settings, app)


@pytest.fixture(scope="session")
async def counted_dsns(pair: Pair) -> tuple[str, str]:
    """App-role DSNs of the ``counted`` database on the primary and on the standby (migrated)."""
    await apply_migrations(pair.primary.dsn("counted"), app_role="alliance_app", app_role_password=None)
    await pair.caught_up()
    return (with_user(pair.primary.dsn("counted"), "alliance_app", None),
            with_user(pair.standby.dsn("counted"), "alliance_app", None))


@pytest.fixture(scope="session")
async def counted_pools(counted_dsns: tuple[str, str]) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    primary = await asyncpg.create_pool(counted_dsns[0], min_size=1, max_size=6)
    standby = await asyncpg.create_pool(counted_dsns[1], min_size=1, max_size=6)
    assert primary is not None and standby is not None
    yield primary, standby
    await primary.close()
    await standby.close()


async def current(router: Any) -> None:
    """Until a fresh sample finds the standby usable: answering, within the lag bound, past the erasure
    watermark (a standby only reaches the watermark a sample sets on a later sample)."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        sample = await router.sample(fresh=True)
        if sample.reason is None and sample.lag <= router.max_lag and router.keys_safe():
            return
        assert asyncio.get_running_loop().time() < deadline, (sample, router.fallbacks)
        await asyncio.sleep(0.02)


def router_of(api: Api) -> Any:
    router = api.services.runtime.replica
    assert router is not None, "the app was started without its replica"
    return router
