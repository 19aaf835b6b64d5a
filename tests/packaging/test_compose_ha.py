"""docker-compose.ha.yml is read, not run, here: what can be checked by reading is checked —
nothing secret has a default, the app's DSN names both nodes and asks for the writable one,
every node registers with the monitor by password and over TLS, and the first node alone
makes the cluster (the second becomes the standby by base backup)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = re.compile(r"^\$\{[A-Z_]+:\?[^}]+\}$")


def _filled(value: str) -> str:
    """``value`` as compose hands it over once every ``${VAR:?…}`` is set (to a URL-safe word)."""
    return re.sub(r"\$\{[A-Z_]+(:[?-][^}]*)?\}", "secret", value)


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.ha.yml").read_text())


def test_no_secret_has_a_default_and_the_app_asks_for_the_writable_node() -> None:
    services = _compose()["services"]
    assert set(services) == {"monitor", "node1", "node2", "app"}
    app = services["app"]["environment"]
    for variable in ("ALLIANCE_APP_ROLE_PASSWORD", "ALLIANCE_KEK"):
        assert REQUIRED.match(app[variable]), variable
    for name in ("node1", "node2"):
        env = services[name]["environment"]
        assert REQUIRED.match(env["PGPASSWORD"]) and REQUIRED.match(env["POSTGRES_PASSWORD"]), name
        assert "autoctl_node:${PGAF_MONITOR_PASSWORD:?" in env["PG_AUTOCTL_MONITOR"], name
        monitor = urlsplit(_filled(env["PG_AUTOCTL_MONITOR"]))
        assert monitor.hostname == "monitor" and monitor.username == "autoctl_node", name
        assert parse_qs(monitor.query)["sslmode"] == ["require"], name

    assert "postgres:${POSTGRES_PASSWORD:?" in app["DATABASE_URL"]
    url = urlsplit(_filled(app["DATABASE_URL"]))
    assert url.netloc.rsplit("@", 1)[1] == "node1:5432,node2:5432" and url.path == "/alliance"
    query = parse_qs(url.query)
    assert query["target_session_attrs"] == ["read-write"] and query["sslmode"] == ["require"]
    assert set(services["app"]["depends_on"]) == {"node1", "node2"}
    text = (ROOT / "docker-compose.ha.yml").read_text()
    assert "change-me" not in text and "--auth trust" not in text


def test_nodes_register_by_password_and_only_the_first_makes_the_cluster() -> None:
    services = _compose()["services"]
    for name in ("node1", "node2"):
        script = services[name]["command"][-1]
        assert "pg_autoctl create postgres" in script and "--auth scram-sha-256" in script
        assert "--ssl-self-signed" in script and script.rstrip().endswith("exec pg_autoctl run")
        assert 'pg_autoctl config set replication.password "$$PGPASSWORD"' in script
        assert services[name]["environment"]["NODE"] == name
    assert services["node1"]["environment"]["FIRST"] == "yes" and services["node2"]["environment"]["FIRST"] == "no"
    assert "node1" in services["node2"]["depends_on"]  # registers once the first is primary
    monitor = services["monitor"]["command"][-1]
    assert "pg_autoctl create monitor" in monitor and "--auth scram-sha-256" in monitor
    assert "ALTER USER autoctl_node PASSWORD :'pw'" in monitor
