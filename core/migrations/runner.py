"""Apply the versioned SQL files beside this module, once each, in order.

Safe when several processes start at once: the whole run holds a transaction-level
advisory lock, so the second process waits and then finds nothing left to do.
Each file runs in its own transaction together with its row in
``schema_migrations``, so a failed file leaves no half-applied schema. A file
that changed after it was applied is refused (its checksum is recorded).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from alliance.core.errors import ConfigurationError
from alliance.core.logging import get_logger

log = get_logger("alliance.migrations")

MIGRATIONS_DIR = Path(__file__).parent
_LOCK_KEY = 0x616C6C69616E6365  # "alliance"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise ConfigurationError(f"migration file name not understood: {path.name}")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    return found


def _render(sql: str, app_role: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", app_role):
        raise ConfigurationError("app role name must be a lower-case SQL identifier", field="app_role")
    return sql.replace(":app_role_literal", f"'{app_role}'").replace(":app_role", f'"{app_role}"')


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
  version    integer PRIMARY KEY,
  name       text NOT NULL,
  checksum   text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)"""


async def pending_migrations(conn: asyncpg.Connection) -> list[Migration]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = (
        {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
        if exists
        else {}
    )
    pending = []
    for migration in load_migrations():
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise ConfigurationError(
                    f"migration {migration.version:04d}_{migration.name} changed after it was applied"
                )
        else:
            pending.append(migration)
    return pending


async def apply_migrations(owner_dsn: str, *, app_role: str = "alliance_app",
                           app_role_password: str | None = None) -> list[str]:
    """Apply what is pending; returns the names applied (empty when up to date)."""
    conn = await asyncpg.connect(owner_dsn)
    applied: list[str] = []
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await conn.execute(_CREATE_TABLE)
        for migration in load_migrations():
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
                done = await conn.fetchval(
                    "SELECT checksum FROM schema_migrations WHERE version = $1", migration.version)
                if done is not None:
                    if done != migration.checksum:
                        raise ConfigurationError(
                            f"migration {migration.version:04d}_{migration.name} changed after it was applied")
                    continue
                await conn.execute(_render(migration.sql, app_role))
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version, migration.name, migration.checksum)
                applied.append(f"{migration.version:04d}_{migration.name}")
                log.info("migration_applied", version=migration.version, name=migration.name)
        async with conn.transaction():  # concurrent GRANTs on one object collide: keep them under the lock
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await conn.execute(f'GRANT SELECT ON schema_migrations TO "{app_role}"')
            if app_role_password is not None:
                literal = "'" + app_role_password.replace("'", "''") + "'"
                await conn.execute(f'ALTER ROLE "{app_role}" LOGIN PASSWORD {literal}')
    finally:
        await conn.close()
    return applied
