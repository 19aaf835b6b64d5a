"""The event store's own tests run in a database of their own.

They append events of test-only types and rewrite stored events behind the trigger's back;
the projection runners of other suites follow every event of their database with the
domain's codec, so these must not share it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.database import create_app_pool
from tests.conftest import Database
from tests.database import create_test_database, drop_test_database


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[Database]:
    admin, owner, app = await create_test_database(prefix="alliance_test_store")
    yield Database(admin, owner, app)
    await drop_test_database(admin, owner)


@pytest.fixture(scope="session")
async def app_pool(database: Database) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_app_pool(database.app_dsn, min_size=2, max_size=12)
    yield pool
    await pool.close()
