"""Every verb, given bad input or bad configuration, answers with one line on stderr and the
README's exit code (2: usage or configuration, 1: a check failed), never a traceback.

The commands run as real subprocesses of the installed ``alliance`` entry point."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.database import test_settings as database_settings

ALLIANCE = str(Path(sys.executable).with_name("alliance"))
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"  # port 1: nothing listens there


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_") and k != "DATABASE_URL"}
    env.update({"ALLIANCE_HOME": str(tmp_path / "home"), "NO_COLOR": "1", "COLUMNS": "80",
                "ALLIANCE_JWT_SECRET": "a test secret of more than thirty-two bytes"})
    env.update(extra)
    return env


def alliance(tmp_path: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ALLIANCE, *args], env=_env(tmp_path, **env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line the command printed on stderr (asserting there was exactly one, and no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(("variable", "value", "allowed"), [
    ("ALLIANCE_ANCHOR_INTERVAL", "abc", "seconds"),
    ("ALLIANCE_ANCHOR_INTERVAL", "-5", "0"),
    ("ALLIANCE_VIEW_CACHE_SECONDS", "soon", "seconds"),
    ("ALLIANCE_IDEMPOTENCY_HOURS", "0", "hours"),
    ("ALLIANCE_SMTP_PORT", "70000", "65535"),
    ("ALLIANCE_SMTP_TLS", "ssl", "starttls"),
    ("ALLIANCE_LOG_FORMAT", "xml", "json"),
    ("ALLIANCE_LOG_LEVEL", "loud", "debug"),
    ("ALLIANCE_KEK", "short", "32 random bytes"),
    ("ALLIANCE_PLUGINS_DIR", "/nonexistent/plugins", "directory"),
    ("ALLIANCE_PUBLIC_URL", "example.org", "http"),
    ("ALLIANCE_CORS_ORIGINS", "*", "scheme://host[:port]"),
    ("ALLIANCE_CORS_ORIGINS", "https://app.example/path", "no path"),
    ("DATABASE_URL", "mysql://x@y/z", "postgresql://"),
])
def test_a_bad_setting_is_one_line_naming_the_variable_exit_2(tmp_path, variable, value, allowed):
    result = alliance(tmp_path, "migrate", **{variable: value})
    assert result.returncode == 2, (result.returncode, result.stderr)
    line = one_line(result)
    assert line.startswith("alliance: ") and variable in line and allowed in line, line


def test_unreachable_database_is_one_line_exit_2(tmp_path):
    some = "5d3a1c7e-0b4e-4c55-9a51-6f7c2d8e9a10"
    for verb in (["migrate"], ["verify"], ["verify", "--anchors", "--scores"], ["projections", "status"],
                 ["projections", "rebuild"], ["projections", "verify"], ["anchor"], ["demo"], ["serve", "--port", "0"],
                 ["clinic", "bootstrap"], ["reapply-erasures"], ["replay", "--client", some],
                 ["erase", "--client", some, "--tenant", some, "--admin", some, "--reason", "asked"]):
        result = alliance(tmp_path, *verb, DATABASE_URL=UNREACHABLE)
        assert result.returncode == 2, (verb, result.returncode, result.stderr)
        line = one_line(result)
        assert "DATABASE_URL" in line and "127.0.0.1:1" in line, line


def test_debug_level_shows_the_details(tmp_path):
    result = alliance(tmp_path, "migrate", DATABASE_URL=UNREACHABLE, ALLIANCE_LOG_LEVEL="debug")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("alliance: ")
    assert len(result.stderr.strip().splitlines()) > 1  # the cause, at debug level


def test_version(tmp_path):
    from importlib.metadata import version

    result = alliance(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"alliance {version('alliance')}"


def test_usage_errors_exit_2_for_every_verb(tmp_path):
    bad = [["token", "--tenant", "x", "--role", "admin", "--sub", "y"],
           ["clinic", "bootstrap", "--tenant", "myclinic"],
           ["replay", "--client", "nope"],
           ["replay", "--client", "5d3a1c7e-0b4e-4c55-9a51-6f7c2d8e9a10", "--as-of", "yesterday"],
           ["erase", "--client", "x", "--tenant", "y", "--admin", "z", "--reason", "r"],
           ["serve", "--port", "notaport"], ["verify", "--export", "/nonexistent"],
           ["keys", "frobnicate"], ["nosuchverb"]]
    for args in bad:
        result = alliance(tmp_path, *args)
        assert result.returncode == 2, (args, result.returncode, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert "Error:" in result.stderr or "alliance:" in result.stderr, (args, result.stderr)


def test_verify_a_file_that_is_not_a_receipt_or_export_is_one_line_exit_2(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a receipt\n")
    wrong_shape = tmp_path / "other.json"
    wrong_shape.write_text('{"hello": "world"}')
    dsn = database_settings().database_url or ""
    for option in ("--receipt", "--export"):
        for document in (junk, wrong_shape):
            env = {"DATABASE_URL": dsn} if dsn else {}
            result = alliance(tmp_path, "verify", option, str(document), **env)
            assert result.returncode == 2, (option, document, result.returncode, result.stderr)
            line = one_line(result)
            assert document.name in line, line


def test_a_missing_kek_beside_an_existing_database_is_an_error_not_a_new_key(tmp_path, fresh_dsn):
    """Once data keys are stored, the KEK that wraps them must be there: a fresh one would make
    every stored personal field unreadable."""
    dsn = fresh_dsn
    kek_file = tmp_path / "kek"
    assert alliance(tmp_path, "demo", DATABASE_URL=dsn, ALLIANCE_KEK_FILE=str(kek_file),
                    timeout=300).returncode == 0
    kek_file.unlink()
    result = alliance(tmp_path, "projections", "status", DATABASE_URL=dsn, ALLIANCE_KEK_FILE=str(kek_file))
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert "ALLIANCE_KEK_FILE" in line and str(kek_file) in line, line
    assert not kek_file.exists()  # no new key was made
    # a different key (valid, 32 bytes) cannot unwrap the stored data keys: start-up stops
    other = "A" * 43 + "="
    result = alliance(tmp_path, "projections", "status", DATABASE_URL=dsn, ALLIANCE_KEK=other)
    assert result.returncode == 2, result.stderr
    assert "ALLIANCE_KEK" in one_line(result)


@pytest.fixture
def fresh_dsn() -> Iterator[str]:
    """A new, migrated database (dropped afterwards): the owner's DSN."""
    import asyncio

    from tests.database import create_test_database, drop_test_database

    admin, owner, _app = asyncio.run(create_test_database("alliance_cli"))
    yield owner
    asyncio.run(drop_test_database(admin, owner))


def _busy_port() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_port_is_one_line_exit_2_before_any_url_is_printed(tmp_path, workers, fresh_dsn):
    dsn = fresh_dsn
    busy = _busy_port()
    try:
        port = str(busy.getsockname()[1])
        result = alliance(tmp_path, "serve", "--port", port, "--workers", workers, DATABASE_URL=dsn)
    finally:
        busy.close()
    assert result.returncode == 2, (result.returncode, result.stderr)
    line = one_line(result)
    assert port in line and "http://" not in line, line


def test_a_bad_plugin_is_one_line_exit_2(tmp_path, fresh_dsn):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text("raise RuntimeError('this plugin is broken')\n")
    dsn = fresh_dsn
    for verb in (["serve", "--port", "0"], ["verify", "--scores"]):
        result = alliance(tmp_path, *verb, DATABASE_URL=dsn, ALLIANCE_PLUGINS_DIR=str(plugins))
        assert result.returncode == 2, (verb, result.returncode, result.stderr)
        line = one_line(result)
        assert "broken" in line, line


def test_demo_without_a_token_secret_says_so_before_loading(tmp_path):
    """`alliance demo` ends with tokens: without a secret it stops first, before any database work."""
    result = alliance(tmp_path, "demo", DATABASE_URL=UNREACHABLE, ALLIANCE_JWT_SECRET="")
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert "ALLIANCE_JWT_SECRET" in line and "database" not in line, line


def test_clinic_bootstrap_makes_ids_and_prints_the_admins_token(tmp_path, fresh_dsn):
    import shlex
    import uuid

    import jwt

    dsn = fresh_dsn
    assert "UUID" in alliance(tmp_path, "clinic", "bootstrap", "--help").stdout
    result = alliance(tmp_path, "clinic", "bootstrap", DATABASE_URL=dsn)
    assert result.returncode == 0, result.stderr
    exported = dict(word.split("=", 1) for line in result.stdout.splitlines() if line.startswith("export ")
                    for word in shlex.split(line)[1:])
    tenant, admin = uuid.UUID(exported["TENANT"]), uuid.UUID(exported["ADMIN"])
    claims = jwt.decode(exported["ADMIN_TOKEN"], _env(tmp_path)["ALLIANCE_JWT_SECRET"], algorithms=["HS256"])
    assert (claims["tenant"], claims["sub"], claims["role"]) == (str(tenant), str(admin), "admin")
    again = alliance(tmp_path, "clinic", "bootstrap", "--tenant", str(tenant), "--admin", str(admin),
                     DATABASE_URL=dsn)
    assert again.returncode == 0 and again.stdout.startswith("already done"), again.stdout
