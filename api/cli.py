"""The ``alliance`` command line: every verb has ``--help``, long work shows progress,
and exit codes are for scripts (0 ok, 1 a check failed, 2 bad usage or configuration).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.errors import AllianceError
from core.logging import configure_logging
from core.settings import Settings, load_settings

console = Console(stderr=True)
out = Console()

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2


def run(coro: Coroutine[Any, Any, int]) -> None:
    try:
        code = asyncio.run(coro)
    except AllianceError as exc:
        console.print(f"[red]error[/red] [{exc.code}] {exc.message}")
        sys.exit(EXIT_USAGE)
    sys.exit(code)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """Alliance: an event-sourced record of goals that client and clinician own together."""
    settings = load_settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    ctx.obj = settings


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Apply pending database migrations (as the database owner)."""
    from core.database import resolve_target
    from core.migrations import apply_migrations

    async def go() -> int:
        target = await resolve_target(settings)
        applied = await apply_migrations(target.owner_dsn, app_role=settings.app_role,
                                         app_role_password=settings.app_role_password)
        out.print("applied: " + ", ".join(applied) if applied else "up to date")
        return EXIT_OK

    run(go())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def verify(settings: Settings, as_json: bool) -> None:
    """Walk every stream's hash chain; exit 1 at the first broken link (named)."""
    import msgspec

    from core.events.verify import verify_store
    from core.runtime import open_runtime

    async def go() -> int:
        async with open_runtime(settings) as rt, rt.pool.acquire() as conn:
            total = await conn.fetchval("SELECT count(*) FROM events")
            with progress_bar() as bar:
                task = bar.add_task("verifying events", total=total)
                report = await verify_store(conn, progress=lambda n: bar.advance(task, n))
                bar.update(task, completed=report.events_checked)
        if as_json:
            out.print_json(msgspec.json.encode(report).decode())
        elif report.ok:
            out.print(f"[green]ok[/green]: {report.events_checked} events in {report.streams_checked} streams verify")
        else:
            b = report.first_break
            assert b is not None
            out.print(f"[red]BROKEN[/red] stream {b.stream_id} version {b.version} position {b.position}: {b.reason}")
        return EXIT_OK if report.ok else EXIT_CHECK_FAILED

    run(go())


if __name__ == "__main__":
    main()
