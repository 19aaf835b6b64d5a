"""Compliance tests run in a database of their own.

They rewrite stored events behind the trigger's back and shred data keys; in the shared
database that would race with suites that follow every event (the projection runners),
and those suites decrypt every event with their own key-encryption key.
"""

from __future__ import annotations

import asyncpg
import pytest

from alliance.core.catalog import ALL_EVENT_TYPES
from alliance.core.compliance.signing import Signer
from alliance.core.events.codec import EventCodec
from alliance.core.events.crypto import PostgresKeyRing
from alliance.core.events.postgres import PostgresEventStore
from tests.compliance.helpers import History
from tests.conftest import own_database

KEK = bytes(range(32))


database, app_pool = own_database("alliance_test_compliance")


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
