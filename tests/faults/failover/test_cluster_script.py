"""``deploy/ha_cluster.py`` as an operator runs it: ``--help`` names the verbs, ``status`` of a
running cluster shows both nodes and the multi-host DSN, and of a folder with no cluster it
stops with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deploy.ha_cluster import NODES, HACluster

SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "ha_cluster.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_help_status_and_a_missing_cluster(settled: HACluster, tmp_path: Path) -> None:
    shown = _run("--help")
    assert shown.returncode == 0 and all(verb in shown.stdout for verb in ("up", "down", "status"))

    status = _run("status", "--root", str(settled.root))
    print(f"\n[ha cluster status]\n{status.stdout}")
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[1:] if line.startswith("node")}
    assert set(rows) == set(NODES)
    assert sorted(r[2] for r in rows.values()) == ["primary", "secondary"]
    assert f"DATABASE_URL={settled.dsn()}" in status.stdout
    assert "target_session_attrs=read-write" in settled.dsn() and settled.dsn().count("127.0.0.1:") == 2

    missing = _run("status", "--root", str(tmp_path / "none"))
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [f"error: no cluster in {tmp_path / 'none'}"]
