"""Where the database is: a server named by ``DATABASE_URL``, or an embedded one.

With ``DATABASE_URL`` unset, a private PostgreSQL 16 is started through the
``pgserver`` wheel in ``settings.embedded_data_dir``, reused across runs and
stopped when the process that started it exits. Both paths end in the same two
DSNs: the *owner* (runs migrations) and the least-privileged *app* role; the
rest of Alliance only ever sees asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from alliance.core.logging import get_logger
from alliance.core.settings import Settings

log = get_logger("alliance.database")

_embedded: dict[str, Any] = {}


@dataclass(frozen=True)
class DatabaseTarget:
    owner_dsn: str
    app_dsn: str
    embedded: bool


def start_embedded(settings: Settings) -> str:
    """Start (or attach to) the embedded server; returns the owner DSN of its ``postgres`` db."""
    import warnings

    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver  # imported lazily: only the embedded path needs it

    data_dir = settings.embedded_data_dir
    key = str(data_dir)
    if key not in _embedded:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _embedded[key] = pgserver.get_server(data_dir, cleanup_mode="stop")
        log.info("embedded_postgres_started", data_dir=key)
    return str(_embedded[key].get_uri())


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def with_user(dsn: str, user: str, password: str | None) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    cred = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit((parts.scheme, f"{cred}@{host}", parts.path, parts.query, parts.fragment))


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/") or "postgres"


async def ensure_database(admin_dsn: str, name: str) -> None:
    """Create database ``name`` if it does not exist (tolerates a concurrent creator)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # a concurrent creator won
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def resolve_target(settings: Settings) -> DatabaseTarget:
    """The owner and app DSNs for these settings, starting the embedded server if needed."""
    if settings.database_url:
        owner = settings.database_url
        embedded = False
    else:
        server_dsn = await asyncio.to_thread(start_embedded, settings)
        await ensure_database(server_dsn, settings.embedded_database)
        owner = with_database(server_dsn, settings.embedded_database)
        embedded = True
    app = with_user(owner, settings.app_role, settings.app_role_password)
    return DatabaseTarget(owner_dsn=owner, app_dsn=app, embedded=embedded)


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Pool connections carry no session state (no advisory locks, LISTENs or SETs):
    skipping asyncpg's default reset query saves a round trip per acquire."""


async def create_app_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, reset=_no_reset)
    assert pool is not None
    return pool
