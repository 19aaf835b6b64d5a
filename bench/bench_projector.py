"""The projector inside an HTTP worker versus as its own process (issue 17 part 4), same run.

    .venv/bin/python -m bench.bench_projector                    # both, 1,000 SSE subscribers, 30 s mix
    .venv/bin/python -m bench.bench_projector --projector separate --subscribers 400 --quick
    .venv/bin/python -m bench.bench_api --projector both            # the same, from bench_api

For each arrangement, on the same bench database, the same seed and the same generators as
``bench/bench_api.py``:

* ``inline``: ``uvicorn … --workers 2`` with ``ALLIANCE_BACKGROUND=inline`` (the default): one
  of the two workers leads the projection runner and the other background leaders;
* ``separate``: the same two workers with ``ALLIANCE_BACKGROUND=off`` and one
  ``alliance projector`` process beside them.

Phases per arrangement: the 70/25/5 mix (wrk, 100 connections), then the SSE fan-out (N
subscribers, one measurement per client per second). Printed side by side, with the load
average before and after (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_api import (
    CLASSES,
    JWT_SECRET,
    KEK,
    ROOT,
    WRK_LUA,
    Server,
    pct,
    raise_nofile,
    run_wrk,
    seed,
    spawn,
    sse_fanout,
    stop,
    wait_ready,
)
from bench.harness import console, create_bench_database, drop_bench_database, print_server

ARRANGEMENTS = ("inline", "separate")


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def start_projector(env: dict[str, str], work: Path) -> subprocess.Popen[bytes]:
    log = work / "projector.log"
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "alliance.api.cli", "projector"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)


async def ready(api: Server, projector: subprocess.Popen[bytes] | None, work: Path) -> None:
    """Until the service is ready and caught up; at once an error when the projector exits."""
    waiting = asyncio.create_task(wait_ready(api, "/ready", caught_up=True, limit=300))
    while not waiting.done():
        if projector is not None and projector.poll() is not None:
            waiting.cancel()
            tail = (work / "projector.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the projector exited ({projector.returncode}): {tail}")
        await asyncio.sleep(0.5)
    waiting.result()


async def measure(arrangement: str, env: dict[str, str], work: Path, s: object, data: Path, script: Path,
                  subscribers: int, seconds: float, sse_seconds: float) -> dict[str, float]:
    projector = None
    api: Server | None = None
    try:
        if arrangement == "separate":
            env = {**env, "ALLIANCE_BACKGROUND": "off"}
            projector = start_projector(env, work)
        api = spawn(f"alliance-{arrangement}", "alliance.api.app:create_app", env, work)
        await ready(api, projector, work)
        await run_wrk(api.port, "reads", 2, 100, script, data, work)  # warm-up
        before = load()
        mixed = await run_wrk(api.port, "mixed", seconds, 100, script, data, work)
        await ready(api, projector, work)
        sse = await sse_fanout(api.port, s, subscribers, sse_seconds)  # type: ignore[arg-type]
        figures = {"mix requests/s": mixed.rate(), "mix reads/s": mixed.rate(1)}
        for k, label in CLASSES.items():
            figures[f"mix {label} p50 ms"] = pct(mixed.latencies[k], 50)
            figures[f"mix {label} p99 ms"] = pct(mixed.latencies[k], 99)
        figures["mix 5xx + unexpected 4xx"] = float(mixed.server_errors + mixed.client_errors)
        figures["SSE measurements/s accepted"] = sse.posted / max(sse.seconds, 1e-9)
        figures["SSE POST p99 ms"] = pct(sse.post_latencies, 99)
        figures["SSE update p50 ms"] = pct(sse.latencies, 50)
        figures["SSE update p99 ms"] = pct(sse.latencies, 99)
        figures["SSE failed + errors + missed"] = float(len(sse.stream_errors) + sse.post_errors + sse.missed)
        console.print(f"  {arrangement}: load average {before} before the mix, {load()} after the SSE phase")
        return figures
    finally:
        if api is not None:
            stop(api)
        if projector is not None and projector.poll() is None:
            projector.terminate()
            projector.wait(timeout=30)


async def run(arrangements: tuple[str, ...], quick: bool, subscribers: int | None) -> dict[str, dict[str, float]]:
    if shutil.which("wrk") is None:
        raise SystemExit("bench_projector needs wrk: apt-get install -y wrk")
    seconds = 10.0 if quick else 30.0
    sse_seconds, default_subscribers = (5.0, 200) if quick else (20.0, 1000)
    subscribers = subscribers or default_subscribers
    raise_nofile()
    console.print(f"  CPUs {os.cpu_count()}; load average {load()} (other work on this machine shares the cores)")
    db = await create_bench_database()
    work = Path(tempfile.mkdtemp(prefix="alliance-bench-projector-"))
    results: dict[str, dict[str, float]] = {}
    try:
        await print_server(db)
        s = await seed(db, work / "seed-home", subscribers, measurements=3)
        observed = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        data = work / "clients.txt"
        data.write_text("".join(f"{cid} {tok} {gid} {ktok} {observed}\n" for cid, tok, gid, ktok in zip(
            s.clients, s.client_tokens, s.goals, s.clinician_tokens, strict=True)))
        script = work / "mix.lua"
        script.write_text(WRK_LUA)
        env = {**os.environ, "DATABASE_URL": db.owner_dsn, "ALLIANCE_HOME": str(work / "home"),
               "ALLIANCE_KEK": KEK, "ALLIANCE_JWT_SECRET": JWT_SECRET, "ALLIANCE_LOG_LEVEL": "warning",
               "ALLIANCE_ANCHOR_INTERVAL": "0", "PYTHONPATH": str(ROOT)}
        for arrangement in arrangements:
            console.print(f"  {arrangement}: mix {seconds:.0f} s, then SSE {subscribers:,} subscribers × 1/s "
                          f"for {sse_seconds:.0f} s")
            results[arrangement] = await measure(arrangement, env, work, s, data, script, subscribers, seconds,
                                                 sse_seconds)
    finally:
        await drop_bench_database(db)
        shutil.rmtree(work, ignore_errors=True)
    names = list(next(iter(results.values())))
    width = max(len(n) for n in names)
    console.print(f"\n  {'figure':<{width}}  " + "  ".join(f"{a:>12}" for a in results))
    for name in names:
        console.print(f"  {name:<{width}}  " + "  ".join(f"{results[a][name]:>12,.1f}" for a in results))
    console.print(f"  load average now {load()} ({os.cpu_count()} CPUs shared with other work)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projector", choices=("inline", "separate", "both"), default="both",
                        help="where the background leaders run: inside a worker, in `alliance projector`, or "
                             "both in turn (default)")
    parser.add_argument("--quick", action="store_true", help="10 s mix, 200 SSE subscribers for 5 s")
    parser.add_argument("--subscribers", type=int, default=None, help="SSE subscribers (default 1,000)")
    parser.add_argument("--separate-first", action="store_true",
                        help="with both: measure separate before inline (to see what the order costs)")
    args, _ = parser.parse_known_args()  # also reached from bench_api --projector
    arrangements = ARRANGEMENTS if args.projector == "both" else (args.projector,)
    if args.separate_first:
        arrangements = tuple(reversed(arrangements))
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(run(arrangements, args.quick, args.subscribers))


if __name__ == "__main__":
    main()
