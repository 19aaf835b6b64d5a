"""A private PostgreSQL for tests that stop and restart the database under a running service.

The machine's own binaries (``pg_config --bindir``), a loopback port, a data directory
in a temporary folder. initdb refuses to run as root and the tests do run as root, so
the cluster belongs to an unprivileged user (``alliance-test``, created if missing) and
every tool runs through ``runuser``. The server is started in a process group of its
own, and ``close()`` kills that whole group, so no postgres outlives the test.

    cluster = PrivateCluster()
    cluster.start()                  # initdb on the first start; waits until it accepts connections
    dsn = cluster.dsn()              # superuser DSN over TCP (trust auth, loopback only)
    cluster.stop("immediate")        # what an operator's crash looks like to clients
    cluster.restart()                # stop (immediate) and start again, same port and data
    cluster.data_dir                 # the data directory (pg_wal inside)
    cluster.close()                  # stop, kill the process group, remove the folder
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "alliance-test"
#: Every wait is bounded: a test fails, it never hangs.
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _owner() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        # Another test process may create it at the same moment: its success is ours.
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       capture_output=True, check=False)
        return pwd.getpwnam(USER)


class PrivateCluster:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="alliance-pg-"))
        self.data_dir = self.root / "data"
        self.log = self.root / "postgres.log"
        self.bindir = Path(subprocess.run(["pg_config", "--bindir"], check=True, capture_output=True,
                                          text=True).stdout.strip())
        self.user = _owner()
        self._server: subprocess.Popen[bytes] | None = None

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.user.pw_name, "--", *command]
        return command

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(self._command(tool, *args), capture_output=True, timeout=120, cwd=self.root)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} exited {done.returncode}: {done.stderr.decode(errors='replace')[-1500:]}")
        return done

    def _init(self) -> None:
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            # fsync off: tests kill postgres, never the machine (the page cache survives).
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                       "fsync = off\nmax_connections = 100\nshared_buffers = 32MB\n")

    def start(self) -> None:
        if not self.data_dir.exists():
            self._init()
        log = self.log.open("ab")
        self._server = subprocess.Popen(self._command("postgres", "-D", str(self.data_dir)), stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while self._run("pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port), check=False).returncode:
            if self._server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>`` (``immediate``: no checkpoint, every session cut at once)."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "stop")
        if self._server is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._server.wait(timeout=10)

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""

    def close(self) -> None:
        if self._server is not None and self._server.poll() is None:
            with contextlib.suppress(Exception):
                self.stop("immediate")
        if self._server is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._server.pid, signal.SIGKILL)  # whatever is left of the group
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._server.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateCluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
