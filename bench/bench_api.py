"""HTTP API benchmarks (issue 6): the real service under load, on a fresh bench database.

    .venv/bin/python -m bench.bench_api            # full: ~4 min (30 s phases, 1,000 SSE subscribers)
    .venv/bin/python -m bench.bench_api --quick    # smoke: ~1.5 min (10 s phases, 200 subscribers)
    .venv/bin/python -m bench.bench_api --sse-only --subscribers 400   # only the SSE phase, at another size

Phases: hello-world (the ceiling); reads with the view cache off (every read a database round
trip); then the service as configured by default: clients reading their own plan/progress,
clinicians reading them (never cached, each access-logged), the 70/25/5 mix, writes only (client
measurement POSTs, the ``writes`` mode of the Lua script), SSE fan-out.

The service runs as it does in production: ``python -m uvicorn alliance.api.app:create_app --factory
--workers 2`` on a free loopback port (plus ``--log-level warning --no-access-log``, so uvicorn
does not print a line per request), with ``DATABASE_URL`` = the bench database's owner DSN and
its own ``ALLIANCE_HOME``. The ceiling, a bare Litestar hello-world route
(``bench/hello_app.py``), is served with the same command and flags and driven by the same
generator in the same run.

Load generator for request rates: ``wrk`` (Debian package; ``apt-get install -y wrk``). It is
C and event-driven, so on a 2-core machine it takes little CPU from the server — a Python
generator would need about a core of its own and cap the ceiling it is meant to measure.
One connection per wrk thread (``-t100 -c100``), so the Lua ``request()``/``response()`` hooks
alternate strictly on each connection and time every request with ``clock_gettime`` (LuaJIT
FFI): that gives p50/p99 per request class and a request-by-request 70/25/5 mix, which wrk's
own per-thread histogram cannot. HTTP/1.1 keep-alive, no pipelining.

SSE fan-out: wrk cannot read event streams, so subscribers and the posting schedule are a
small raw-asyncio HTTP/1.1 client (uvloop) in this process: N streams (one per client), one
measurement per second per client spread evenly over the second; the latency of an update is
the arrival of the progress event whose view holds the measurement id minus the moment the
POST's 201 was read.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import profile_stages
from bench.harness import (
    BenchDatabase,
    Comparison,
    Results,
    console,
    create_bench_database,
    drop_bench_database,
    print_server,
)

ROOT = Path(__file__).resolve().parents[1]
KEK = base64.b64encode(bytes(range(32))).decode()
JWT_SECRET = "bench-secret-for-alliance-api-0123456789abcdef"
HOST = "127.0.0.1"
MAX_POSTS_IN_FLIGHT = 200  # SSE phase: connections posting measurements at once


# -- results: harness's table, with units, "lower is better" and informational rows ---------------

@dataclass
class Row(Comparison):
    unit: str = "/s"
    lower_is_better: bool = False  # then PASS when alliance <= target (an absolute bound)
    info: bool = False  # no target: reported only

    @property
    def passed(self) -> bool:
        if self.info:
            return True
        if self.lower_is_better:
            return self.alliance <= self.target
        return self.ratio >= self.target

    def cells(self) -> tuple[str, str, str, str, str, str]:
        fmt = (lambda v: f"{v:,.1f}") if self.unit == "ms" else (lambda v: f"{v:,.0f}")
        value = f"{fmt(self.alliance)} {self.unit}".strip()
        base = f"{fmt(self.baseline)} {self.unit}".strip() if self.baseline_name else ""
        ratio = f"{self.ratio:.2f}×" if self.baseline_name and self.baseline else ""
        if self.info:
            target, verdict = "", "info"
        elif self.lower_is_better:
            target, verdict = f"≤ {fmt(self.target)} {self.unit}".strip(), "PASS" if self.passed else "MISS"
        else:
            target, verdict = f"≥ {self.target}×", "PASS" if self.passed else "MISS"
        return value, self.baseline_name, base, ratio, target, verdict


class ApiResults(Results):
    def row(self, figure: str, value: float, *, unit: str = "/s", baseline_name: str = "", baseline: float = 0.0,
            target: float = 0.0, lower_is_better: bool = False, info: bool = False) -> None:
        r = Row(figure, value, baseline_name, baseline, target, unit=unit, lower_is_better=lower_is_better,
                info=info)
        self.rows.append(r)
        value_s, base_name, base_s, ratio, target_s, verdict = r.cells()
        colour = {"PASS": "green", "MISS": "red"}.get(verdict, "dim")
        vs = f" vs {base_name} {base_s} = {ratio}" if base_name else ""
        console.print(f"  {figure}: {value_s}{vs} {('(target ' + target_s + ') ') if target_s else ''}"
                      f"[{colour}]{verdict}[/]")

    def print(self) -> None:
        from rich.table import Table
        table = Table(title=self.title)
        for name, justify in (("figure", "left"), ("Alliance", "right"), ("baseline", "left"),
                              ("baseline value", "right"), ("ratio", "right"), ("target", "right"), ("", "center")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for r in self.rows:
            assert isinstance(r, Row)
            value, base_name, base, ratio, target, verdict = r.cells()
            colour = {"PASS": "green", "MISS": "red"}.get(verdict, "dim")
            table.add_row(r.figure, value, base_name, base, ratio, target, f"[{colour}]{verdict}[/]")
        console.print(table)

    def markdown(self) -> str:
        lines = ["| figure | Alliance | baseline | baseline value | ratio | target | |",
                 "|---|---:|---|---:|---:|---:|---|"]
        for r in self.rows:
            assert isinstance(r, Row)
            lines.append("| " + " | ".join((r.figure, *r.cells())) + " |")
        return "\n".join(lines)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


# -- seeding (CommandHandler directly on the bench database) ------------------------------------

@dataclass
class Seed:
    tenant: uuid.UUID
    clients: list[uuid.UUID]
    goals: list[uuid.UUID]
    primary: list[uuid.UUID]
    client_tokens: list[str] = field(default_factory=list)
    clinician_tokens: list[str] = field(default_factory=list)


def bench_settings_for(db: BenchDatabase, home: Path) -> Any:
    from alliance.core.settings import Settings
    return Settings(database_url=db.owner_dsn, kek=KEK, home=home, log_level="warning", jwt_secret=JWT_SECRET,
                    app_role_password=os.environ.get("ALLIANCE_APP_ROLE_PASSWORD"), anchor_interval=0)


async def seed(db: BenchDatabase, home: Path, n_clients: int, measurements: int) -> Seed:
    from alliance.api.auth import issue_token
    from alliance.core import client as c
    from alliance.core import goal as g
    from alliance.core.clinic import ActivateStaff
    from alliance.core.handling import CommandHandler
    from alliance.core.identity import Actor, Role
    from alliance.core.logging import configure_logging
    from alliance.core.runtime import open_runtime
    from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager

    settings = bench_settings_for(db, home)
    configure_logging(fmt="console", level="warning")
    tenant, admin_id = uuid.uuid4(), uuid.uuid4()
    clinicians = [uuid.uuid4() for _ in range(10)]
    clients = [uuid.uuid4() for _ in range(n_clients)]
    goals = [uuid.uuid4() for _ in range(n_clients)]
    primary = [clinicians[i % len(clinicians)] for i in range(n_clients)]
    started = time.perf_counter()
    async with open_runtime(settings, migrate=False, pool_size=10) as rt:
        registry = InstrumentRegistry.from_plugin_manager(get_plugin_manager(None))
        handler = CommandHandler(rt.store, scorer=registry.score)
        now = lambda: datetime.now(UTC)  # noqa: E731
        system = Actor(id=uuid.UUID(int=0), role=Role.SYSTEM)
        admin = Actor(id=admin_id, role=Role.ADMIN)
        await handler.handle_clinic(ActivateStaff(command_id=uuid.uuid4(), actor=system, at=now(), tenant_id=tenant,
                                                  staff_id=admin_id, role=Role.ADMIN))
        for staff in clinicians:
            await handler.handle_clinic(ActivateStaff(command_id=uuid.uuid4(), actor=admin, at=now(),
                                                      tenant_id=tenant, staff_id=staff, role=Role.CLINICIAN))
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n_clients):
            queue.put_nowait(i)

        async def one(i: int) -> None:
            cid, gid = clients[i], goals[i]
            me = Actor(id=cid, role=Role.CLIENT)
            clin = Actor(id=primary[i], role=Role.CLINICIAN)
            common = {"tenant_id": tenant}
            await handler.handle_client(cid, c.EnrollClient(command_id=uuid.uuid4(), actor=admin, at=now(),
                                                            client_id=cid, episode_id=uuid.uuid4(),
                                                            primary_clinician_id=primary[i], **common))
            for scope in ("goal_setting", "measurement", "care_team_sharing"):
                await handler.handle_client(cid, c.GrantConsent(command_id=uuid.uuid4(), actor=me, at=now(),
                                                                scope=scope, text_version="v1", mode="self",
                                                                **common))
            goal = {"goal_id": gid, "client_id": cid, **common}
            await handler.handle_goal(g.ProposeGoal(command_id=uuid.uuid4(), actor=me, at=now(),
                                                    text="Walk the dog on five mornings a week", **goal))
            for who in (me, clin):
                await handler.handle_goal(g.AgreeGoal(command_id=uuid.uuid4(), actor=who, at=now(), version=1,
                                                      **goal))
            for k in range(measurements):
                await handler.handle_client(cid, c.RecordMeasurement(
                    command_id=uuid.uuid4(), actor=me, at=now(), measurement_id=uuid.uuid4(),
                    instrument_id="mood_diary", answers={"mood": 3 + k % 6},
                    reported_by=c.ReportedBy(informant="self", channel="app"),
                    observed_at=now() - timedelta(days=measurements - k), goal_ids=(gid,), **common))

        async def worker() -> None:
            while not queue.empty():
                await one(queue.get_nowait())

        await asyncio.gather(*(worker() for _ in range(8)))
    s = Seed(tenant, clients, goals, primary)
    s.client_tokens = [issue_token(settings, tenant=tenant, role=Role.CLIENT, sub=cid) for cid in clients]
    tokens = {cl: issue_token(settings, tenant=tenant, role=Role.CLINICIAN, sub=cl) for cl in clinicians}
    s.clinician_tokens = [tokens[p] for p in primary]
    console.print(f"  seeded 1 clinic, {len(clinicians)} clinicians, {n_clients:,} clients (3 consents, 1 agreed "
                  f"goal, {measurements} measurements each) in {time.perf_counter() - started:.1f} s")
    return s


# -- servers ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def spawn(name: str, app: str, env: dict[str, str], home: Path, workers: int = 2) -> Server:
    port = free_port()
    log = home / f"{name}.log"
    with open(log, "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--factory", "--workers", str(workers), "--host", HOST,
             "--port", str(port), "--log-level", "warning", "--no-access-log"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    return Server(name, port, proc, log)


def stop(server: Server) -> None:
    """SIGTERM to uvicorn's supervisor (it stops its workers); SIGKILL to the group if it hangs."""
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, 9)
            server.proc.wait(timeout=5)


async def wait_ready(server: Server, path: str, *, caught_up: bool, limit: float = 120.0) -> None:
    """Until ``path`` answers 200 (and, for /ready, every projection is 0 events behind)."""
    deadline = time.monotonic() + limit
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.proc.returncode}): {server.tail()}")
        with contextlib.suppress(OSError, ValueError, KeyError, asyncio.IncompleteReadError):
            conn = await RawConn.open(server.port)
            try:
                status, body = await asyncio.wait_for(conn.request("GET", path), 5)
            finally:
                conn.close()
            last = f"{status} {body[:300]!r}"
            if status == 200:
                if not caught_up:
                    return
                projections = json.loads(body)["checks"]["projections"]
                if all(p["events_behind"] == 0 for p in projections.values()):
                    return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{server.name} not ready after {limit:.0f} s (last answer {last}): {server.tail()}")


# -- a minimal HTTP/1.1 client over asyncio streams (keep-alive; Content-Length or chunked) ---------

class RawConn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawConn:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 22)
        return cls(reader, writer)

    def close(self) -> None:
        self.w.close()

    def send(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        self.w.write(head.encode() + b"\r\n" + body)

    async def read_head(self) -> tuple[int, bool, int | None]:
        line = await self.r.readline()
        if not line:
            raise ConnectionError("connection closed")
        status = int(line.split()[1])
        chunked, length = False, None
        while True:
            line = await self.r.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        return status, chunked, length

    async def read_chunk(self) -> bytes:
        size = int((await self.r.readline()).split(b";")[0], 16)
        data = await self.r.readexactly(size + 2)
        return data[:-2]

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> tuple[int, bytes]:
        self.send(method, path, headers, body)
        status, chunked, length = await self.read_head()
        if chunked:
            parts = []
            while chunk := await self.read_chunk():
                parts.append(chunk)
            return status, b"".join(parts)
        return status, await self.r.readexactly(length or 0)


# -- mixed traffic with wrk ------------------------------------------------------------------------

WRK_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local reads, staff_reads, measures, barriers = {}, {}, {}, {}
local hello
local n = 0
local mode
-- flat globals: wrk's thread:get() cannot copy nested tables
lat1, lat2, lat3 = {}, {}, {}
counts = {0, 0, 0, 0, 0, 0, 0, 0, 0}  -- class k: ok at 3k-2, 4xx at 3k-1, 5xx at 3k
samples = {}
local lats = {lat1, lat2, lat3}
local cls, t0 = 1, 0

function init(args)
  mode = args[1]
  math.randomseed(1000 + tid)
  hello = wrk.format("GET", "/hello")
  if mode == "hello" then return end
  for line in io.lines(args[2]) do
    local cid, ctok, gid, ktok, observed = line:match("(%S+) (%S+) (%S+) (%S+) (%S+)")
    n = n + 1
    local auth = "Bearer " .. ctok
    reads[n] = {wrk.format("GET", "/clients/" .. cid .. "/plan", {Authorization = auth}),
                wrk.format("GET", "/clients/" .. cid .. "/progress", {Authorization = auth})}
    local kauth = "Bearer " .. ktok
    staff_reads[n] = {wrk.format("GET", "/clients/" .. cid .. "/plan", {Authorization = kauth}),
                      wrk.format("GET", "/clients/" .. cid .. "/progress", {Authorization = kauth})}
    measures[n] = wrk.format("POST", "/clients/" .. cid .. "/measurements",
      {Authorization = auth, ["Content-Type"] = "application/json"},
      '{"instrument_id":"mood_diary","answers":{"mood":7},"observed_at":"' .. observed .. '"}')
    barriers[n] = wrk.format("POST", "/goals/" .. gid .. "/barriers",
      {Authorization = "Bearer " .. ktok, ["Content-Type"] = "application/json"},
      '{"text":"A busy week at work"}')
  end
end

function request()
  local req
  if mode == "hello" then
    cls, req = 1, hello
  else
    local r = math.random()
    local i = math.random(n)
    if mode == "writes" then
      cls, req = 2, measures[i]
    elseif mode == "staffreads" then
      cls, req = 1, staff_reads[i][math.random(2)]
    elseif mode == "reads" or r < 0.70 then
      cls, req = 1, reads[i][math.random(2)]
    elseif r < 0.95 then
      cls, req = 2, measures[i]
    else
      cls, req = 3, barriers[i]
    end
  end
  t0 = now_us()
  return req
end

function response(status, headers, body)
  local l = lats[cls]
  l[#l + 1] = now_us() - t0
  local slot = 3 * cls - 2
  if status >= 500 then
    slot = slot + 2
  elseif status >= 400 then
    slot = slot + 1
  end
  counts[slot] = counts[slot] + 1
  if status >= 400 and #samples < 5 then
    samples[#samples + 1] = cls .. " " .. status .. " " .. string.sub(body or "", 1, 300)
  end
end

function done(summary, latency, requests)
  local out = io.open(os.getenv("BENCH_WRK_OUT"), "w")
  out:write(string.format("summary %d %d %d %d %d %d %d\n", summary.duration, summary.requests,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
  for _, thread in ipairs(threads) do
    local tc = thread:get("counts")
    for k = 1, 3 do
      out:write(string.format("counts %d %d %d %d\n", k, tc[3 * k - 2], tc[3 * k - 1], tc[3 * k]))
      local vals = {}
      for j, v in ipairs(thread:get("lat" .. k)) do vals[j] = string.format("%.0f", v) end
      out:write("lat " .. k .. " " .. table.concat(vals, " ") .. "\n")
    end
    for _, s in ipairs(thread:get("samples")) do
      out:write("sample " .. string.gsub(s, "\n", " ") .. "\n")
    end
  end
  out:close()
end
"""

CLASSES = {1: "reads", 2: "measurements", 3: "goal commands"}


@dataclass
class WrkResult:
    seconds: float
    responses: int
    socket_errors: dict[str, int]
    counts: dict[int, list[int]]
    latencies: dict[int, list[float]]  # ms
    samples: list[str]

    def rate(self, cls: int | None = None) -> float:
        n = sum(sum(self.counts[c]) for c in self.counts) if cls is None else sum(self.counts[cls])
        return n / self.seconds

    @property
    def server_errors(self) -> int:
        return sum(c[2] for c in self.counts.values())

    @property
    def client_errors(self) -> int:
        return sum(c[1] for c in self.counts.values())


async def run_wrk(port: int, mode: str, seconds: float, connections: int, script: Path, data: Path,
                  work: Path) -> WrkResult:
    out = work / f"wrk-{mode}-{uuid.uuid4().hex[:6]}.txt"
    path = "/hello" if mode == "hello" else "/"
    cmd = ["wrk", f"-t{connections}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "60s",
           "-s", str(script), f"http://{HOST}:{port}{path}", "--", mode, str(data)]
    proc = await asyncio.create_subprocess_exec(*cmd, env={**os.environ, "BENCH_WRK_OUT": str(out)},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"wrk {mode} did not finish in time") from None
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk {mode} failed ({proc.returncode}): {stdout.decode(errors='replace')[-2000:]}")
    counts: dict[int, list[int]] = {k: [0, 0, 0] for k in CLASSES}
    latencies: dict[int, list[float]] = {k: [] for k in CLASSES}
    samples: list[str] = []
    summary: list[int] = []
    for line in out.read_text().splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "summary":
            summary = [int(x) for x in rest.split()]
        elif kind == "counts":
            k, ok, c4, c5 = (int(x) for x in rest.split())
            counts[k] = [a + b for a, b in zip(counts[k], (ok, c4, c5), strict=True)]
        elif kind == "lat":
            cls, *values = rest.split()
            latencies[int(cls)].extend(float(v) / 1000 for v in values)
        elif kind == "sample":
            samples.append(rest)
    out.unlink()
    errors = dict(zip(("connect", "read", "write", "status", "timeout"), summary[2:], strict=True))
    return WrkResult(summary[0] / 1e6, summary[1], errors, counts, latencies, samples)


def describe(name: str, r: WrkResult) -> None:
    console.print(f"  [bold]{name}[/]: {r.rate():,.0f} responses/s over {r.seconds:.1f} s "
                  f"({r.responses:,} responses; socket errors {r.socket_errors})")
    for k, label in CLASSES.items():
        if sum(r.counts[k]):
            lat = r.latencies[k]
            console.print(f"    {label:<14} {r.rate(k):>8,.0f}/s  p50 {pct(lat, 50):7.1f} ms  "
                          f"p99 {pct(lat, 99):7.1f} ms  ok {r.counts[k][0]:,}  4xx {r.counts[k][1]}  "
                          f"5xx {r.counts[k][2]}")
    for s in r.samples[:5]:
        console.print(f"    [red]sample error[/] {s}", markup=False, highlight=False)


# -- SSE fan-out -------------------------------------------------------------------------------

@dataclass
class SseStats:
    latencies: list[float] = field(default_factory=list)  # ms
    posted: int = 0
    offered: int = 0
    post_errors: int = 0
    post_latencies: list[float] = field(default_factory=list)
    missed: int = 0
    streams_open: int = 0
    stream_errors: list[str] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def sse_fanout(port: int, s: Seed, subscribers: int, seconds: float) -> SseStats:
    stats = SseStats()
    returned: dict[str, float] = {}  # measurement id -> when its 201 was read
    arrived: dict[str, float] = {}  # measurement id -> when its progress event was read
    watched: list[set[str]] = [set() for _ in range(subscribers)]  # ids posted and not yet seen, per client
    ready = asyncio.Semaphore(0)
    conns: list[RawConn] = []

    async def subscribe(i: int) -> None:
        try:
            conn = await RawConn.open(port)
            conns.append(conn)
            conn.send("GET", f"/clients/{s.clients[i]}/progress/stream",
                      {"Authorization": f"Bearer {s.client_tokens[i]}", "Accept": "text/event-stream"})
            status, chunked, _ = await conn.read_head()
            if status != 200 or not chunked:
                raise RuntimeError(f"stream answered {status}")
            buffer = b""
            while True:
                chunk = await conn.read_chunk()
                if not chunk:
                    return
                buffer += chunk.replace(b"\r\n", b"\n")
                while b"\n\n" in buffer:
                    raw, buffer = buffer.split(b"\n\n", 1)
                    t = time.perf_counter()
                    event, data = "message", []
                    for line in raw.split(b"\n"):
                        if line.startswith(b"event:"):
                            event = line[6:].strip().decode()
                        elif line.startswith(b"data:"):
                            data.append(line[5:].lstrip())
                    if event == "ready":
                        stats.streams_open += 1
                        ready.release()
                    elif event == "progress" and watched[i]:
                        # A measurement id is a UUID: found in the view's bytes means it is in the
                        # view (a substring search, not a JSON parse of a view that grows with
                        # every point, keeps this client's CPU out of the server's way).
                        view = b"\n".join(data)
                        for mid in [m for m in watched[i] if m.encode() in view]:
                            watched[i].discard(mid)
                            arrived[mid] = t
        except (OSError, asyncio.IncompleteReadError, RuntimeError, ValueError) as exc:
            stats.stream_errors.append(f"{type(exc).__name__}: {exc}")
            ready.release()

    idle: asyncio.Queue[RawConn] = asyncio.Queue()
    post_conns: list[RawConn] = []

    async def post(i: int) -> None:
        conn = idle.get_nowait() if not idle.empty() else None
        if conn is None:
            conn = await RawConn.open(port)
            post_conns.append(conn)
        mid = str(uuid.uuid4())
        watched[i].add(mid)
        body = json.dumps({"instrument_id": "mood_diary", "answers": {"mood": random.randint(1, 10)},
                           "observed_at": datetime.now(UTC).isoformat(), "measurement_id": mid}).encode()
        started = time.perf_counter()
        try:
            status, answer = await conn.request("POST", f"/clients/{s.clients[i]}/measurements", {
                "Authorization": f"Bearer {s.client_tokens[i]}", "Content-Type": "application/json"}, body)
        except (OSError, asyncio.IncompleteReadError) as exc:
            watched[i].discard(mid)
            stats.post_errors += 1
            stats.error_samples.append(f"{type(exc).__name__}: {exc}")
            return
        done = time.perf_counter()
        idle.put_nowait(conn)
        if status != 201:
            watched[i].discard(mid)
            stats.post_errors += 1
            if len(stats.error_samples) < 5:
                stats.error_samples.append(f"{status} {answer[:300]!r}")
            return
        stats.posted += 1
        stats.post_latencies.append((done - started) * 1000)
        returned[mid] = done

    tasks = [asyncio.create_task(subscribe(i)) for i in range(subscribers)]
    posting: set[asyncio.Task[None]] = set()
    try:
        deadline = time.monotonic() + 60
        for _ in range(subscribers):  # every stream has sent its "ready" event (or failed)
            await asyncio.wait_for(ready.acquire(), max(0.1, deadline - time.monotonic()))
        console.print(f"  {stats.streams_open:,} streams open ({len(stats.stream_errors)} failed)")
        await asyncio.sleep(1.0)
        in_flight = asyncio.Semaphore(MAX_POSTS_IN_FLIGHT)
        t0 = time.perf_counter()
        end = t0 + seconds
        total = int(seconds * subscribers)
        for n in range(total):  # client n % S posts at t0 + n / S seconds: one per client per second
            due = t0 + n / subscribers
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:  # a saturated server makes the schedule slip (offered > accepted), never queue without bound
                await asyncio.wait_for(in_flight.acquire(), max(0.001, end - time.perf_counter()))
            except TimeoutError:
                break
            task = asyncio.create_task(post(n % subscribers))
            posting.add(task)
            task.add_done_callback(posting.discard)
            task.add_done_callback(lambda _: in_flight.release())
            stats.offered += 1
        if posting:
            await asyncio.wait(posting, timeout=30)
        stats.seconds = time.perf_counter() - t0
        drain = time.monotonic() + 10  # updates still on their way
        while time.monotonic() < drain and any(watched):  # noqa: ASYNC110 (bounded poll of plain sets)
            await asyncio.sleep(0.1)
    finally:
        for task in [*tasks, *posting]:
            task.cancel()
        await asyncio.gather(*tasks, *posting, return_exceptions=True)
        for conn in conns + post_conns:
            conn.close()
    for mid, done in returned.items():
        if mid in arrived:
            stats.latencies.append((arrived[mid] - done) * 1000)
        else:
            stats.missed += 1
    return stats


# -- the run ------------------------------------------------------------------------------------

def raise_nofile(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))  # inherited by the servers
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def print_write_budget(samples: Counter[str], posts: float, *, rate: int) -> None:
    """CPU per measurement POST in the workers, by stage (py-spy samples at ``rate`` per second)."""
    total = sum(samples.values())
    console.print(f"  worker CPU per measurement POST, by stage (py-spy, {total:,} samples at {rate}/s, "
                  f"{posts:,.0f} POSTs): {total / rate / max(posts, 1) * 1e6:,.0f} µs in all")
    for stage, n in samples.most_common():
        console.print(f"    {stage:<40} {n / rate / max(posts, 1) * 1e6:7,.0f} µs  {n / total:6.1%}")


async def timed_writes(api: Server, seconds: float, connections: int, script: Path, data: Path,
                       work: Path, results: ApiResults, *, profile: bool = False,
                       profile_out: Path | None = None) -> WrkResult:
    """The writes phase (every request a client's measurement POST; each worker's store groups the
    concurrent appends into shared commits), with the CPU each side spent per accepted POST
    (/proc: the service's workers, every PostgreSQL process of a server on this machine; wrk from
    the children's rusage). ``profile``: py-spy on each worker meanwhile (bench/profile_stages.py),
    its recordings kept in ``profile_out`` when given."""
    pids = tuple(profile_stages.worker_pids(api.proc.pid))
    recording = asyncio.create_task(profile_stages.record(list(pids), seconds - 1, work / "py-spy")) \
        if profile else None
    before = profile_stages.cpu_ticks_by_name(pids=pids)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is a child: counted once it is waited for
    writes = await run_wrk(api.port, "writes", seconds, connections, script, data, work)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = profile_stages.cpu_ticks_by_name(pids=pids)
    describe("writes only (client measurement POSTs)", writes)
    per_post = profile_stages.cpu_per_request(before, after, writes.counts[2][0])
    per_post["wrk"] = ((waited.ru_utime + waited.ru_stime) - (children.ru_utime + children.ru_stime)) \
        / max(writes.counts[2][0], 1) * 1e6
    # py-spy's recorders are this process's children too, and end within the phase.
    label = {"workers": "workers", "postgres": "postgres", "wrk": "wrk + py-spy" if profile else "wrk"}
    console.print("  CPU per accepted POST: " + ", ".join(
        f"{label[name]} {per_post[name]:,.0f} µs" for name in ("workers", "postgres", "wrk"))
        + f" ({sum(per_post.values()):,.0f} µs in all; 2 cores give {2e6 / 2400:,.0f} µs a POST at 2,400/s;"
        " postgres counts only a server on this machine)")
    for name in ("workers", "postgres", "wrk"):
        results.row(f"writes only: CPU per POST, {label[name]}", per_post[name], unit="µs", info=True)
    if recording is not None:
        recorded = await recording
        print_write_budget(profile_stages.budget(recorded), writes.counts[2][0] * (seconds - 1) / seconds, rate=250)
        if profile_out is not None:  # the collapsed stacks, for a flame graph or a closer look
            os.makedirs(profile_out, exist_ok=True)
            for path in recorded:
                shutil.copy(path, os.path.join(profile_out, path.name))
            console.print(f"  py-spy recordings (collapsed stacks) in {profile_out}")
    return writes


def write_rows(results: ApiResults, writes: WrkResult) -> None:
    """The writes phase's figures against issue 18's targets."""
    results.row("measurement POSTs/s accepted, writes only", writes.counts[2][0] / writes.seconds,
                baseline_name="the issue's 2,400/s", baseline=2400.0, target=1.0)
    results.row("writes only: POST p99", pct(writes.latencies[2], 99), unit="ms", target=100, lower_is_better=True)
    results.row("writes only: POST p50", pct(writes.latencies[2], 50), unit="ms", info=True)


async def run(quick: bool, subscribers: int | None = None, sse_only: bool = False,
              profile_writes: bool = False, writes_only: bool = False,
              profile_out: Path | None = None) -> ApiResults:
    results = ApiResults("API: mixed traffic vs hello-world ceiling, SSE fan-out (issue 6)")
    seconds = 10.0 if quick else 30.0
    sse_seconds, default_subscribers = (5.0, 200) if quick else (20.0, 1000)
    subscribers = subscribers or default_subscribers
    n_clients = subscribers
    connections = 100
    if shutil.which("wrk") is None:
        raise SystemExit("bench_api needs wrk: apt-get install -y wrk")
    nofile = raise_nofile()
    console.print(f"  open files limit {nofile}; CPUs {os.cpu_count()}; load average "
                  f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on this machine shares the cores)")
    db = await create_bench_database()
    work = Path(tempfile.mkdtemp(prefix="alliance-bench-api-"))
    servers: list[Server] = []
    try:
        await print_server(db)
        s = await seed(db, work / "seed-home", n_clients, measurements=3)
        observed = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        data = work / "clients.txt"
        data.write_text("".join(f"{cid} {tok} {gid} {ktok} {observed}\n" for cid, tok, gid, ktok in zip(
            s.clients, s.client_tokens, s.goals, s.clinician_tokens, strict=True)))
        script = work / "mix.lua"
        script.write_text(WRK_LUA)
        env = {**os.environ, "DATABASE_URL": db.owner_dsn, "ALLIANCE_HOME": str(work / "home"),
               "ALLIANCE_KEK": KEK, "ALLIANCE_JWT_SECRET": JWT_SECRET, "ALLIANCE_LOG_LEVEL": "warning",
               "ALLIANCE_ANCHOR_INTERVAL": "0", "PYTHONPATH": str(ROOT)}

        if sse_only:
            api = spawn("alliance", "alliance.api.app:create_app", env, work)
            servers.append(api)
            await wait_ready(api, "/ready", caught_up=True)
        elif writes_only:  # the writes phase alone (to profile and size the write path)
            api = spawn("alliance", "alliance.api.app:create_app", env, work)
            servers.append(api)
            await wait_ready(api, "/ready", caught_up=True)
            await run_wrk(api.port, "writes", 2, connections, script, data, work)  # warm-up
            writes = await timed_writes(api, seconds, connections, script, data, work, results,
                                        profile=profile_writes, profile_out=profile_out)
            write_rows(results, writes)
            results.row("writes only: 5xx, unexpected 4xx, socket errors",
                        writes.server_errors + writes.client_errors + sum(writes.socket_errors.values()),
                        unit="", target=0, lower_is_better=True)
        else:
            # 1. the ceiling: bare Litestar hello-world, same uvicorn flags, same generator
            hello = spawn("hello", "bench.hello_app:create_app", env, work)
            servers.append(hello)
            await wait_ready(hello, "/hello", caught_up=False, limit=30)
            await run_wrk(hello.port, "hello", 2, connections, script, data, work)  # warm-up
            ceiling = await run_wrk(hello.port, "hello", seconds, connections, script, data, work)
            describe("hello-world (ceiling)", ceiling)
            stop(hello)
            servers.remove(hello)

            # 2. the service without its view cache: every read is a database round trip
            uncached = spawn("alliance-no-view-cache", "alliance.api.app:create_app",
                             {**env, "ALLIANCE_VIEW_CACHE_SECONDS": "0"}, work)
            servers.append(uncached)
            await wait_ready(uncached, "/ready", caught_up=True)
            await run_wrk(uncached.port, "reads", 2, connections, script, data, work)  # warm-up
            reads_uncached = await run_wrk(uncached.port, "reads", seconds, connections, script, data, work)
            describe("reads only, view cache off (ALLIANCE_VIEW_CACHE_SECONDS=0)", reads_uncached)
            stop(uncached)
            servers.remove(uncached)

            # 3. the service as configured by default: client reads, staff reads, then the 70/25/5 mix
            api = spawn("alliance", "alliance.api.app:create_app", env, work)
            servers.append(api)
            await wait_ready(api, "/ready", caught_up=True)
            await run_wrk(api.port, "reads", 2, connections, script, data, work)  # warm-up (plans cached, etc.)
            reads = await run_wrk(api.port, "reads", seconds, connections, script, data, work)
            describe("reads only (clients reading their own plan/progress)", reads)
            staff = await run_wrk(api.port, "staffreads", seconds, connections, script, data, work)
            describe("reads only by clinicians (never cached; each read access-logged)", staff)
            mixed = await run_wrk(api.port, "mixed", seconds, connections, script, data, work)
            describe("mixed 70/25/5", mixed)
            writes = await timed_writes(api, seconds, connections, script, data, work, results,
                                        profile=profile_writes)
            hello_rate = ceiling.rate(1)
            results.row("hello-world GET (ceiling)", hello_rate, info=True)
            results.row("reads/s in the 70/25/5 mix", mixed.rate(1), baseline_name="hello/s", baseline=hello_rate,
                        target=0.15)
            write_rows(results, writes)
            results.row("reads/s, reads only (clients)", reads.rate(1), baseline_name="hello/s", baseline=hello_rate,
                        target=0.25)
            results.row("reads/s, reads only, view cache off", reads_uncached.rate(1), baseline_name="hello/s",
                        baseline=hello_rate, info=True)
            results.row("reads/s, reads only by clinicians", staff.rate(1), baseline_name="hello/s",
                        baseline=hello_rate, info=True)
            results.row("all requests/s in the mix", mixed.rate(), baseline_name="hello/s", baseline=hello_rate,
                        info=True)
            for k, label in CLASSES.items():
                results.row(f"mix: {label} p50", pct(mixed.latencies[k], 50), unit="ms", info=True)
                results.row(f"mix: {label} p99", pct(mixed.latencies[k], 99), unit="ms", info=True)
            results.row("reads only: p99", pct(reads.latencies[1], 99), unit="ms", baseline_name="hello p99",
                        baseline=pct(ceiling.latencies[1], 99), info=True)
            runs = (mixed, reads, reads_uncached, staff, writes)
            results.row("5xx responses (mix + reads + writes)", sum(r.server_errors for r in runs), unit="",
                        target=0, lower_is_better=True)
            results.row("unexpected 4xx (mix + reads + writes)", sum(r.client_errors for r in runs), unit="",
                        target=0, lower_is_better=True)
            socket_errors = sum(sum(r.socket_errors.values()) for r in runs)
            results.row("socket errors / timeouts (mix + reads + writes)", socket_errors, unit="", target=0,
                        lower_is_better=True)

        # 4. SSE fan-out: one subscriber per client, one measurement per client per second
        if not writes_only:
            await wait_ready(api, "/ready", caught_up=True)
            console.print(f"  SSE: {subscribers:,} subscribers, {subscribers:,} measurements/s for {sse_seconds:.0f} s")
            sse = await sse_fanout(api.port, s, subscribers, sse_seconds)
            console.print(f"  sent {sse.offered:,} of {int(sse_seconds * subscribers):,} scheduled POSTs (at most "
                          f"{MAX_POSTS_IN_FLIGHT} in flight); {sse.posted:,} accepted in {sse.seconds:.1f} s "
                          f"({sse.posted / max(sse.seconds, 1e-9):,.0f}/s; "
                          f"POST p50 {pct(sse.post_latencies, 50):.1f} ms, p99 {pct(sse.post_latencies, 99):.1f} ms), "
                          f"{sse.post_errors} POST errors, {len(sse.stream_errors)} stream errors, "
                          f"{sse.missed} updates not received within 10 s")
            for e in (sse.error_samples + sse.stream_errors)[:5]:
                console.print(f"    [red]sample error[/] {e}", markup=False, highlight=False)
            results.row(f"SSE: measurements/s accepted ({subscribers:,} clients)", sse.posted / max(sse.seconds, 1e-9),
                        baseline_name="offered/s", baseline=float(subscribers), info=True)
            results.row("SSE: update latency p50", pct(sse.latencies, 50), unit="ms", info=True)
            results.row("SSE: update latency p99", pct(sse.latencies, 99), unit="ms", target=200, lower_is_better=True)
            results.row("SSE: streams failed + POST errors + updates missed",
                        len(sse.stream_errors) + sse.post_errors + sse.missed, unit="", target=0, lower_is_better=True)
            if api.proc.poll() is not None:
                console.print(f"[red]the service exited during the run[/]: {api.tail()}")
    finally:
        for server in servers:
            stop(server)
        await drop_bench_database(db)
        shutil.rmtree(work, ignore_errors=True)
    results.print()
    console.print(f"  note: {os.cpu_count()} CPUs shared by the servers, PostgreSQL, wrk/the SSE client and any other "
                  f"work on this machine (load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return results


def main() -> ApiResults:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s phases, 200 SSE subscribers")
    parser.add_argument("--subscribers", type=int, default=None,
                        help="SSE subscribers (and clients), each sent one measurement a second "
                             "(default 1,000; 200 with --quick)")
    parser.add_argument("--sse-only", action="store_true", help="only the SSE phase (to size it with --subscribers)")
    parser.add_argument("--writes-only", action="store_true",
                        help="only the writes phase (measurement POSTs), with --profile-writes to profile it")
    parser.add_argument("--profile-out", type=Path, default=None,
                        help="with --writes-only --profile-writes: keep the py-spy recordings in this directory")
    parser.add_argument("--profile-writes", action="store_true",
                        help="record the workers with py-spy during the writes phase and print the CPU per "
                             "measurement POST by stage (needs py-spy: pip install py-spy)")
    parser.add_argument("--projector", choices=("inline", "separate", "both"), default=None,
                        help="instead of the phases above: the mix and the SSE phase with the background work "
                             "inside a worker, in `alliance projector`, or both side by side (bench_projector.py)")
    args, _ = parser.parse_known_args()
    if args.projector is not None:
        from bench import bench_projector

        bench_projector.main()
        return ApiResults("API: projector inline vs separate (printed above)")
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        return runner.run(run(args.quick, args.subscribers, args.sse_only, args.profile_writes, args.writes_only,
                              args.profile_out))


if __name__ == "__main__":
    main()
