"""Every verb the README names exists (its ``--help`` answers 0), and exit codes are the README's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ALLIANCE = str(Path(sys.executable).with_name("alliance"))
README = Path(__file__).resolve().parents[2] / "README.md"


def named_verbs() -> set[tuple[str, ...]]:
    text = README.read_text()
    verbs: set[tuple[str, ...]] = set()
    for match in re.finditer(r"`(?:\.venv/bin/)?alliance ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)", text):
        verbs.add(tuple(match.group(1).split()))
    cli = text[text.index("## CLI"):]
    cli = cli[:cli.index("\n## ", 1)]
    for row in re.finditer(r"^\| `([^`]+)`", cli, re.M):
        first, *alternatives = [part.strip() for part in row.group(1).split("\\|")]
        words = first.split()
        group = words[0]
        verbs.add((group,) if len(words) < 2 or not re.fullmatch(r"[a-z][a-z-]*", words[1]) else (group, words[1]))
        for alternative in alternatives:  # `projections status \| rebuild [NAME…]`
            verbs.add((group, alternative.split()[0]))
    return verbs


def test_every_verb_the_readme_names_exists(tmp_path):
    verbs = named_verbs()
    assert ("keys", "rotate") in verbs and ("clinic", "bootstrap") in verbs, verbs
    for verb in sorted(verbs):
        result = subprocess.run([ALLIANCE, *verb, "--help"], capture_output=True, text=True, timeout=60,
                                env={"PATH": "/usr/bin:/bin", "ALLIANCE_HOME": str(tmp_path)})
        assert result.returncode == 0, (verb, result.stdout, result.stderr)


def test_no_file_refers_to_documents_outside_the_repository():
    """Docstrings once cited a domain reference that ships nowhere; the facts are in docs/clinical-sources.md."""
    root = README.parent
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    # Spelled in pieces so this file does not match itself.
    outside = re.compile("|".join(("DOMAIN" + r"\.md", "PERFORMANCE" + r"\.md", "STYLE" + r"\.md", r"\.\./" + "shared",
                                   "/wo" + "rk/")))
    found = []
    for name in tracked.splitlines():
        path = root / name
        if path.suffix in {".py", ".md", ".toml", ".yml", ".yaml", ".json", ".sql", ".txt", ".cfg"} and path.is_file():
            found += [f"{name}: {m.group(0)}" for m in outside.finditer(path.read_text(errors="replace"))]
    assert found == [], found
    cited = {m.group(1) for name in tracked.splitlines() if name.endswith((".py", ".md")) and (root / name).is_file()
             for m in re.finditer(r"docs/clinical-sources\.md`{0,2} §(\d)", (root / name).read_text())}
    sections = set(re.findall(r"^## (\d)\.", (root / "docs" / "clinical-sources.md").read_text(), re.M))
    assert cited and cited <= sections, (cited, sections)
