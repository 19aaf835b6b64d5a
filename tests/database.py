"""The test suite's database: a fresh database per run, on ``DATABASE_URL`` when set,
otherwise on the embedded PostgreSQL (started here if needed). Fails loudly when
neither can be had: a test that needs a database never silently skips."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg

from alliance.core.database import database_name, ensure_database, start_embedded, with_database, with_user
from alliance.core.migrations import apply_migrations
from alliance.core.settings import Settings, load_settings

APP_ROLE = "alliance_app"

#: The one key-encryption key of the test run (the app has one KEK; suites sharing a database must agree).
TEST_KEK = bytes(range(32))


def test_settings() -> Settings:
    settings = load_settings()
    if not settings.database_url:
        home = Path(os.environ.get("ALLIANCE_TEST_HOME", str(settings.home) + "-test"))
        settings = Settings(**{**{f: getattr(settings, f) for f in settings.__struct_fields__}, "home": home})
    return settings


async def create_test_database(prefix: str = "alliance_test") -> tuple[str, str, str]:
    """(admin_dsn, owner_dsn, app_dsn) of a new, migrated database."""
    settings = test_settings()
    admin = settings.database_url or start_embedded(settings)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await ensure_database(admin, name)
    owner = with_database(admin, name)
    await apply_migrations(owner, app_role=APP_ROLE)
    return admin, owner, with_user(owner, APP_ROLE, settings.app_role_password)


async def drop_test_database(admin_dsn: str, owner_dsn: str) -> None:
    name = database_name(owner_dsn)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
