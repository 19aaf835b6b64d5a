"""A cluster and a service of a trial's own, for trials that rewind or replace the database
(a restore) and must not take the shared cluster's other trials with them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.faults.cluster import Cluster
from tests.faults.service import Service


@contextlib.contextmanager
def own_stack(home: Path, database: str = "alliance") -> Iterator[tuple[Cluster, Service]]:
    cluster = Cluster().init()
    cluster.start()
    service = None
    try:
        service = Service(cluster.create_database(database), home)
        service.start()
        yield cluster, service
    finally:
        if service is not None:
            service.stop()
        cluster.destroy()
