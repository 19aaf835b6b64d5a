"""Where a running worker's CPU goes, by stage: py-spy samples bucketed by the code they are in.

``bench_api --profile-writes`` records every uvicorn worker with ``py-spy record --format raw``
(collapsed stacks, Python frames, active samples only) while the writes phase runs, then hands
each sample to the first stage whose pattern matches a frame, scanning from the innermost frame
outwards (a codec call made by the store counts as the codec, not the store). Divided by the
requests served, that is the CPU each request costs per stage in the worker; PostgreSQL's side is
measured apart (``pg_stat_statements``, see bench/README.md).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

#: (stage, substrings of a frame's file path or function) — innermost match wins.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("driver (asyncpg, pool)", ("asyncpg/",)),
    ("AES-GCM (seal/open)", ("core/events/crypto", "cryptography/")),
    ("payload encode/validate, digest", ("core/events/codec",)),
    ("store: append/read (other)", ("core/events/",)),
    ("projection (plan/progress views)", ("core/projections/", "api/projector")),
    ("fan-out (change feed, SSE)", ("stream_", "api/routes/stream", "feed")),
    ("auth (bearer token)", ("api/auth", "jwt/", "api/access")),
    ("idempotency", ("api/idempotency",)),
    ("scoring (instrument plugins)", ("plugins/", "pluggy/")),
    ("command handler (decide, evolve)", ("core/handling", "core/client", "core/goal", "core/consent",
                                          "core/schedules", "core/alerts", "core/notifications")),
    ("route handler", ("api/routes/", "api/commands", "api/errors", "api/input_limits")),
    ("logging", ("structlog/", "core/logging")),
    ("HTTP framework (litestar)", ("litestar/",)),
    ("HTTP server (uvicorn)", ("uvicorn/", "httptools", "h11/")),
    ("event loop (asyncio/uvloop)", ("asyncio/", "uvloop/")),
)
OTHER = "other"


def worker_pids(parent: int) -> list[int]:
    """uvicorn's workers: the supervisor's children (Linux /proc)."""
    path = Path(f"/proc/{parent}/task/{parent}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _outputs(pids: list[int], into: Path) -> list[Path]:
    into.mkdir(parents=True, exist_ok=True)
    return [into / f"worker-{pid}.txt" for pid in pids]


async def record(pids: list[int], seconds: float, into: Path, rate: int = 250) -> list[Path]:
    """One py-spy recording per process, all at once; the files of those that succeeded."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    outs = _outputs(pids, into)
    procs = [await asyncio.create_subprocess_exec(
        py_spy, "record", "--format", "raw", "--nonblocking", "--rate", str(rate), "-d", str(max(1, int(seconds))),
        "-p", str(pid), "-o", str(out), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        for pid, out in zip(pids, outs, strict=True)]
    for proc in procs:
        await proc.wait()
    return [o for o in outs if o.exists() and o.stat().st_size > 0]


def cpu_ticks_by_name(names: tuple[str, ...] = ("postgres",), pids: tuple[int, ...] = ()) -> dict[str, int]:
    """CPU ticks (user + system, /proc) used so far by every live process whose command name is
    in ``names``, summed per name, and by ``pids`` (as "workers"). Take one reading before and
    one after a phase: the difference is what each side spent on it. Processes that start or end
    in between count only their part inside the window."""
    totals: dict[str, int] = dict.fromkeys((*names, "workers"), 0)
    wanted = set(pids)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        ticks = int(fields[11]) + int(fields[12])
        if int(entry.name) in wanted:
            totals["workers"] += ticks
        elif comm in names:
            totals[comm] += ticks
    return totals


def cpu_per_request(before: dict[str, int], after: dict[str, int], requests: float) -> dict[str, float]:
    """Microseconds of CPU per request on each side between two ``cpu_ticks_by_name`` readings."""
    hz = os.sysconf("SC_CLK_TCK")
    return {name: (after.get(name, 0) - before.get(name, 0)) / hz / max(requests, 1) * 1e6 for name in after}


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost last in collapsed stacks
        for stage, patterns in STAGES:
            if any(p in frame for p in patterns):
                return stage
    return OTHER


def budget(files: list[Path]) -> Counter[str]:
    """Samples per stage over every recording."""
    samples: Counter[str] = Counter()
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples[stage_of(stack.split(";"))] += int(count)
    return samples
