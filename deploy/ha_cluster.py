"""A local highly available PostgreSQL for tests and demos: a pg_auto_failover monitor, a primary
and a synchronous standby on free loopback ports of this machine.

    python deploy/ha_cluster.py up [--root DIR]      # prints the multi-host DATABASE_URL
    python deploy/ha_cluster.py status [--root DIR]
    python deploy/ha_cluster.py down [--root DIR]

Everything is pg_auto_failover's own machinery (``pg_autoctl``, Debian package
``postgresql-15-auto-failover``): the monitor is a PostgreSQL with the ``pgautofailover``
extension that health-checks the nodes and drives their state machines; each node is a
``pg_autoctl run`` keeper with its PostgreSQL as a child, in one process group of its own, so
``kill -9`` of that group is the loss of a database host. pg_autoctl refuses to run as root: as
root the cluster runs as the unprivileged ``alliance-faults`` user (the fault suite's), through
``runuser``. Health-check and promotion timeouts are lowered (``TEST_MONITOR_SETTINGS``,
``TEST_KEEPER_SETTINGS``) so a failover takes seconds, not the production defaults' ~30 s+.

Replication is synchronous while the standby is healthy (``synchronous_standby_names`` names it;
``number_sync_standbys`` stays 0, the only value pg_auto_failover accepts with one standby):
a commit is acknowledged only once the standby has it. When the standby is lost, the monitor
moves the primary to ``wait_primary`` and clears ``synchronous_standby_names``, so writes
continue on the primary alone until the standby is back (see the README, "Running highly
available").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: The unprivileged owner when run as root (the fault suite's user; created if missing).
CLUSTER_USER = "alliance-faults"
DEFAULT_ROOT = Path(tempfile.gettempdir()) / "alliance-ha"
DATABASE = "alliance"
SUPERUSER = "postgres"
NODES = ("node1", "node2")
#: Seconds ``up`` may take in all (initdb, monitor, primary, base backup of the standby).
UP_TIMEOUT = 150.0

#: Monitor GUCs (milliseconds), lowered for tests: a node that misses health checks for ~2 s
#: is unhealthy, and a primary that cannot be reached is demoted after 3 s. The defaults are
#: 5 s, 5 s, 2, 2 s, 20 s, 30 s, 10 s.
TEST_MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": 1000,
    "pgautofailover.health_check_timeout": 1000,
    "pgautofailover.health_check_max_retries": 1,
    "pgautofailover.health_check_retry_delay": 500,
    "pgautofailover.node_considered_unhealthy_timeout": 2000,
    "pgautofailover.primary_demote_timeout": 3000,
    "pgautofailover.startup_grace_period": 2000,
}
#: Keeper settings (seconds), lowered to match: a primary cut off from the monitor and its
#: standby demotes itself after 2 s (before the monitor's 3 s demote timeout, so two primaries
#: never take writes at once); a standby being promoted waits at most 2 s for its WAL receiver.
TEST_KEEPER_SETTINGS = {
    "timeout.network_partition_timeout": 2,
    "timeout.prepare_promotion_catchup": 10,
    "timeout.prepare_promotion_walreceiver": 2,
    "timeout.postgresql_restart_failure_timeout": 5,
}


class ClusterError(RuntimeError):
    """One line an operator can act on."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bindir() -> Path:
    """PostgreSQL 15's binaries: the version pg_autoctl and its monitor extension were built for."""
    if explicit := os.environ.get("ALLIANCE_HA_PG_BINDIR"):
        return Path(explicit)
    debian = Path("/usr/lib/postgresql/15/bin")
    if (debian / "pg_ctl").exists():
        return debian
    raise ClusterError("no PostgreSQL 15 binaries in /usr/lib/postgresql/15/bin (set ALLIANCE_HA_PG_BINDIR)")


def pg_autoctl() -> str:
    found = shutil.which("pg_autoctl") or shutil.which("pg_autoctl", path=str(bindir()))
    if not found:
        raise ClusterError("pg_autoctl not found: apt-get install -y postgresql-15-auto-failover")
    return found


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        return pwd.getpwnam(name)


@dataclass
class Node:
    """One member as the monitor sees it."""

    name: str
    port: int
    reported: str
    assigned: str
    healthy: bool


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.2) -> float:
    """Seconds until ``check()`` is true; a ClusterError naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(ClusterError, subprocess.SubprocessError, OSError):
            if check():
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise ClusterError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


class HACluster:
    """The monitor and two nodes under ``root``; ``state.json`` there lets another process
    (``status``, ``down``) find them."""

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        self.root = root
        self.socket_dir = root / "socket"
        self.bin = bindir()
        self.as_root = os.geteuid() == 0
        self.user = _ensure_user(CLUSTER_USER) if self.as_root else pwd.getpwuid(os.geteuid())
        self.ports: dict[str, int] = {}
        self.pgids: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._load()

    # -- addresses ------------------------------------------------------------------------------

    def dsn(self, database: str = DATABASE) -> str:
        """The multi-host DSN: libpq-style clients (asyncpg included) try each host and keep the
        one that accepts writes, so after a promotion a new connection finds the new primary."""
        hosts = ",".join(f"127.0.0.1:{self.ports[n]}" for n in NODES)
        return f"postgresql://{SUPERUSER}@{hosts}/{database}?target_session_attrs=read-write"

    def node_dsn(self, name: str, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.ports[name]}/{database}"

    def monitor_uri(self) -> str:
        return f"postgresql://autoctl_node@127.0.0.1:{self.ports['monitor']}/pg_auto_failover?sslmode=disable"

    # -- running tools as the owner -------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        # pg_autoctl keeps its configuration and state under XDG folders; the owner has no home.
        return {"HOME": str(self.root), "XDG_CONFIG_HOME": str(self.root / "config"),
                "XDG_DATA_HOME": str(self.root / "share"), "XDG_RUNTIME_DIR": str(self.root / "run"),
                "PATH": f"{self.bin}:/usr/bin:/bin", "PGHOST": str(self.socket_dir), "PGUSER": SUPERUSER,
                "PGCONNECT_TIMEOUT": "5", "LANG": "C.UTF-8"}

    def _command(self, *args: str) -> list[str]:
        env = [f"{k}={v}" for k, v in self._env().items()]
        command = ["env", "-i", *env, *args]
        return ["runuser", "-u", self.user.pw_name, "--", *command] if self.as_root else command

    def run(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self._command(*args), capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if check and done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise ClusterError(f"{Path(args[0]).name} {args[1] if len(args) > 1 else ''} exited "
                               f"{done.returncode}: {last[0]}")
        return done

    def psql(self, port: int, sql: str, database: str = "postgres", user: str = SUPERUSER) -> str:
        return self.run(str(self.bin / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                        "-p", str(port), "-U", user, "-d", database, "-c", sql, timeout=15).stdout.strip()

    def _own(self, path: Path) -> None:
        if self.as_root:
            shutil.chown(path, self.user.pw_uid, self.user.pw_gid)

    # -- state between invocations --------------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.root / "state.json"

    def _load(self) -> None:
        if self._state_file.exists():
            state = json.loads(self._state_file.read_text())
            self.ports, self.pgids = state["ports"], state["pgids"]

    def _save(self) -> None:
        self._state_file.write_text(json.dumps({"ports": self.ports, "pgids": self.pgids}, indent=1))

    # -- the members ----------------------------------------------------------------------------

    def _initdb(self, name: str) -> None:
        data = self.root / name
        self.run(str(self.bin / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                 "--locale=C", "--no-sync", timeout=120)
        with (data / "postgresql.conf").open("a") as conf:
            # The socket in the cluster's own folder (the Debian default is root's); fsync off:
            # the trials kill processes, never the machine, so the page cache survives them and
            # "flushed on the standby" still means "survives the primary's death". The base
            # backup copies this file to the standby.
            conf.write(f"\nunix_socket_directories = '{self.socket_dir}'\nfsync = off\n"
                       "max_connections = 200\nshared_buffers = 64MB\nlog_min_messages = warning\n")

    def _spawn(self, name: str, *args: str) -> None:
        """``pg_autoctl`` in a process group of its own (its PostgreSQL is its child, same group)."""
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(self._command(pg_autoctl(), *args), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.root, start_new_session=True)
        log.close()
        self._procs[name] = proc
        self.pgids[name] = proc.pid
        self._save()

    def start(self, name: str) -> None:
        """(Re)start a member's ``pg_autoctl run`` (its configuration is already on disk)."""
        self._spawn(name, "run", "--pgdata", str(self.root / name))

    def kill(self, name: str) -> None:
        """``kill -9`` of the member's whole process group: keeper, postmaster and backends at once."""
        pgid = self.pgids.get(name)
        if pgid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc = self._procs.pop(name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _group_alive(pgid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.05)
        self.pgids.pop(name, None)
        self._save()

    def switchover(self, timeout: float = 60) -> None:
        """A planned switchover through the monitor: the primary is demoted (its PostgreSQL
        restarted as a standby) and the standby promoted; returns once it is done."""
        self.run(pg_autoctl(), "perform", "switchover", "--pgdata", str(self.root / "monitor"),
                 "--wait", str(int(timeout)), timeout=timeout + 10)

    def nodes(self) -> list[Node]:
        """The monitor's view: each node's reported and assigned state, and its health check."""
        out = self.psql(self.ports["monitor"], "SELECT nodename, nodeport, reportedstate, goalstate, health "
                        "FROM pgautofailover.node ORDER BY nodeid", database="pg_auto_failover")
        nodes = []
        for line in out.splitlines():
            name, port, reported, assigned, health = line.split("|")
            nodes.append(Node(name, int(port), reported, assigned, health == "1"))
        return nodes

    def primary(self) -> str | None:
        """The node that is primary and settled (reported = assigned = primary), if any."""
        for node in self.nodes():
            if node.reported == node.assigned == "primary":
                return node.name
        return None

    def role(self, name: str) -> tuple[str, str] | None:
        found = [(n.reported, n.assigned) for n in self.nodes() if n.name == name]
        return found[0] if found else None

    def wait_settled(self, timeout: float) -> float:
        """Seconds until one node is primary and the other secondary, both as assigned."""
        def settled() -> bool:
            states = sorted((n.reported, n.assigned) for n in self.nodes())
            return states == [("primary", "primary"), ("secondary", "secondary")]
        return wait_for("primary and secondary", settled, timeout)

    def sync_standby_names(self, name: str) -> str:
        return self.psql(self.ports[name], "SHOW synchronous_standby_names")

    # -- up / down ------------------------------------------------------------------------------

    def up(self, timeout: float = UP_TIMEOUT) -> str:
        """Start monitor, primary and standby; the multi-host DSN once both nodes are settled."""
        if self._state_file.exists():
            raise ClusterError(f"a cluster is already set up in {self.root}: run 'down' first")
        deadline = time.monotonic() + timeout
        pg_autoctl()  # a clear line now, not a failure half-way
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for path in (self.root, self.socket_dir, self.root / "run"):
            path.mkdir(exist_ok=True)
            self._own(path)
        self.ports = {"monitor": free_port(), **{n: free_port() for n in NODES}}
        self._save()

        self._initdb("monitor")
        self._spawn("monitor", "create", "monitor", "--pgdata", str(self.root / "monitor"),
                    "--pgport", str(self.ports["monitor"]), "--hostname", "127.0.0.1", "--auth", "trust",
                    "--no-ssl", "--run")
        wait_for("the monitor", lambda: self.psql(self.ports["monitor"], "SELECT 1 FROM pgautofailover.formation "
                                                  "LIMIT 1", database="pg_auto_failover") == "1",
                 deadline - time.monotonic())
        for key, value in TEST_MONITOR_SETTINGS.items():  # one by one: ALTER SYSTEM refuses a transaction
            self.psql(self.ports["monitor"], f"ALTER SYSTEM SET {key} = {value}")
        self.psql(self.ports["monitor"], "SELECT pg_reload_conf()")

        self._initdb(NODES[0])
        self._create_node(NODES[0])
        wait_for("the primary", lambda: self.role(NODES[0]) == ("single", "single"), deadline - time.monotonic())
        self._create_node(NODES[1])

        def standby_ready() -> bool:
            # pg_basebackup waits for a checkpoint; asking for one now makes it immediate
            # (else the spread checkpoint takes up to 4.5 minutes).
            self.psql(self.ports[NODES[0]], "CHECKPOINT")
            states = sorted((n.reported, n.assigned) for n in self.nodes())
            return states == [("primary", "primary"), ("secondary", "secondary")]

        wait_for("the standby", standby_ready, deadline - time.monotonic(), every=1.0)
        for name in NODES:
            for key, value in TEST_KEEPER_SETTINGS.items():
                self._config_set(name, key, str(value))
            self.run(pg_autoctl(), "reload", "--pgdata", str(self.root / name))
        wait_for("synchronous replication", lambda: self.sync_standby_names(NODES[0]) != "",
                 deadline - time.monotonic())
        return self.dsn()

    def _config_set(self, name: str, key: str, value: str, attempts: int = 10) -> None:
        """``pg_autoctl config set`` on a running node. Its keeper rewrites the same file as its state
        changes, and a ``config set`` that reads it mid-write fails with "Unrecognized configuration
        file" (seen in CI just after the standby reached secondary): that one failure is tried again."""
        for attempt in range(attempts):
            last = attempt == attempts - 1
            done = self.run(pg_autoctl(), "config", "set", "--pgdata", str(self.root / name), key, value,
                            check=last)
            if done.returncode == 0:
                return
            if "Unrecognized configuration file" not in (done.stderr or done.stdout):
                break
            time.sleep(0.2)
        lines = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ClusterError(f"pg_autoctl config exited {done.returncode}: {lines[0]}")

    def down(self) -> None:
        """Stop every member (TERM, then KILL after 10 s) and remove the folder."""
        for name, pgid in list(self.pgids.items()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.kill(name)
        shutil.rmtree(self.root, ignore_errors=True)

    def status(self) -> str:
        lines = [f"{'node':8} {'port':>6} {'reported':>14} {'assigned':>14} healthy"]
        lines += [f"{n.name:8} {n.port:>6} {n.reported:>14} {n.assigned:>14} {n.healthy}" for n in self.nodes()]
        return "\n".join(lines)

    def _create_node(self, name: str) -> None:
        self._spawn(name, "create", "postgres", "--pgdata", str(self.root / name), "--pgport", str(self.ports[name]),
                    "--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--username", SUPERUSER,
                    "--dbname", DATABASE, "--auth", "trust", "--no-ssl", "--monitor", self.monitor_uri(),
                    "--name", name, "--run")


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local pg_auto_failover cluster (monitor, primary, "
                                     "synchronous standby) on free loopback ports, for tests and demos.")
    parser.add_argument("verb", choices=("up", "down", "status"),
                        help="up: start and print DATABASE_URL; status: the monitor's view; down: stop and remove")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help=f"the cluster's folder (default {DEFAULT_ROOT})")
    parser.add_argument("--timeout", type=float, default=UP_TIMEOUT, help="seconds 'up' may take")
    args = parser.parse_args(argv)
    try:
        cluster = HACluster(args.root)
        if args.verb == "up":
            try:
                dsn = cluster.up(args.timeout)
            except BaseException:
                cluster.down()
                raise
            print(f"DATABASE_URL={dsn}")
        elif args.verb == "status":
            if not cluster.ports:
                raise ClusterError(f"no cluster in {args.root}")
            print(cluster.status())
            print(f"DATABASE_URL={cluster.dsn()}")
        else:
            cluster.down()
    except (ClusterError, subprocess.SubprocessError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
