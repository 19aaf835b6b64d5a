"""The ``alliance`` command line: every verb has ``--help``, long work shows progress,
and exit codes are for scripts (0 ok, 1 a check failed, 2 bad usage or configuration).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from alliance.core.errors import AllianceError
from alliance.core.logging import configure_logging
from alliance.core.settings import Settings, load_settings

console = Console(stderr=True)
out = Console()

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2


def run(coro: Coroutine[Any, Any, int]) -> None:
    try:
        code = asyncio.run(coro)
    except AllianceError as exc:
        console.print(f"[red]error[/red] ({exc.code}) {escape(exc.message)}")
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
    from alliance.core.database import resolve_target
    from alliance.core.migrations import apply_migrations

    async def go() -> int:
        target = await resolve_target(settings)
        applied = await apply_migrations(target.owner_dsn, app_role=settings.app_role,
                                         app_role_password=settings.app_role_password)
        out.print("applied: " + ", ".join(applied) if applied else "up to date")
        return EXIT_OK

    run(go())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--export", "export_file", type=click.Path(exists=True, dir_okay=False),
              help="Verify a signed history export offline (no database needed).")
@click.option("--receipt", "receipt_file", type=click.Path(exists=True, dir_okay=False),
              help="Verify a receipt against the store.")
@click.option("--anchors", is_flag=True, help="Also check the store against the signed anchors outside it.")
@click.option("--scores", is_flag=True, help="Also re-score every measurement with its recorded instrument "
              "version (where installed) and report differences.")
@click.pass_obj
def verify(settings: Settings, as_json: bool, export_file: str | None, receipt_file: str | None, anchors: bool,
           scores: bool) -> None:
    """Walk every stream's hash chain; exit 1 at the first broken link (named).

    With --export or --receipt, check that document instead.
    """
    import msgspec

    if export_file:
        from alliance.core.compliance.export import verify_export_file

        result = verify_export_file(Path(export_file), _public_keys(settings, export_file))
        _print_result(result, as_json, f"export {export_file}")
        sys.exit(EXIT_OK if result.ok else EXIT_CHECK_FAILED)

    from alliance.core.events.verify import verify_store
    from alliance.core.runtime import open_runtime

    receipt = msgspec.json.decode(Path(receipt_file).read_bytes()) if receipt_file else None

    async def go() -> int:
        ok = True
        async with open_runtime(settings) as rt:
            if receipt_file:
                from alliance.core.compliance.receipts import verify_receipt

                assert receipt is not None
                result = await verify_receipt(receipt, rt.pool, _public_keys(settings, receipt_file))
                _print_result(result, as_json, f"receipt {receipt_file}")
                return EXIT_OK if result.ok else EXIT_CHECK_FAILED
            async with rt.pool.acquire() as conn:
                total = await conn.fetchval("SELECT count(*) FROM events")
                with progress_bar() as bar:
                    task = bar.add_task("verifying events", total=total)
                    report = await verify_store(conn, progress=lambda n: bar.advance(task, n))
                    bar.update(task, completed=report.events_checked)
            if as_json:
                out.print_json(msgspec.json.encode(report).decode())
            elif report.ok:
                out.print(f"[green]ok[/green]: {report.events_checked} events in {report.streams_checked} "
                          "streams verify")
            else:
                b = report.first_break
                assert b is not None
                out.print(f"[red]BROKEN[/red] stream {b.stream_id} version {b.version} position {b.position}: "
                          f"{b.reason}")
            ok = report.ok
            if anchors:
                from alliance.core.compliance.anchors import check_against_anchors
                from alliance.core.compliance.signing import Signer

                with console.status("checking against anchors"):
                    result = await check_against_anchors(rt.pool, settings.anchor_path,
                                                         Signer.open(settings.signing_key_path))
                _print_result(result, as_json, "anchors")
                ok = ok and result.ok
            if scores:
                ok = await _verify_scores(rt, settings, as_json) and ok
        return EXIT_OK if ok else EXIT_CHECK_FAILED

    run(go())


def _public_keys(settings: Settings, _document: str) -> Any:
    """The server's public keys (every key ever used) from the signing-key directory."""
    from alliance.core.compliance.signing import Signer

    return Signer.open(settings.signing_key_path)


def _print_result(result: Any, as_json: bool, what: str) -> None:
    import msgspec

    if as_json:
        out.print_json(msgspec.json.encode(result.to_dict()).decode())
    elif result.ok:
        out.print(f"[green]ok[/green]: {what} verifies")
    else:
        out.print(f"[red]FAILED[/red]: {what}")
        for problem in result.problems:
            out.print(f"  {problem.code}: {escape(problem.message)}")


async def _verify_scores(rt: Any, settings: Settings, as_json: bool) -> bool:
    """Re-derive every stored measurement from its answers with the recorded instrument version
    (where installed): total, subscales, band, risk items, completeness and prorating. Every
    difference is named; none is repaired (the stored event is the record)."""
    from alliance.core.client import MeasurementRecorded, RiskFlagRaised
    from alliance.core.events.store import START
    from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager

    registry = InstrumentRegistry.from_plugin_manager(get_plugin_manager(settings.plugins_dir))
    skipped = 0
    measurements: list[MeasurementRecorded] = []
    flagged: dict[Any, tuple[str, ...]] = {}  # measurement id -> items of the flag it raised
    checkpoint = START
    with console.status("re-scoring measurements"):
        while True:
            events = await rt.store.read_all(after=checkpoint, limit=2000)
            if not events:
                break
            checkpoint = events[-1].checkpoint
            for event in events:
                p = event.payload
                if isinstance(p, RiskFlagRaised) and p.source == "measurement" and p.measurement_id:
                    flagged[p.measurement_id] = p.items
                elif isinstance(p, MeasurementRecorded):
                    if registry.has(p.instrument_id, p.instrument_version):
                        measurements.append(p)
                    else:
                        skipped += 1
    differences = [line for p in measurements for line in _score_differences(registry, p, flagged)]
    for line in differences:
        out.print(f"[red]score differs[/red] {escape(line)}")
    out.print(f"scores: {len(measurements)} re-scored, {skipped} with an instrument version not installed, "
              f"{len(differences)} different")
    return not differences


def _score_differences(registry: Any, p: Any, flagged: dict[Any, tuple[str, ...]]) -> list[str]:
    """Each way the stored measurement ``p`` differs from its answers re-scored now."""
    from alliance.core.errors import ValidationError

    where = f"{p.measurement_id} ({p.instrument_id}@{p.instrument_version})"
    try:
        fresh = registry.score(p.instrument_id, {**p.answers, **p.free_text}, version=p.instrument_version)
    except ValidationError as exc:
        return [f"{where}: the stored answers are not valid for this version ({exc.code}, {exc.field})"]
    found: list[str] = []
    stored_scores = {k: float(v) for k, v in p.scores.items()}
    fresh_scores = {k: float(v) for k, v in fresh.scores.items()}
    for name in sorted({*stored_scores, *fresh_scores}, key=lambda k: (k != "total", k)):
        before, now = stored_scores.get(name), fresh_scores.get(name)
        if before != now:
            what = "total" if name == "total" else f"subscale '{name}'"
            found.append(f"{where}: {what} stored {before:g}, now {now:g}" if before is not None and now is not None
                         else f"{where}: {what} stored {before}, now {now}")
    if p.band != fresh.band:
        found.append(f"{where}: band stored {p.band!r}, now {fresh.band!r}")
    # Version 1 events kept their risk items on the flag only.
    stored_risk = p.risk_items if p.risk_items is not None else flagged.get(p.measurement_id, ())
    if tuple(stored_risk) != tuple(fresh.risk_items):
        found.append(f"{where}: risk items stored {list(stored_risk)}, now {list(fresh.risk_items)}")
    expected_flag = fresh.risk_items or fresh.risk_unanswered
    if expected_flag and p.measurement_id not in flagged:
        found.append(f"{where}: no risk flag was raised, now one would be ({list(expected_flag)})")
    if p.risk_items is not None:  # completeness is recorded from schema version 2 on
        if p.incomplete != fresh.incomplete:
            found.append(f"{where}: incomplete stored {p.incomplete!r}, now {fresh.incomplete!r}")
        if p.prorated != fresh.prorated:
            found.append(f"{where}: prorated stored {p.prorated}, now {fresh.prorated}")
    return found


def _uuid(value: str, name: str) -> Any:
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.BadParameter(f"{name} must be a UUID") from None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (they share the database; SSE and idempotency work across them).")
@click.option("--demo", is_flag=True, help="Load the synthetic demo clinic first (once).")
@click.pass_obj
def serve(settings: Settings, host: str, port: int, workers: int, demo: bool) -> None:
    """Run the HTTP API (embedded PostgreSQL when DATABASE_URL is unset)."""
    import os

    import uvicorn

    from alliance.core.database import resolve_target
    from alliance.core.migrations import apply_migrations

    async def prepare() -> str:
        target = await resolve_target(settings)
        await apply_migrations(target.owner_dsn, app_role=settings.app_role,
                               app_role_password=settings.app_role_password)
        return target.owner_dsn

    # The embedded server is started here, in the parent, and stops when it exits;
    # the workers reach it through DATABASE_URL.
    owner_dsn = asyncio.run(prepare())
    os.environ["DATABASE_URL"] = owner_dsn
    if demo:
        from alliance.api.demo import load_demo

        asyncio.run(load_demo(load_settings(), console=console, only_if_absent=True,
                              base_url=f"http://{host}:{port}"))
    console.print(f"Alliance on http://{host}:{port}  (OpenAPI viewer: http://{host}:{port}/schema)")
    uvicorn.run("alliance.api.app:create_app", factory=True, host=host, port=port, workers=workers, log_config=None,
                access_log=False, lifespan="on")


@main.command()
@click.option("--tenant", required=True, help="The clinic (tenant) id.")
@click.option("--role", required=True, type=click.Choice(["client", "proxy", "clinician", "supervisor",
                                                          "auditor", "admin"]))
@click.option("--sub", required=True, help="The staff member's or client's id.")
@click.option("--ttl", default=8 * 3600, show_default=True, help="Lifetime in seconds.")
@click.pass_obj
def token(settings: Settings, tenant: str, role: str, sub: str, ttl: int) -> None:
    """Print a development bearer token (HS256 with ALLIANCE_JWT_SECRET)."""
    from alliance.api.auth import issue_token
    from alliance.core.identity import Role

    out.print(issue_token(settings, tenant=_uuid(tenant, "--tenant"), role=Role(role), sub=_uuid(sub, "--sub"),
                          ttl_seconds=ttl), soft_wrap=True)


@main.group()
def clinic() -> None:
    """Clinic set-up from the terminal."""


@clinic.command("bootstrap")
@click.option("--tenant", required=True, help="The new clinic's id.")
@click.option("--admin", "admin_id", required=True, help="The first admin's staff id.")
@click.pass_obj
def clinic_bootstrap(settings: Settings, tenant: str, admin_id: str) -> None:
    """Activate a clinic's first admin (every other set-up step goes through the API)."""
    import uuid
    from datetime import UTC, datetime

    from alliance.core.clinic import ActivateStaff
    from alliance.core.handling import CommandHandler
    from alliance.core.identity import Actor, Role
    from alliance.core.runtime import open_runtime

    async def go() -> int:
        async with open_runtime(settings) as rt:
            outcome = await CommandHandler(rt.store).handle_clinic(ActivateStaff(
                command_id=uuid.uuid5(uuid.NAMESPACE_URL, f"alliance:bootstrap:{tenant}:{admin_id}"),
                actor=Actor(id=uuid.UUID(int=0), role=Role.SYSTEM), at=datetime.now(UTC),
                tenant_id=_uuid(tenant, "--tenant"), staff_id=_uuid(admin_id, "--admin"), role=Role.ADMIN))
        out.print("already done" if outcome.duplicate else f"admin {admin_id} active in clinic {tenant}")
        return EXIT_OK

    run(go())


@main.command()
@click.pass_obj
def demo(settings: Settings) -> None:
    """Load a realistic synthetic clinic (clients, goals at every stage, months of measurements)."""
    from alliance.api.demo import load_demo

    async def go() -> int:
        await load_demo(settings, console=console, only_if_absent=False)
        return EXIT_OK

    run(go())


@main.command()
@click.option("--client", "client_id", required=True, help="The client whose decision history to replay.")
@click.option("--as-of", "as_of", default=None, help="ISO 8601 time with offset (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def replay(settings: Settings, client_id: str, as_of: str | None, as_json: bool) -> None:
    """Replay a client's decision history from the events (optionally as of a moment)."""
    from datetime import UTC, datetime

    import msgspec
    from rich.table import Table

    from alliance.core.projections.asof import history_as_of
    from alliance.core.runtime import open_runtime

    moment = datetime.now(UTC)
    if as_of:
        try:
            moment = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter("--as-of must be ISO 8601") from None
        if moment.tzinfo is None:
            raise click.BadParameter("--as-of needs a time-zone offset")

    async def go() -> int:
        async with open_runtime(settings) as rt:
            with console.status("replaying events"):
                view = await history_as_of(rt.store, _uuid(client_id, "--client"), moment)
        if view is None:
            console.print("[red]no events for this client[/red]")
            return EXIT_CHECK_FAILED
        if as_json:
            out.print_json(msgspec.json.encode(view).decode())
            return EXIT_OK
        table = Table(title=f"Decision history of {client_id} as of {moment.isoformat()}")
        for column in ("recorded", "occurred", "what", "who", "goal", "consents in force"):
            table.add_column(column)
        for e in view["entries"]:
            consents = ", ".join(c.get("scope", "") for c in e.get("consents_in_force", []))
            goal = f"{str(e.get('goal_id'))[:8]} v{e.get('goal_version')}" if e.get("goal_id") else ""
            table.add_row(str(e["recorded_at"])[:19], str(e["occurred_at"])[:19], e["type"],
                          f"{e['actor_role']} {str(e['actor_id'])[:8]}", goal, consents)
        out.print(table)
        return EXIT_OK

    run(go())


@main.command()
@click.option("--client", "client_id", required=True, help="The client to erase.")
@click.option("--tenant", required=True, help="The client's clinic.")
@click.option("--admin", "admin_id", required=True, help="The admin performing the erasure (recorded).")
@click.option("--reason", required=True, help="Why (recorded as a hash, never as text).")
@click.pass_obj
def erase(settings: Settings, client_id: str, tenant: str, admin_id: str, reason: str) -> None:
    """Right to erasure: destroy the client's data key (refused while a legal hold is in place)."""
    import uuid

    from alliance.core.compliance.erasure_flow import erase_client
    from alliance.core.compliance.signing import Signer
    from alliance.core.handling import CommandHandler
    from alliance.core.identity import Actor, Role
    from alliance.core.runtime import open_runtime

    async def go() -> int:
        async with open_runtime(settings) as rt:
            outcome = await erase_client(
                CommandHandler(rt.store), Signer.open(settings.signing_key_path), settings.erasure_ledger_path,
                client_id=_uuid(client_id, "--client"), tenant_id=_uuid(tenant, "--tenant"),
                actor=Actor(id=_uuid(admin_id, "--admin"), role=Role.ADMIN), reason=reason,
                command_id=uuid.uuid4())
        out.print("already erased" if outcome.duplicate else
                  f"erased: key destroyed={outcome.key_destroyed}, request {outcome.request_id}")
        return EXIT_OK

    run(go())


@main.command("reapply-erasures")
@click.pass_obj
def reapply_erasures_cmd(settings: Settings) -> None:
    """After a restore from backup: destroy again every key the erasure ledger says was destroyed."""
    from alliance.core.compliance.erasure import reapply_erasures
    from alliance.core.compliance.signing import Signer
    from alliance.core.runtime import open_runtime

    async def go() -> int:
        async with open_runtime(settings) as rt:
            done = await reapply_erasures(rt.keys, settings.erasure_ledger_path,
                                          keys=Signer.open(settings.signing_key_path),
                                          notify=rt.store.notify_key_destroyed)
        again = sum(1 for d in done if d.get("redestroyed"))
        out.print(f"{len(done)} erasures in the ledger, {again} re-applied")
        return EXIT_OK

    run(go())


@main.command()
@click.pass_obj
def anchor(settings: Settings) -> None:
    """Verify the store and write a signed anchor of every chain head outside the database."""
    from alliance.core.compliance.anchors import write_anchor
    from alliance.core.compliance.signing import Signer
    from alliance.core.runtime import open_runtime

    async def go() -> int:
        async with open_runtime(settings) as rt:
            with console.status("verifying and anchoring"):
                path = await write_anchor(rt.pool, Signer.open(settings.signing_key_path), settings.anchor_path,
                                          verify_first=True)
        out.print(f"anchored: {path}")
        return EXIT_OK

    run(go())


@main.group()
def projections() -> None:
    """Read models: status, rebuild without downtime, verify against a fresh replay."""


@projections.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def projections_status(settings: Settings, as_json: bool) -> None:
    """Each projection's version, state, checkpoint and lag."""
    import msgspec
    from rich.table import Table

    from alliance.core.projections.rebuild import status
    from alliance.core.runtime import open_runtime

    async def go() -> int:
        async with open_runtime(settings) as rt:
            rows = await status(rt.pool)
        if as_json:
            out.print_json(msgspec.json.encode([r.__dict__ for r in rows]).decode())
            return EXIT_OK
        table = Table(title="projections")
        for column in ("name", "version", "state", "checkpoint", "applied", "behind", "seconds behind", "stale"):
            table.add_column(column)
        for r in rows:
            table.add_row(r.name, str(r.version), r.state, r.checkpoint, str(r.events_applied),
                          str(r.events_behind), f"{r.seconds_behind:.1f}", "yes" if r.stale else "")
        out.print(table)
        return EXIT_OK

    run(go())


@projections.command("rebuild")
@click.argument("names", nargs=-1)
@click.pass_obj
def projections_rebuild(settings: Settings, names: tuple[str, ...]) -> None:
    """Build a new version of NAMES (default: all) beside the live one, then switch readers."""
    from alliance.core.projections.rebuild import RebuildProgress, rebuild
    from alliance.core.runtime import open_runtime

    async def go() -> int:
        async with open_runtime(settings) as rt:
            with progress_bar() as bar:
                total = max(1, await rt.pool.fetchval("SELECT count(*) FROM events"))
                tasks: dict[str, Any] = {}

                def report(p: RebuildProgress) -> None:
                    if p.name not in tasks:
                        tasks[p.name] = bar.add_task(f"rebuilding {p.name}", total=total)
                    bar.update(tasks[p.name], completed=min(p.events_read, total),
                               description=f"{p.name}: {p.phase}")

                results = await rebuild(rt.pool, rt.store, list(names) or None, dsn=rt.target.app_dsn,
                                        progress=report)
        for r in results:
            was = f"v{r.previous_version} → " if r.previous_version is not None else "(none before) → "
            out.print(f"{r.name}: {was}v{r.version}, {r.events_read} events in {r.seconds:.1f}s")
        return EXIT_OK

    run(go())


@projections.command("verify")
@click.argument("names", nargs=-1)
@click.pass_obj
def projections_verify(settings: Settings, names: tuple[str, ...]) -> None:
    """Compare a fresh replay with the live tables; exit 1 on any difference."""
    from alliance.core.projections.rebuild import verify as verify_projections
    from alliance.core.runtime import open_runtime

    async def go() -> int:
        async with open_runtime(settings) as rt:
            with console.status("replaying and comparing"):
                results = await verify_projections(rt.pool, rt.store, list(names) or None)
        ok = True
        for r in results:
            ok = ok and r.ok
            state = "[green]ok[/green]" if r.ok else (f"[red]DIFFERS[/red] mismatched={len(r.mismatched)} "
                                                      f"missing={len(r.missing)} extra={len(r.extra)}")
            out.print(f"{r.name} v{r.version}: {r.clients} clients, {r.events} events: {state}")
        return EXIT_OK if ok else EXIT_CHECK_FAILED

    run(go())


if __name__ == "__main__":
    main()
