"""The installed distribution claims one import name, ``alliance`` (issue 14): a wheel built from
this checkout holds only ``alliance/…`` and its metadata, every module of the repository's
``core/``, ``api/`` and ``plugins/`` folders is in it, and from a plain install ``import core``
fails while ``import alliance.core`` works."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("core", "api", "plugins")


def _wheel(tmp_path: Path) -> Path:
    out = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--disable-pip-version-check", "-q", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = out.glob("alliance-*.whl")
    return wheel


def test_the_wheel_installs_only_the_alliance_package(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"alliance", next(t for t in top if t.endswith(".dist-info"))}, top
    shipped = {name for name in names if name.endswith((".py", ".sql"))}
    for folder in FOLDERS:
        for source in (ROOT / folder).rglob("*"):
            if source.suffix in (".py", ".sql") and "__pycache__" not in source.parts:
                wanted = "alliance/" + source.relative_to(ROOT).as_posix()
                assert wanted in shipped, f"{wanted} is missing from the wheel (list its package in pyproject.toml)"

    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                              "-q", "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    # -S: no site-packages, so neither this checkout nor its editable install is importable;
    # only the wheel's files in ``target`` are.
    probe = ("import importlib.util as u, json; "
             "print(json.dumps([u.find_spec(n) is not None for n in "
             "('core', 'api', 'plugins', 'alliance.core.errors', 'alliance.api', 'alliance.plugins.hookspecs')]))")
    env = {"PYTHONPATH": str(target), "PATH": os.environ.get("PATH", "")}
    run = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[false, false, false, true, true, true]"
    run = subprocess.run([sys.executable, "-S", "-c", "import core"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert run.returncode != 0 and "No module named 'core'" in run.stderr
    run = subprocess.run([sys.executable, "-S", "-c", "import alliance.core.errors as e; print(e.__file__)"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith(str(target)), run.stderr
