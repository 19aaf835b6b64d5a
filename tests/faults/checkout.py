"""Code of another commit to serve (the upgrade trial's previous main, or the code a trial
run is pointed at with ``ALLIANCE_FAULTS_COMMIT``): ``git archive`` of that commit into a temp
folder keyed by the commit, reused across runs. Read-only on the repository (no worktree,
no index): engineers share this tree."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def resolve(rev: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"], check=True,
                          capture_output=True, text=True).stdout.strip()


def snapshot(rev: str) -> Path:
    """A folder holding the tree of ``rev`` (created once per commit, then reused)."""
    commit = resolve(rev)
    target = Path(tempfile.gettempdir()) / f"alliance-code-{commit[:12]}"
    done = target / ".complete"
    if done.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit], check=True,
                             capture_output=True, timeout=120).stdout
    partial = Path(tempfile.mkdtemp(prefix="alliance-code-partial-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(partial, filter="data")
    (partial / ".complete").write_text(commit + "\n")
    os.chmod(partial, 0o755)
    try:
        partial.rename(target)  # atomic: a concurrent run sees all of it or none
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def served_code() -> Path:
    """The code the trials serve: this working tree, or ``ALLIANCE_FAULTS_COMMIT``'s snapshot."""
    rev = os.environ.get("ALLIANCE_FAULTS_COMMIT")
    return snapshot(rev) if rev else REPO


#: The package that holds ``core``, ``api`` and ``plugins``: none before the one-name rename
#: (b1a512d), ``alliance`` after it.
def package_prefix(code: Path) -> str:
    return "alliance." if '"alliance.api"' in (code / "pyproject.toml").read_text() else ""


def python_path(code: Path) -> str:
    """What goes on PYTHONPATH to import ``code`` ahead of this venv's editable install.

    Before the rename the folders are the packages. After it they install as ``alliance.*``
    only through setuptools' package-dir, so a snapshot gets a small ``alliance`` namespace
    of symlinks to its own folders (made once, beside the snapshot)."""
    if not package_prefix(code):
        return str(code)
    shim = code / ".alliance-namespace"
    if not (shim / "alliance" / "plugins").exists():
        (shim / "alliance").mkdir(parents=True, exist_ok=True)
        for name in ("core", "api", "plugins"):
            link = shim / "alliance" / name
            if not link.exists():
                link.symlink_to(code / name, target_is_directory=True)
    return str(shim)
