"""Shared benchmark machinery: a dedicated fresh database, server facts, timing, results.

The database: a new, migrated database named ``alliance_bench_<hex>`` on the server
named by ``DATABASE_URL`` when set, otherwise on the embedded PostgreSQL (pgserver)
kept in its own home (``ALLIANCE_BENCH_HOME``, default ``/var/lib/alliance-bench`` as
root, else ``~/.local/share/alliance-bench``) — never the service's or the tests' data
directory. It is dropped at the end of the run.

Every side of a comparison runs on that same server with the same durability
settings, which are printed at the start; figures are medians of ``runs`` runs.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from alliance.core.database import database_name, ensure_database, start_embedded, with_database, with_user
from alliance.core.migrations import apply_migrations
from alliance.core.settings import Settings, load_settings

console = Console(width=None if sys.stdout.isatty() else 150)

APP_ROLE = "alliance_app"

SERVER_SETTINGS = ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes",
                   "wal_level", "wal_buffers", "commit_delay", "max_wal_size", "shared_buffers")


def bench_home() -> Path:
    if explicit := os.environ.get("ALLIANCE_BENCH_HOME"):
        return Path(explicit)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/alliance-bench")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "alliance-bench"


def bench_settings() -> Settings:
    settings = load_settings()
    if not settings.database_url:
        settings = msgspec.structs.replace(settings, home=bench_home())
    return settings


@dataclass(frozen=True)
class BenchDatabase:
    admin_dsn: str
    owner_dsn: str
    app_dsn: str
    embedded: bool

    @property
    def name(self) -> str:
        return database_name(self.owner_dsn)

    def libpq_params(self) -> dict[str, str]:
        """host/port/dbname/user/password of the owner DSN (host may be a socket directory)."""
        parts = urlsplit(self.owner_dsn)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return {
            "host": query.get("host") or parts.hostname or "localhost",
            "port": str(query.get("port") or parts.port or 5432),
            "dbname": database_name(self.owner_dsn),
            "user": unquote(parts.username or query.get("user") or os.environ.get("PGUSER", "postgres")),
            "password": unquote(parts.password or query.get("password") or ""),
        }


async def create_bench_database(prefix: str = "alliance_bench") -> BenchDatabase:
    settings = bench_settings()
    admin = settings.database_url or start_embedded(settings)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await ensure_database(admin, name)
    owner = with_database(admin, name)
    await apply_migrations(owner, app_role=APP_ROLE)
    app = with_user(owner, APP_ROLE, settings.app_role_password)
    return BenchDatabase(admin, owner, app, embedded=not settings.database_url)


async def drop_bench_database(db: BenchDatabase) -> None:
    conn = await asyncpg.connect(db.admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
    finally:
        await conn.close()


async def print_server(db: BenchDatabase) -> dict[str, str]:
    conn = await asyncpg.connect(db.owner_dsn)
    try:
        values = {name: await conn.fetchval(f"SHOW {name}") for name in SERVER_SETTINGS}
        cpus = os.cpu_count()
    finally:
        await conn.close()
    where = "embedded (pgserver, home " + str(bench_settings().home) + ")" if db.embedded else "DATABASE_URL"
    console.print(f"[bold]server[/] {where}, database {db.name}, client CPUs {cpus}")
    console.print("  " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return values


async def print_table_size(dsn: str, table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
        size = await conn.fetchval(f"SELECT pg_size_pretty(pg_total_relation_size('{table}'))")
    finally:
        await conn.close()
    console.print(f"  table {table}: {rows:,} rows, {size} with indexes")


# -- timing --------------------------------------------------------------------
async def timed(work: Callable[[], Awaitable[int]]) -> float:
    """Run ``work`` (returns how many events it handled) once; events per second."""
    started = time.perf_counter()
    count = await work()
    return count / (time.perf_counter() - started)


def timed_sync(work: Callable[[], int]) -> float:
    started = time.perf_counter()
    count = work()
    return count / (time.perf_counter() - started)


async def median_rate(work: Callable[[], Awaitable[int]], runs: int) -> float:
    """Median events/s over ``runs`` runs (each call of ``work`` uses fresh events)."""
    return statistics.median([await timed(work) for _ in range(runs)])


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar for a long phase; yields ``advance(n)``."""
    with Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


# -- results -------------------------------------------------------------------
@dataclass
class Comparison:
    figure: str
    alliance: float
    baseline_name: str
    baseline: float
    target: float  # Alliance / baseline must be at least this

    @property
    def ratio(self) -> float:
        return self.alliance / self.baseline if self.baseline else float("inf")

    @property
    def passed(self) -> bool:
        return self.ratio >= self.target


@dataclass
class Results:
    title: str
    rows: list[Comparison] = field(default_factory=list)

    def add(self, figure: str, alliance: float, baseline_name: str, baseline: float, target: float) -> None:
        row = Comparison(figure, alliance, baseline_name, baseline, target)
        self.rows.append(row)
        verdict = "[green]PASS[/]" if row.passed else "[red]MISS[/]"
        console.print(f"  {figure}: Alliance {alliance:,.0f}/s vs {baseline_name} {baseline:,.0f}/s "
                      f"= {row.ratio:.2f}× (target ≥ {target}×) {verdict}")

    def print(self) -> None:
        table = Table(title=self.title)
        for name, justify in (("figure", "left"), ("Alliance ev/s", "right"), ("baseline", "left"),
                              ("baseline ev/s", "right"), ("ratio", "right"), ("target", "right"),
                              ("", "center")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for r in self.rows:
            table.add_row(r.figure, f"{r.alliance:,.0f}", r.baseline_name, f"{r.baseline:,.0f}",
                          f"{r.ratio:.2f}×", f"≥ {r.target}×", "[green]PASS[/]" if r.passed else "[red]MISS[/]")
        console.print(table)

    def markdown(self) -> str:
        lines = ["| figure | Alliance ev/s | baseline | baseline ev/s | ratio | target | |",
                 "|---|---:|---|---:|---:|---:|---|"]
        lines += [f"| {r.figure} | {r.alliance:,.0f} | {r.baseline_name} | {r.baseline:,.0f} | {r.ratio:.2f}× "
                  f"| ≥ {r.target}× | {'PASS' if r.passed else 'MISS'} |" for r in self.rows]
        return "\n".join(lines)

    @property
    def all_passed(self) -> bool:
        return all(r.passed for r in self.rows)
