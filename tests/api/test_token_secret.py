"""No built-in token secret: a service without one (or an issuer) refuses to start with one line;
development mode makes up its own, kept in the home, shared by the server and ``alliance token``."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import jwt
import pytest
import yaml

from alliance.api.app import create_app
from alliance.api.auth import TokenVerifier, issue_token, signing_secret
from alliance.core.errors import ConfigurationError
from alliance.core.identity import Role
from alliance.core.settings import Settings, load_settings
from tests.api.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
KEK = base64.b64encode(bytes(range(32))).decode()


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    return subprocess.run([sys.executable, "-m", "alliance.api.cli", *args], env={**clean, **env},
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_serve_without_a_secret_or_issuer_exits_2_with_one_line(tmp_path):
    # An unreachable database: the refusal must come before anything touches it.
    r = _cli("serve", "--port", str(free_port()), env={"ALLIANCE_HOME": str(tmp_path), "ALLIANCE_KEK": KEK,
                                                       "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "ALLIANCE_JWT_SECRET" in lines[0] and "ALLIANCE_OIDC_ISSUER" in lines[0], lines
    assert not (tmp_path / "keys" / "jwt-secret").exists()


def test_serve_with_a_short_secret_exits_2_naming_the_variable(tmp_path):
    r = _cli("serve", "--port", str(free_port()), env={
        "ALLIANCE_HOME": str(tmp_path), "ALLIANCE_KEK": KEK, "ALLIANCE_JWT_SECRET": "change-me-in-production",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ALLIANCE_JWT_SECRET" in lines[0] and "32 bytes" in lines[0], r.stderr


def test_the_app_factory_refuses_without_a_secret(tmp_path):
    # What a uvicorn worker runs (alliance.api.app:create_app --factory).
    with pytest.raises(ConfigurationError) as refused:
        create_app(Settings(database_url="postgresql://unused/unused", kek=KEK, home=tmp_path))
    assert refused.value.field == "ALLIANCE_JWT_SECRET"
    with pytest.raises(ConfigurationError):
        issue_token(Settings(home=tmp_path), tenant=uuid.uuid4(), role=Role.ADMIN, sub=uuid.uuid4())
    with pytest.raises(ConfigurationError) as no_audience:
        TokenVerifier(Settings(home=tmp_path, oidc_issuer="https://idp.example"))
    assert no_audience.value.field == "ALLIANCE_OIDC_AUDIENCE"


def test_empty_variables_count_as_unset(tmp_path):
    # docker-compose passes `${ALLIANCE_JWT_SECRET:-}` as an empty string.
    settings = load_settings({"ALLIANCE_HOME": str(tmp_path), "ALLIANCE_JWT_SECRET": "", "ALLIANCE_OIDC_ISSUER": ""})
    assert settings.jwt_secret is None and settings.oidc_issuer is None and settings.env == "production"
    with pytest.raises(ConfigurationError):
        signing_secret(settings)


def test_development_mode_makes_up_a_private_secret_that_alliance_token_shares(tmp_path):
    settings = load_settings({"ALLIANCE_HOME": str(tmp_path), "ALLIANCE_ENV": "development"})
    secret = signing_secret(settings)
    assert secret is not None and len(secret) >= 32
    path = tmp_path / "keys" / "jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing_secret(settings) == secret  # kept, not made again
    assert signing_secret(load_settings({"ALLIANCE_HOME": str(tmp_path / "other"), "ALLIANCE_ENV": "development"})) \
        != secret
    tenant, sub = uuid.uuid4(), uuid.uuid4()
    r = _cli("token", "--tenant", str(tenant), "--role", "admin", "--sub", str(sub),
             env={"ALLIANCE_HOME": str(tmp_path), "ALLIANCE_ENV": "development"})
    assert r.returncode == 0, r.stderr
    claims = jwt.decode(r.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == str(sub) and claims["tenant"] == str(tenant) and claims["role"] == "admin"
    refused = _cli("token", "--tenant", str(tenant), "--role", "admin", "--sub", str(sub),
                   env={"ALLIANCE_HOME": str(tmp_path)})
    assert refused.returncode == 2 and "ALLIANCE_JWT_SECRET" in refused.stderr, refused.stderr
    assert not refused.stdout.strip()


def test_compose_defaults_no_secret():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    envs = {name: service.get("environment", {}) for name, service in compose["services"].items()}
    required = {("db", "POSTGRES_PASSWORD"), ("app", "DATABASE_URL"), ("app", "ALLIANCE_APP_ROLE_PASSWORD"),
                ("app", "ALLIANCE_KEK")}
    for service, variable in required:
        assert re.search(r"\$\{[A-Z_]+:\?[^}]+\}", envs[service][variable]), (service, variable)
    for variable in ("ALLIANCE_JWT_SECRET", "ALLIANCE_OIDC_ISSUER", "ALLIANCE_OIDC_AUDIENCE"):
        assert envs["app"][variable] == "${" + variable + ":-}"  # empty unless given: the service then refuses
    text = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in text and "-dev}" not in text
