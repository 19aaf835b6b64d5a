"""The fault-injection suite: operator-style trials against a private PostgreSQL cluster and
``alliance serve --workers 2`` subprocesses.

It is its own CI step (``.venv/bin/pytest -q -s tests/faults``, run once), not part of the
default run: a bare ``pytest`` (both database passes of ``.ci/run``) skips collecting this
folder unless it is named on the command line. Adding a trial: a ``test_*.py`` here using the
``cluster``, ``service`` and ``clinic`` fixtures (or a ``Cluster``/``Service`` of its own when it
swaps data directories or runs other code), printing its figures and asserting them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.cluster import Cluster
from tests.faults.service import Service, logged_errors
from tests.faults.world import Clinic, bootstrap_clinic

HERE = Path(__file__).resolve().parent


def _requested(config: pytest.Config) -> bool:
    """True when an argument on the command line names this folder or something inside it."""
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        path = path if path.is_absolute() else Path(config.invocation_params.dir) / path
        try:
            path.resolve().relative_to(HERE)
        except ValueError:
            continue
        return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name.startswith("test_") and not _requested(config):
        return True
    return None


#: Seconds one trial may take before pytest-timeout fails it (the suite's budget is 8 minutes).
TRIAL_TIMEOUT = 150


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.timeout(TRIAL_TIMEOUT))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The suite's private cluster (trials that restore a backup make their own)."""
    c = Cluster().init()
    c.start()
    try:
        yield c
    finally:
        c.destroy()


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """Homes of the trials' services; their logs are copied to ``ALLIANCE_FAULTS_KEEP_LOGS`` (a
    folder) when set, e.g. as CI artifacts, before the rest is removed."""
    path = Path(tempfile.mkdtemp(prefix="alliance-faults-home-"))
    yield path
    if keep := os.environ.get("ALLIANCE_FAULTS_KEEP_LOGS"):
        for log in path.rglob("*.log"):
            target = Path(keep) / log.relative_to(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(log, target)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_service(cluster: Cluster, workdir: Path) -> Iterator[Service]:
    service = Service(cluster.create_database("alliance"), workdir / "home")
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def service(shared_service: Service, cluster: Cluster) -> Iterator[Service]:
    """The shared service, running and healthy at the start of every trial, whatever the last one did;
    after the trial, the errors its log gained (by event, class and route: a figure of the trial)."""
    if not cluster.running():
        cluster.start()
    if shared_service.proc is None or shared_service.proc.poll() is not None:
        shared_service.start()
    shared_service.wait_healthy()
    offset = shared_service.log.stat().st_size if shared_service.log.exists() else 0
    yield shared_service
    print(f"\n[server log] errors during the trial: {logged_errors(shared_service.log, offset)}")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20.0) as client:
        yield client


@pytest.fixture
async def clinic(service: Service, http: httpx.AsyncClient) -> Clinic:
    """A new clinic per trial: no trial reads another's data."""
    return await bootstrap_clinic(service, http)
