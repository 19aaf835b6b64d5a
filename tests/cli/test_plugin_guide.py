"""docs/plugins.md's "write your own measure" steps, as written, in a fresh venv: the package
of step 1, the measure of step 2, the test of step 3, the install of step 4 (that venv's own
pip), and iterating on its wording under development versions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "plugins.md"

SCRIPT = """
import json, sys
from alliance.core.errors import ConfigurationError
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager, write_fingerprints
from pathlib import Path

known = Path(sys.argv[1])
try:
    registry = InstrumentRegistry.from_plugin_manager(get_plugin_manager(), known_fingerprints=known)
except ConfigurationError as exc:
    print(json.dumps({"error": exc.message}))
else:
    write_fingerprints(known, registry.fingerprint_record())
    print(json.dumps({"versions": sorted(k for k in registry.fingerprints() if k.startswith("clinic_stress@"))}))
"""


def guide_blocks() -> list[str]:
    """The fenced code blocks of the write-your-own-measure steps, dedented."""
    text = GUIDE.read_text()
    steps = text[text.index("1. **Make a package**"):text.index("## Notification channels")]
    return [textwrap.dedent(block) for block in re.findall(r"```[a-z]*\n(.*?)\n\s*```", steps, re.S)]


def test_the_plugin_guide_works_as_written(tmp_path: Path) -> None:
    blocks = guide_blocks()
    toml = next(b for b in blocks if "[project.entry-points.alliance]" in b)
    measure = next(b for b in blocks if "def register_measures" in b)
    test = next(b for b in blocks if "def test_stress" in b)
    install = next(b for b in blocks if "pip install ./my_measure" in b)
    assert install.strip().startswith("/path/to/alliance/.venv/bin/pip install"), install  # the venv's pip

    package = tmp_path / "my_measure"
    (package / "my_measure").mkdir(parents=True)
    (package / "pyproject.toml").write_text(toml)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    purelib = sysconfig.get_paths()["purelib"]  # alliance itself: this checkout's environment
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    known = tmp_path / "instrument-fingerprints.json"

    def install_and_start(source: str) -> dict[str, object]:
        (package / "my_measure" / "__init__.py").write_text(source)
        command = install.strip().replace("/path/to/alliance/.venv", str(venv))
        done = subprocess.run(["bash", "-c", command + " --quiet --disable-pip-version-check"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        run = subprocess.run([str(venv / "bin" / "python"), "-c",
                              f"import site; site.addsitedir({purelib!r})\n" + SCRIPT, str(known)],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout.strip().splitlines()[-1])

    assert install_and_start(measure) == {"versions": ["clinic_stress@1"]}
    # step 3's test, against the installed package
    run = subprocess.run([str(venv / "bin" / "python"), "-c",
                          f"import site; site.addsitedir({purelib!r})\n" + test + "\ntest_stress()\n"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr

    # a changed word under a version start-up has seen: refused, naming the way out
    reworded = measure.replace("How stressed did you feel today?", "How stressed were you today?")
    assert reworded != measure
    refused = install_and_start(reworded)
    assert "new version" in str(refused.get("error")), refused
    # the guide's way to iterate: development versions, raised on each change
    assert 'version="1.dev1"' in GUIDE.read_text() and '"1.dev2"' in GUIDE.read_text()
    dev1 = install_and_start(reworded.replace('version="1"', 'version="1.dev1"'))
    assert dev1 == {"versions": ["clinic_stress@1.dev1"]}, dev1  # only installed versions are listed
    again = reworded.replace("How stressed were you today?", "How stressed have you been today?")
    assert "error" in install_and_start(again.replace('version="1"', 'version="1.dev1"'))
    assert install_and_start(again.replace('version="1"', 'version="1.dev2"')) == {
        "versions": ["clinic_stress@1.dev2"]}
