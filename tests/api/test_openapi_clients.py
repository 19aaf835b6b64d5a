"""Generated clients name the main types: openapi-typescript (npm, pinned) and
openapi-python-client (the test extra, pinned) read the document and give ``PlanView`` and
``ProgressView`` — and the Python client's models read the documented examples back unchanged.

Node and npm are required (the README's test machine and CI have them): without them this
test fails, it does not skip. openapi-typescript is installed once per test home with npm.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from alliance.api.app import create_app
from alliance.api.schemas import examples
from alliance.core.settings import Settings, load_settings

OPENAPI_TYPESCRIPT = "7.13.0"


def tools_home() -> Path:
    """Where npm installs land, kept between runs (as the test databases' home is)."""
    home = Path(os.environ.get("ALLIANCE_TEST_HOME", str(load_settings().home) + "-test"))
    return home / "tools"


@pytest.fixture(scope="module")
def document_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("oas-clients")
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/none", home=home,
                        kek=base64.b64encode(bytes(32)).decode(), jwt_secret="s" * 40)
    path = home / "openapi.json"
    path.write_text(json.dumps(create_app(settings, run_projections=False).openapi_schema.to_schema()))
    return path


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def openapi_typescript() -> Path:
    npm = shutil.which("npm")
    assert npm and shutil.which("node"), "node and npm are needed to check the TypeScript client (apt install npm)"
    prefix = tools_home() / f"openapi-typescript-{OPENAPI_TYPESCRIPT}"
    binary = prefix / "node_modules" / ".bin" / "openapi-typescript"
    if not binary.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        _run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
              f"openapi-typescript@{OPENAPI_TYPESCRIPT}"])
    return binary


def test_openapi_typescript_names_plan_and_progress(document_file: Path, tmp_path: Path):
    out = tmp_path / "alliance.d.ts"
    _run([str(openapi_typescript()), str(document_file), "-o", str(out)])
    types = out.read_text()
    for name in ("PlanView", "ProgressView", "GoalView", "HistoryView", "CommandResult", "Problem"):
        assert f"        {name}: {{" in types, f"components['schemas']['{name}'] missing"
    # the operations answer those named types, not `unknown`
    for operation, name in (("getPlan", "PlanView"), ("getProgress", "ProgressView")):
        start = types.index(f"    {operation}: {{")
        body = types[start:types.index("\n    };", start)]
        assert f'components["schemas"]["{name}"]' in body, body[:2000]
    assert 'goals: components["schemas"]["PlanGoal"][];' in types


def test_openapi_python_client_models_read_the_examples_back(document_file: Path, tmp_path: Path):
    package = tmp_path / "alliance_client"
    bin_dir = str(Path(sys.executable).parent)  # its post-generation hook runs ruff from here
    _run([sys.executable, "-m", "openapi_python_client", "generate", "--path", str(document_file),
          "--output-path", str(package), "--meta", "none"],
         env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")})
    models = package / "models"
    assert "class PlanView" in (models / "plan_view.py").read_text()
    assert "class ProgressView" in (models / "progress_view.py").read_text()
    check = f"""
import json, sys
sys.path.insert(0, {str(tmp_path)!r})
from alliance_client.models.plan_view import PlanView
from alliance_client.models.progress_view import ProgressView
plan, progress = json.load(sys.stdin)
p, q = PlanView.from_dict(plan), ProgressView.from_dict(progress)
assert type(p.goals[0]).__name__ == "PlanGoal" and p.goals[0].client_words, p
assert type(q.goals[0].measures[0]).__name__ == "MeasureSummary", q
assert p.to_dict() == plan, "PlanView does not read the plan example back unchanged"
assert q.to_dict() == progress, "ProgressView does not read the progress example back unchanged"
"""
    sample = [msgspec.to_builtins(examples.plan_example()), msgspec.to_builtins(examples.progress_example())]
    _run([sys.executable, "-c", check], input=json.dumps(sample))
