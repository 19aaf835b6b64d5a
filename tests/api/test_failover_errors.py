"""What a failover looks like to the app, as real PostgreSQL errors: no host of a multi-host DSN
accepts writes (the old primary gone, the standby not promoted yet), or a write reaches a node
that is read-only (a demoted primary, a standby). Both are outages: 503 with ``Retry-After``,
never a 500 (the failover trial in tests/faults/failover met the first as a 500)."""

from __future__ import annotations

from types import SimpleNamespace

import asyncpg
import pytest

from alliance.api.errors import EXCEPTION_HANDLERS, database_outage, outage_reason
from tests.conftest import Database


def _answer(exc: Exception) -> tuple[int, str | None, str]:
    request = SimpleNamespace(url=SimpleNamespace(path="/x"), scope={})
    response = EXCEPTION_HANDLERS[Exception](request, exc)
    return response.status_code, response.headers.get("Retry-After"), response.content.code


async def test_no_writable_host_in_a_multi_host_dsn_is_a_503_with_retry_after(database: Database) -> None:
    # The test server is a primary: asking for a standby is what asking for a primary meets
    # mid-failover, when every host answers but none is what the DSN requires.
    dsn = database.owner_dsn + ("&" if "?" in database.owner_dsn else "?") + "target_session_attrs=standby"
    with pytest.raises(asyncpg.TargetServerAttributeNotMatched) as caught:
        await asyncpg.connect(dsn, timeout=10)
    assert database_outage(caught.value)
    assert _answer(caught.value) == (503, "2", "database_unavailable")
    assert outage_reason(caught.value) == "no writable primary (failover in progress)"


async def test_a_write_refused_by_a_read_only_node_is_a_503_with_retry_after(database: Database) -> None:
    conn = await asyncpg.connect(database.owner_dsn, timeout=10)
    try:
        await conn.execute("SET default_transaction_read_only = on")  # what a demoted primary answers
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError) as caught:
            await conn.execute("CREATE TABLE failover_probe (x int)")
    finally:
        await conn.close()
    assert caught.value.sqlstate == "25006"
    assert database_outage(caught.value)
    assert _answer(caught.value) == (503, "2", "database_unavailable")
    assert outage_reason(caught.value) == "read-only (a standby)"


def test_a_connection_whose_server_died_mid_error_is_a_503_and_a_concurrency_bug_is_not() -> None:
    # Raised by asyncpg's protocol when the primary's backends die with a FATAL and no
    # ReadyForQuery follows (met in the failover trial, as a 500, before database_outage knew it).
    died = asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress")
    assert database_outage(died) and _answer(died) == (503, "2", "database_unavailable")
    assert outage_reason(died) == "connection lost"
    shared = asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
    assert not database_outage(shared) and _answer(shared)[0] == 500
