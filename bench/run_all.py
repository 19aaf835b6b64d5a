"""Run every benchmark module present: ``python -m bench.run_all [--quick]``.

Each module (``bench_store``, ``bench_projections``, ``bench_api`` — the last needs
``wrk``) exposes ``main()``, which reads its options from the command line and
returns its ``Results``; a summary of every table follows at the end.
"""

from __future__ import annotations

import importlib
import importlib.util

from bench.harness import Results, console

MODULES = ("bench_store", "bench_projections", "bench_api", "bench_alerts", "bench_reminders")


def main() -> int:
    collected: list[Results] = []
    for name in MODULES:
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
