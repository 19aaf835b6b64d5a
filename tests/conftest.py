"""Shared fixtures: one migrated database per test run (embedded or ``DATABASE_URL``)."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from alliance.core.database import create_app_pool
from alliance.core.leader import Leader
from tests.database import create_test_database, drop_test_database


class Database:
    def __init__(self, admin_dsn: str, owner_dsn: str, app_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.owner_dsn = owner_dsn
        self.app_dsn = app_dsn


def own_database(prefix: str) -> tuple[Any, Any]:
    """``database`` and ``app_pool`` fixtures on a fresh database of their own.

    A suite uses its own database when it appends events of test-only types, rewrites
    events behind the trigger's back, or runs projection runners (which take each
    projection's advisory lock): the shared database's followers must not see that.
    """

    @pytest.fixture(scope="session")
    async def database() -> AsyncIterator[Database]:
        admin, owner, app = await create_test_database(prefix)
        yield Database(admin, owner, app)
        await drop_test_database(admin, owner)

    @pytest.fixture(scope="session")
    async def app_pool(database: Database) -> AsyncIterator[asyncpg.Pool]:
        pool = await create_app_pool(database.app_dsn, min_size=2, max_size=12)
        yield pool
        await pool.close()

    return database, app_pool


database, app_pool = own_database("alliance_test")


def pytest_configure(config: pytest.Config) -> None:
    from alliance.core.logging import configure_logging

    configure_logging(fmt="console", level="warning")


class LeaderLeftRunning(UserWarning):
    """A test ended with a background leader still running (stopped after it)."""


async def stop_left_running(before: set[Leader]) -> list[Leader]:
    """Stop every leader running now on this loop that was not in ``before``, with a warning
    naming each (the tests and their fixtures share one loop: pyproject's asyncio_default_*_loop_scope)."""
    left = [leader for leader in Leader.running(asyncio.get_running_loop()) if leader not in before]
    for leader in left:
        warnings.warn(f"{leader!r} was still running after the test: stopped", LeaderLeftRunning, stacklevel=1)
        await leader.stop()  # cancel_and_wait: also ends one that swallowed a cancellation
    return left


@pytest.fixture(autouse=True)
async def _no_leader_left_running() -> AsyncIterator[None]:
    """A test stopped by pytest-timeout skips its ``finally``: a leader it started would keep
    running (the tests share one event loop, see pyproject) and hold its lock, and the next
    tests' leaders of that name would stand by behind it and fail in cascade (seen in CI).
    Leaders already running when the test began (a wider fixture's) are left alone."""
    before = set(Leader.running())
    yield
    await stop_left_running(before)
