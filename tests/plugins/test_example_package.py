"""The example clinic plugin installs into a fresh venv and is found through its entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "values_activity_log"

SCRIPT = textwrap.dedent("""
    import json
    from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager

    pm = get_plugin_manager()
    plugin = pm.get_plugin("values_activity_log")
    registry = InstrumentRegistry.from_plugin_manager(pm)
    result = registry.score("values_activity_log", {
        "activity": "Cooked dinner with my dad", "value_area": 1, "minutes": 45, "in_line": 8})
    print(json.dumps({
        "plugin_file": plugin.__file__,
        "distributions": [d.project_name for _, d in pm.list_plugin_distinfo()],
        "owner": registry.plugin_of("values_activity_log", "1.0"),
        "scores": result.scores,
        "free_text": result.free_text,
        "answers": result.answers,
        "fingerprint": result.fingerprint,
    }))
""")


def test_example_installs_and_scores_through_its_entry_point(tmp_path: Path) -> None:
    # Build from a copy so the install leaves no build/ or *.egg-info in the repo.
    source = tmp_path / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(source)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    # Alliance and its dependencies come from this checkout and its environment; the example
    # only lives in the fresh venv, so the registry can only have found it by its entry point.
    # ``site.addsitedir`` reads that environment's .pth files, where the editable install of
    # ``alliance`` lives (PYTHONPATH alone would not).
    purelib = sysconfig.get_paths()["purelib"]
    env = {"PATH": str(venv / "bin")}
    script = f"import site; site.addsitedir({purelib!r})\n" + SCRIPT
    run = subprocess.run([str(python), "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["plugin_file"].startswith(str(venv))
    assert "alliance-values-activity-log" in out["distributions"]
    assert out["owner"] == "values_activity_log"
    assert out["scores"] == {"total": 8, "minutes": 45}
    assert out["free_text"] == {"activity": "Cooked dinner with my dad"}
    assert out["answers"] == {"value_area": 1, "minutes": 45, "in_line": 8}
    assert len(out["fingerprint"]) == 64
