"""``alliance serve --workers 2`` as a subprocess in its own process group, pointed at a
private cluster, with its own ``ALLIANCE_HOME`` and a fixed key-encryption key, plus the CLI
verbs an operator runs beside it (``verify``, ``projections verify``, ``reapply-erasures``).

``kill()`` is ``kill -9`` of the whole group (supervisor and workers); ``kill_worker(pid)``
kills one worker, which uvicorn's supervisor replaces.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt

from tests.faults.checkout import REPO, package_prefix, python_path, served_code
from tests.faults.cluster import free_port

KEK = base64.b64encode(bytes(range(100, 132))).decode()
JWT_SECRET = "fault-trials-secret-0123456789abcdef0123456789"
#: Seconds a (re)started service has to answer /health; startup is migrations plus two worker imports.
START_TIMEOUT = 60.0


def alliance_command(code: Path | None = None) -> list[str]:
    """The installed ``alliance`` entry point beside this interpreter for this working tree; for
    another checkout, its own CLI module (``api.cli`` before the one-name rename, ``alliance.api.cli``
    after it) found through its PYTHONPATH, since the entry point would run this tree's code."""
    if code is not None and code != REPO:
        return [sys.executable, "-m", f"{package_prefix(code)}api.cli"]
    script = Path(sys.executable).with_name("alliance")
    return [str(script)] if script.exists() else [sys.executable, "-m", "alliance.api.cli"]


class Service:
    def __init__(self, dsn: str, home: Path, *, workers: int = 2, code: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.dsn = dsn
        self.home = home
        self.workers = workers
        self.code = code = code or served_code()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "serve.log"
        self.env = {**os.environ, "DATABASE_URL": dsn, "ALLIANCE_HOME": str(home), "ALLIANCE_KEK": KEK,
                    "ALLIANCE_JWT_SECRET": JWT_SECRET, "ALLIANCE_LOG_LEVEL": "warning",
                    "ALLIANCE_LOG_FORMAT": "json", "ALLIANCE_ANCHOR_INTERVAL": "0", **(extra_env or {})}
        if code != REPO:  # another checkout: its packages first, this venv's dependencies after
            self.env["PYTHONPATH"] = python_path(code)
        self.env.pop("PYTEST_CURRENT_TEST", None)
        home.mkdir(parents=True, exist_ok=True)

    def token(self, tenant: uuid.UUID, role: str, sub: uuid.UUID) -> dict[str, str]:
        """A development bearer token (HS256, the claims ``alliance token`` prints), minted here
        rather than imported, so the trials run against any checkout of the product."""
        now = int(time.time())
        claims = {"sub": str(sub), "tenant": str(tenant), "role": role, "iat": now, "exp": now + 3600}
        return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")}

    # -- the server process ---------------------------------------------------------------------

    def start(self, *, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with self.log.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [*alliance_command(self.code), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=self.env, cwd=self.code, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_healthy()

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> float:
        """Seconds until every worker is up (uvicorn binds before its workers answer)."""
        started = time.monotonic()
        with httpx.Client(timeout=2.0) as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"serve exited {self.proc.returncode}: {self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(self.url + "/health").status_code == 200 and len(self.worker_pids()) >= self.workers:
                        return time.monotonic() - started
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"serve did not answer within {timeout} s: {self.log_tail()}")
                time.sleep(0.1)

    def kill(self) -> None:
        """``kill -9`` of the whole process group: the supervisor and every worker at once."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reap_group()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._reap_group()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._reap_group()

    def _reap_group(self) -> None:
        """Wait (bounded) until no process of the group is left, so the port and connections are free."""
        if self.proc is None:
            return
        deadline = time.monotonic() + 10
        while _group_members(self.proc.pid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        """The uvicorn workers: children of the supervisor that import the app (not the resource tracker)."""
        if self.proc is None:
            return []
        found = []
        for pid in _children(self.proc.pid):
            cmdline = _cmdline(pid)
            if "multiprocessing" in cmdline and "resource_tracker" not in cmdline:
                found.append(pid)
        return sorted(found)

    def kill_worker(self, pid: int) -> None:
        assert pid in self.worker_pids(), f"{pid} is not a worker of this service"
        os.kill(pid, signal.SIGKILL)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    # -- the CLI beside it ----------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*alliance_command(self.code), *args], env=self.env, cwd=self.code,
                              capture_output=True, text=True, timeout=timeout)


def logged_errors(log: Path, offset: int = 0) -> dict[str, int]:
    """Error lines of a service's JSON log after ``offset``, counted by event, error class and
    route, and uvicorn's plain-text tracebacks by their final exception's class (never its
    message: only names are printed, so nothing a request carried reaches the CI log)."""
    counts: dict[str, int] = {}
    if not log.exists():
        return counts
    in_traceback = False
    with log.open("rb") as f:
        f.seek(offset)
        for raw in f:
            text = raw.decode(errors="replace").rstrip("\n")
            if text.startswith("Traceback"):
                in_traceback = True
                continue
            if in_traceback:
                if text.startswith((" ", "\t")) or not text or text.startswith(("The above", "During handling")):
                    continue
                in_traceback = False
                if not text.startswith("{"):  # the exception line that ends the traceback
                    key = "traceback " + text.split(":", 1)[0].strip()
                    counts[key] = counts.get(key, 0) + 1
                    continue
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("level") in ("error", "critical"):
                key = " ".join(str(line[k]) for k in ("event", "error", "route") if k in line)
                counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def leadership_lock_keys(service: Service) -> list[int]:
    """The projection runner's leadership locks, as the served code computes them."""
    prefix = package_prefix(service.code)
    done = subprocess.run(
        [sys.executable, "-c", f"from {prefix}core.projections.runner import lock_key\n"
         f"from {prefix}core.projections.registry import PROJECTIONS\n"
         "print(' '.join(str(lock_key('run', p.name)) for p in PROJECTIONS))"],
        env=service.env, cwd=service.code, capture_output=True, text=True, timeout=60, check=True)
    return [int(k) for k in done.stdout.split()]


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


def _group_members(pgid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    out.append(int(entry.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def socket_owner(pids: list[int], local_port: int, remote_port: int) -> int | None:
    """Which of ``pids`` holds the TCP socket ``127.0.0.1:local_port <-> :remote_port``.

    Read from /proc (the socket's inode in net/tcp, then the process whose descriptor
    points at it), so the trial needs nothing from the product to tell its workers apart.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local, remote, inode = parts[1], parts[2], parts[9]
                if int(local.rsplit(":", 1)[1], 16) == local_port and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                    inodes.add(f"socket:[{inode}]")
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in (Path("/proc") / str(pid) / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return pid
    return None


def served_by(response: httpx.Response, service: Service) -> int | None:
    """The worker pid that answered ``response`` (the one holding its connection's server end)."""
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    local = stream.get_extra_info("client_addr")
    return socket_owner(service.worker_pids(), service.port, int(local[1])) if local else None
