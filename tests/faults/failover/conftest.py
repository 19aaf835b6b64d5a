"""The failover trials: ``alliance serve --workers 2`` on a pg_auto_failover cluster (monitor,
primary, synchronous standby; ``deploy/ha_cluster.py``), whose nodes the trials kill.

Their own CI step (``pytest -q -s tests/faults/failover``, with ``postgresql-15-auto-failover``
installed), not part of the fault suite's: ``pytest tests/faults`` skips this folder unless it
(or a file in it) is named on the command line, so each suite keeps its own time budget.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.ha_cluster import NODES, HACluster
from tests.faults.service import Service, logged_errors
from tests.faults.world import Clinic, bootstrap_clinic

HERE = Path(__file__).resolve().parent

#: Seconds one failover trial may take (its kill, promotion, retries, verifies); all of them
#: together stay within the CI step's 10 minutes.
TRIAL_TIMEOUT = 240
#: Seconds for the cluster to settle again (a killed node restarted and caught up).
SETTLE_SECONDS = 90.0


def _requested(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        path = path if path.is_absolute() else Path(config.invocation_params.dir) / path
        with contextlib.suppress(ValueError):
            path.resolve().relative_to(HERE)
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name.startswith("test_") and not _requested(config):
        return True
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            # first, so it wins over the fault suite's shorter bound added to the same items
            item.add_marker(pytest.mark.timeout(TRIAL_TIMEOUT), append=False)


@pytest.fixture(scope="session")
def ha() -> Iterator[HACluster]:
    # a folder the unprivileged owner can traverse (mkdtemp's would be root's, mode 700)
    cluster = HACluster(Path(tempfile.gettempdir()) / f"alliance-ha-{uuid.uuid4().hex[:8]}")
    try:
        dsn = cluster.up()
        print(f"\n[ha cluster] DATABASE_URL={dsn}")
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="session")
def ha_service(ha: HACluster, workdir: Path) -> Iterator[Service]:
    service = Service(ha.dsn(), workdir / "ha-home")
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def settled(ha: HACluster, ha_service: Service) -> Iterator[HACluster]:
    """Both nodes running, one primary and one secondary, and the service healthy, whatever the
    last trial killed; afterwards, the errors the service logged during the trial."""
    for name in NODES:
        if name not in ha.pgids:
            ha.start(name)
    ha.wait_settled(SETTLE_SECONDS)
    if ha_service.proc is None or ha_service.proc.poll() is not None:
        ha_service.start()
    ha_service.wait_healthy()
    offset = ha_service.log.stat().st_size if ha_service.log.exists() else 0
    yield ha
    print(f"\n[server log] errors during the trial: {logged_errors(ha_service.log, offset)}")


@pytest.fixture
async def ha_clinic(settled: HACluster, ha_service: Service, http: httpx.AsyncClient) -> Clinic:
    return await bootstrap_clinic(ha_service, http)
