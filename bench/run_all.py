"""Run every benchmark module present: ``python -m bench.run_all [--quick] [--only bench_store,bench_api]``.

Each module (``bench_store``, ``bench_projections``, ``bench_api`` — the last needs
``wrk``) exposes ``main()``, which reads its options from the command line and
returns its ``Results``; a summary of every table follows at the end.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from bench.harness import Results, console

MODULES = ("bench_store", "bench_projections", "bench_api", "bench_alerts", "bench_reminders")


def _only(argv: list[str]) -> tuple[str, ...]:
    """The modules ``--only a,b`` names (taken out of ``argv``: each module reads the rest)."""
    if "--only" not in argv:
        return MODULES
    at = argv.index("--only")
    if at + 1 >= len(argv):
        raise SystemExit("--only needs module names, e.g. --only bench_store,bench_api")
    names = tuple(n.strip() for n in argv[at + 1].split(",") if n.strip())
    del argv[at:at + 2]
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        raise SystemExit(f"unknown benchmark module {unknown[0]!r}; one of: {', '.join(MODULES)}")
    return names


def main() -> int:
    if "-h" in sys.argv[1:] or "--help" in sys.argv[1:]:
        print(__doc__.strip())
        return 0
    collected: list[Results] = []
    for name in _only(sys.argv):
        if importlib.util.find_spec(f"bench.{name}") is None:
            continue
        console.rule(f"bench.{name}")
        module = importlib.import_module(f"bench.{name}")
        results = module.main()
        if isinstance(results, Results):
            collected.append(results)
    if collected:
        console.rule("summary")
        for results in collected:
            console.print(f"\n### {results.title}\n\n{results.markdown()}\n", markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
