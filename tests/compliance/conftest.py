"""Compliance tests run in a database of their own.

They rewrite stored events behind the trigger's back and shred data keys; in the shared
database that would race with suites that follow every event (the projection runners),
and those suites decrypt every event with their own key-encryption key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.catalog import ALL_EVENT_TYPES
from core.compliance.signing import Signer
from core.database import create_app_pool
from core.events.codec import EventCodec
from core.events.crypto import PostgresKeyRing
from core.events.postgres import PostgresEventStore
from tests.compliance.helpers import History
from tests.conftest import Database
from tests.database import create_test_database, drop_test_database

KEK = bytes(range(32))


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[Database]:
    admin, owner, app = await create_test_database(prefix="alliance_test_compliance")
    yield Database(admin, owner, app)
    await drop_test_database(admin, owner)


@pytest.fixture(scope="session")
async def app_pool(database: Database) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_app_pool(database.app_dsn, min_size=1, max_size=6)
    yield pool
    await pool.close()


@pytest.fixture
async def store(app_pool, database):
    store = PostgresEventStore(app_pool, EventCodec(ALL_EVENT_TYPES), PostgresKeyRing(app_pool, KEK),
                               dsn=database.app_dsn)
    yield store
    await store.close()


@pytest.fixture
async def owner(database):
    conn = await asyncpg.connect(database.owner_dsn)
    yield conn
    await conn.close()


@pytest.fixture
def signer(tmp_path) -> Signer:
    return Signer.open(tmp_path / "signing-keys")


@pytest.fixture
async def history(store) -> History:
    history = History()
    await history.record(store)
    return history
