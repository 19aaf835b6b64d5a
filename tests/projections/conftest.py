from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.events.store import parse_checkpoint
from alliance.core.projections.registry import PROJECTIONS
from alliance.core.projections.runner import ProjectionRunner
from tests.conftest import own_database
from tests.database import TEST_KEK
from tests.projections.helpers import domain_codec

# Their own database: these tests run projection runners, which take each projection's
# advisory lock; another suite's app (and its runners) must not hold it.
database, app_pool = own_database("alliance_test_projections")


@pytest.fixture(scope="session")
def kek() -> bytes:
    return TEST_KEK


@pytest.fixture(scope="session")
async def store(app_pool: asyncpg.Pool, database, kek: bytes) -> AsyncIterator[PostgresEventStore]:  # type: ignore[no-untyped-def]
    s = PostgresEventStore(app_pool, domain_codec(), PostgresKeyRing(app_pool, kek), dsn=database.app_dsn)
    await s.listen()  # as every process does (core/runtime.py): keys are cached only while it listens
    yield s
    await s.close()


@pytest.fixture
async def runners(store: PostgresEventStore, database) -> AsyncIterator[list[ProjectionRunner]]:  # type: ignore[no-untyped-def]
    """The three projections running live in this process for the duration of a test."""
    rs = [ProjectionRunner(PROJECTIONS, store, dsn=database.app_dsn, poll_interval=0.5, standby_interval=0.1)]
    tasks = [asyncio.create_task(r.run()) for r in rs]
    try:
        yield rs
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


async def wait_projected(pool: asyncpg.Pool, checkpoint: str, names: tuple[str, ...] = ("plan", "progress", "history"),
                         timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait until every named active projection has folded up to ``checkpoint``."""
    want = parse_checkpoint(checkpoint)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await pool.fetch("SELECT name, checkpoint FROM projections.projection_versions "
                                "WHERE state = 'active' AND name = ANY($1::text[])", list(names))
        done = {r["name"] for r in rows if parse_checkpoint(r["checkpoint"]) >= want}
        if done >= set(names):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"projections not at {checkpoint}: {[dict(r) for r in rows]}")
        await asyncio.sleep(0.02)
