"""The ``alliance`` command line: every verb has ``--help``, long work shows progress,
and exit codes are for scripts (0 ok, 1 a check failed, 2 bad usage or configuration).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from alliance.api.identity_cli import identity
from alliance.core.errors import AllianceError, ConfigurationError
from alliance.core.logging import configure_logging
from alliance.core.settings import Settings, load_settings

# soft_wrap: a long line (a URL, a token, an id) is never broken at the terminal's width, so it
# can be copied whole; off a terminal rich also writes no colour codes.
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2

#: Set from the settings once they are read: the cause of a failure is printed at debug level.
_debug = False


def run(coro: Coroutine[Any, Any, int], settings: Settings | None = None) -> None:
    sys.exit(run_async(coro, settings))


def run_async(coro: Coroutine[Any, Any, Any], settings: Settings | None = None) -> Any:
    """Run ``coro``; a failure the operator can fix (configuration, database, plugins) ends the
    process with one line and exit 2 instead of a traceback."""
    try:
        return asyncio.run(coro)
    except Exception as exc:  # what is not explained is raised again unchanged
        fail(exc, settings)


def fail(exc: BaseException, settings: Settings | None = None) -> NoReturn:
    """One line on stderr (``alliance: …``) and exit 2, or ``exc`` raised again when it is a bug."""
    line = explain(exc, settings)
    if line is None:
        raise exc
    if _debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"alliance: {line}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def explain(exc: BaseException, settings: Settings | None) -> str | None:
    """The one line for a failure the operator can fix, else None (a bug: keep the traceback).

    The app's lifespan wraps its failures in ExceptionGroups (anyio task groups): the first
    explainable leaf is the cause.
    """
    import asyncpg

    if isinstance(exc, BaseExceptionGroup):
        return next((line for e in exc.exceptions if (line := explain(e, settings)) is not None), None)
    if isinstance(exc, ConfigurationError):
        return exc.message
    if isinstance(exc, AllianceError):
        return f"{exc.message} ({exc.code})"
    unreachable = (ConnectionError, socket.gaierror, TimeoutError, asyncpg.CannotConnectNowError,
                   asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError,
                   asyncpg.InvalidCatalogNameError, asyncpg.ConnectionDoesNotExistError)
    if isinstance(exc, unreachable) or (isinstance(exc, OSError) and exc.errno is None and "connect" in str(exc)):
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return f"cannot connect to the database {_database_where(settings)}: {reason}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return None


def _database_where(settings: Settings | None) -> str:
    """host:port/database of DATABASE_URL (never its password), or the embedded server."""
    from urllib.parse import urlsplit

    if settings is None or not settings.database_url:
        return "(the embedded PostgreSQL)"
    url = urlsplit(settings.database_url)
    # every host of a multi-host DSN (h1:p1,h2:p2, for failover), without the credentials
    hosts = ",".join(h if ":" in h else f"{h or 'localhost'}:5432"
                     for h in url.netloc.rsplit("@", 1)[-1].split(",")) or "localhost:5432"
    return f"at {hosts}{url.path or ''} (DATABASE_URL)"


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="alliance", prog_name="alliance", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Alliance: an event-sourced record of goals that client and clinician own together.

    Exit codes: 0 ok, 1 a check failed, 2 bad usage or configuration (one line on stderr;
    ALLIANCE_LOG_LEVEL=debug adds the cause).
    """
    global _debug
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        fail(exc)
    _debug = settings.log_level.lower() == "debug"
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

    run(go(), settings)


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
        _refuse_if_not(result, "malformed_export", export_file, "an Alliance history export")
        _print_result(result, as_json, f"export {export_file}")
        sys.exit(EXIT_OK if result.ok else EXIT_CHECK_FAILED)

    from alliance.core.events.verify import verify_store
    from alliance.core.runtime import open_runtime

    receipt = _read_receipt(Path(receipt_file)) if receipt_file else None

    async def go() -> int:
        ok = True
        async with open_runtime(settings) as rt:
            registry = _instruments(settings) if scores else None  # a bad plugin stops before the walk
            if receipt_file:
                from alliance.core.compliance.receipts import verify_receipt

                assert receipt is not None
                result = await verify_receipt(receipt, rt.pool, _public_keys(settings, receipt_file))
                _refuse_if_not(result, "malformed_receipt", receipt_file, "an Alliance receipt")
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
                ok = await _verify_scores(rt, registry, as_json) and ok
        return EXIT_OK if ok else EXIT_CHECK_FAILED

    run(go(), settings)


def _read_receipt(path: Path) -> dict[str, Any]:
    """The receipt's JSON, checked to be one before any database is opened (exit 2 if not)."""
    import msgspec

    from alliance.core.compliance.receipts import RECEIPT_KIND

    try:
        document = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError:
        document = None
    if not isinstance(document, dict) or document.get("kind") != RECEIPT_KIND:
        fail(ConfigurationError(f"{path} is not an Alliance receipt (verify --receipt takes the JSON a "
                                "command's receipt link returns)"))
    return document


def _refuse_if_not(result: Any, code: str, document: str, what: str) -> None:
    """A document that is not what the option claims is a usage error (2), not a failed check (1)."""
    malformed = [p for p in result.problems if p.code == code]
    if malformed:
        fail(ConfigurationError(f"{document} is not {what}: {malformed[0].message}"))


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


def _instruments(settings: Settings) -> Any:
    from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager

    return InstrumentRegistry.from_plugin_manager(get_plugin_manager(settings.plugins_dir))


async def _verify_scores(rt: Any, registry: Any, as_json: bool) -> bool:
    """Re-derive every stored measurement from its answers with the recorded instrument version
    (where installed): total, subscales, band, risk items, completeness and prorating. Every
    difference is named; none is repaired (the stored event is the record)."""
    from alliance.core.client import MeasurementRecorded, RiskFlagRaised
    from alliance.core.events.store import START

    skipped = 0
    measurements: list[MeasurementRecorded] = []
    flagged: dict[Any, tuple[str, ...]] = {}  # measurement id -> items of the flag it raised
    checkpoint = START
    store = await rt.stale_store()  # a replay tolerates the standby's bounded lag (core/events/replica.py)
    with console.status("re-scoring measurements"):
        while True:
            events = await store.read_all(after=checkpoint, limit=2000)
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

    # Before anything slow: a busy port is one line (uvicorn would exit 3 after the URL was printed).
    _check_port_free(host, port)
    from alliance.api.auth import check_auth_settings

    if demo:  # a demo is development: a made-up token secret, kept in the home (the workers read the env)
        os.environ["ALLIANCE_ENV"] = "development"
        settings = load_settings()
    try:
        check_auth_settings(settings)  # no secret and no issuer: refuse before starting anything
    except ConfigurationError as exc:
        fail(exc, settings)

    async def prepare() -> str:
        target = await resolve_target(settings)
        await apply_migrations(target.owner_dsn, app_role=settings.app_role,
                               app_role_password=settings.app_role_password)
        return target.owner_dsn

    # The embedded server is started here, in the parent, and stops when it exits;
    # the workers reach it through DATABASE_URL.
    owner_dsn = run_async(prepare(), settings)
    os.environ["DATABASE_URL"] = owner_dsn
    if demo:  # an explicit development mode: tokens signed with a secret kept in the home
        os.environ.setdefault("ALLIANCE_ENV", "development")
    served = load_settings()
    # What each worker's lifespan checks (the KEK against the stored keys, the plugins and their
    # fingerprints) is checked once here, so a problem is one line, not a worker's ExceptionGroup.
    run_async(_check_startup(served), served)
    if demo:
        from alliance.api.demo import load_demo

        run_async(load_demo(served, console=console, only_if_absent=True, base_url=f"http://{host}:{port}"),
                  served)
    _check_port_free(host, port)
    if served.metrics_token and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _metrics_folder(served.home / "metrics" / f"serve-{port}")
    console.print(f"Alliance on http://{host}:{port}  (OpenAPI viewer: http://{host}:{port}/schema)")
    uvicorn.run("alliance.api.app:create_app", factory=True, host=host, port=port, workers=workers, log_config=None,
                access_log=False, lifespan="on")


def _metrics_folder(folder: Path) -> None:
    """Every worker counts into this folder (prometheus-client's multiprocess mode), so a scrape
    of any worker sums them all; emptied first, since counts of a previous run are not this one's.
    Set before a worker imports prometheus_client (the workers inherit the environment)."""
    import os
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def _check_port_free(host: str, port: int) -> None:
    """Exit 2 with one line when ``host:port`` cannot be listened on (uvicorn binds with
    SO_REUSEADDR too, so this probe fails exactly when uvicorn's bind would)."""
    if port == 0:
        return
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        fail(ConfigurationError(f"cannot listen on {host}:{port} (--host/--port): {exc.strerror or exc}; "
                                "another process (perhaps another Alliance) is using it", field="port"))
    finally:
        probe.close()


async def _check_startup(settings: Settings) -> None:
    from alliance.core.database import create_app_pool, resolve_target
    from alliance.core.events.crypto import open_key_ring
    from alliance.core.shared_state import agree_on_folders
    from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager

    target = await resolve_target(settings)
    pool = await create_app_pool(target.app_dsn, min_size=1, max_size=1)
    try:
        await open_key_ring(pool, path=settings.kek_path, inline=settings.kek)
        # The signing-key, anchor and erasure-ledger folders are this database's (several nodes share them).
        await agree_on_folders(pool, settings)
    finally:
        await pool.close()
    InstrumentRegistry.from_plugin_manager(get_plugin_manager(settings.plugins_dir),
                                           known_fingerprints=settings.home / "instrument-fingerprints.json")


@main.command()
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve this process's counters (leader changes, appends) in Prometheus format on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Interface for --metrics-port.")
@click.pass_obj
def projector(settings: Settings, metrics_port: int | None, metrics_host: str) -> None:
    """Run the background work as its own process: projections (and the change feed they write),
    risk-flag notifications, reminders, not-on-track alerts and anchors.

    Run it beside `serve` with ALLIANCE_BACKGROUND=off on the HTTP workers, so they only serve.
    Several projectors may run: one leads each task, the others stand by and take over.
    SIGTERM or SIGINT stops it (exit 0).
    """
    from alliance.api.projector import run_projector
    from alliance.core.database import resolve_target
    from alliance.core.migrations import apply_migrations

    async def prepare() -> None:  # a projector may be the first process on a new database
        target = await resolve_target(settings)
        await apply_migrations(target.owner_dsn, app_role=settings.app_role,
                               app_role_password=settings.app_role_password)

    run_async(prepare(), settings)
    # The checks serve makes (the KEK and the shared folders against the database, the plugins): one line, exit 2.
    run_async(_check_startup(settings), settings)
    if metrics_port is not None:
        _check_port_free(metrics_host, metrics_port)
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_host)  # a thread; no personal data in any label
    console.print("Alliance projector: projections, notifications, reminders, alerts and anchors run here")
    run(run_projector(settings), settings)


@main.command()
@click.option("--output", "-o", default="-", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write the document to this file (default: standard output).")
@click.pass_obj
def openapi(settings: Settings, output: str) -> None:
    """Print the OpenAPI 3.1 document the server serves at /schema/openapi.json (no database needed).

    Feed it to a client generator (openapi-typescript, openapi-python-client) or a linter.
    """
    import json

    from alliance.api.app import create_app

    try:
        document = create_app(settings, run_projections=False).openapi_schema.to_schema()
    except ConfigurationError as exc:
        fail(exc, settings)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")


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

    try:  # in development mode: the secret kept in the home, the one a dev server uses
        issued = issue_token(settings, tenant=_uuid(tenant, "--tenant"), role=Role(role), sub=_uuid(sub, "--sub"),
                             ttl_seconds=ttl)
    except ConfigurationError as exc:
        fail(exc, settings)
    out.print(issued, soft_wrap=True)


@main.group()
def clinic() -> None:
    """Clinic set-up from the terminal."""


@clinic.command("bootstrap")
@click.option("--tenant", default=None, help="The new clinic's id, a UUID (default: a new one).")
@click.option("--admin", "admin_id", default=None, help="The first admin's staff id, a UUID (default: a new one).")
@click.pass_obj
def clinic_bootstrap(settings: Settings, tenant: str | None, admin_id: str | None) -> None:
    """Activate a clinic's first admin and print their token (every other set-up step goes
    through the API). Ids are UUIDs; without them new ones are made and printed."""
    import uuid
    from datetime import UTC, datetime

    from alliance.api.auth import issue_token
    from alliance.core.clinic import ActivateStaff
    from alliance.core.handling import CommandHandler
    from alliance.core.identity import Actor, Role
    from alliance.core.runtime import open_runtime

    tenant_id = _uuid(tenant, "--tenant") if tenant else uuid.uuid4()
    admin_uuid = _uuid(admin_id, "--admin") if admin_id else uuid.uuid4()

    async def go() -> int:
        async with open_runtime(settings) as rt:
            outcome = await CommandHandler(rt.store).handle_clinic(ActivateStaff(
                command_id=uuid.uuid5(uuid.NAMESPACE_URL, f"alliance:bootstrap:{tenant_id}:{admin_uuid}"),
                actor=Actor(id=uuid.UUID(int=0), role=Role.SYSTEM), at=datetime.now(UTC),
                tenant_id=tenant_id, staff_id=admin_uuid, role=Role.ADMIN))
        out.print("already done" if outcome.duplicate else f"admin {admin_uuid} active in clinic {tenant_id}",
                  soft_wrap=True)
        try:
            admin_token = issue_token(settings, tenant=tenant_id, role=Role.ADMIN, sub=admin_uuid)
        except ConfigurationError as exc:  # tokens come from the identity provider
            out.print(f"no token printed: {exc.message}", soft_wrap=True)
        else:
            out.print(f"export TENANT={tenant_id} ADMIN={admin_uuid}\nexport ADMIN_TOKEN={admin_token}",
                      soft_wrap=True, highlight=False)
        return EXIT_OK

    run(go(), settings)


@main.group()
def keys() -> None:
    """The server's signing keys (receipts, exports, anchors)."""


@keys.command("rotate")
@click.pass_obj
def keys_rotate(settings: Settings) -> None:
    """Make a new signing key; old public keys stay listed at /.well-known/jwks.json, so
    documents signed before still verify, and the old private key is deleted."""
    from alliance.core.compliance.signing import Signer

    try:
        signer = Signer.open(settings.signing_key_path)
        old = signer.kid
        new = signer.rotate()
    except OSError as exc:
        fail(exc, settings)
    out.print(f"signing key rotated: {old} → {new} (in {settings.signing_key_path})", soft_wrap=True)
    sys.exit(EXIT_OK)


@main.command()
@click.pass_obj
def demo(settings: Settings) -> None:
    """Load a realistic synthetic clinic (clients, goals at every stage, months of measurements)."""
    import uuid

    from alliance.api.auth import issue_token
    from alliance.api.demo import load_demo
    from alliance.core.identity import Role

    # The demo ends with tokens: a configuration that cannot sign them is said before loading.
    try:
        issue_token(settings, tenant=uuid.uuid4(), role=Role.ADMIN, sub=uuid.uuid4())
    except ConfigurationError as exc:
        fail(exc, settings)

    async def go() -> int:
        await load_demo(settings, console=console, only_if_absent=False)
        return EXIT_OK

    run(go(), settings)


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

    client_uuid = _uuid(client_id, "--client")

    async def go() -> int:
        async with open_runtime(settings) as rt:
            with console.status("replaying events"):
                view = await rt.read_stale(lambda store: history_as_of(store, client_uuid, moment))
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

    run(go(), settings)


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

    ids = _uuid(client_id, "--client"), _uuid(tenant, "--tenant"), _uuid(admin_id, "--admin")

    async def go() -> int:
        async with open_runtime(settings) as rt:
            outcome = await erase_client(
                CommandHandler(rt.store), Signer.open(settings.signing_key_path), settings.erasure_ledger_path,
                client_id=ids[0], tenant_id=ids[1], actor=Actor(id=ids[2], role=Role.ADMIN), reason=reason,
                command_id=uuid.uuid4())
        out.print("already erased" if outcome.duplicate else
                  f"erased: key destroyed={outcome.key_destroyed}, request {outcome.request_id}")
        return EXIT_OK

    run(go(), settings)


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

    run(go(), settings)


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

    run(go(), settings)


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

    run(go(), settings)


@projections.command("rebuild")
@click.argument("names", nargs=-1)
@click.option("--passes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Fold the clients in this many parts, reading the store once per part: memory for "
                   "about 1/N of the documents (a decade of events needs ~3 GB per million in one pass).")
@click.pass_obj
def projections_rebuild(settings: Settings, names: tuple[str, ...], passes: int) -> None:
    """Build a new version of NAMES (default: all) beside the live one, then switch readers."""
    from alliance.core.projections.rebuild import RebuildProgress, rebuild
    from alliance.core.runtime import open_runtime

    async def go() -> int:
        async with open_runtime(settings) as rt:
            with progress_bar() as bar:
                total = max(1, await rt.pool.fetchval("SELECT count(*) FROM events")) * passes
                tasks: dict[str, Any] = {}

                def report(p: RebuildProgress) -> None:
                    if p.name not in tasks:
                        tasks[p.name] = bar.add_task(f"rebuilding {p.name}", total=total)
                    bar.update(tasks[p.name], completed=min(p.events_read, total),
                               description=f"{p.name}: {p.phase}")

                results = await rebuild(rt.pool, rt.store, list(names) or None, dsn=rt.target.app_dsn,
                                        progress=report, bulk_store=await rt.stale_store(), passes=passes)
        for r in results:
            was = f"v{r.previous_version} → " if r.previous_version is not None else "(none before) → "
            out.print(f"{r.name}: {was}v{r.version}, {r.events_read} events in {r.seconds:.1f}s")
        return EXIT_OK

    run(go(), settings)


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
                results = await verify_projections(rt.pool, await rt.stale_store(), list(names) or None)
        ok = True
        for r in results:
            ok = ok and r.ok
            state = "[green]ok[/green]" if r.ok else (f"[red]DIFFERS[/red] mismatched={len(r.mismatched)} "
                                                      f"missing={len(r.missing)} extra={len(r.extra)}")
            out.print(f"{r.name} v{r.version}: {r.clients} clients, {r.events} events: {state}")
        return EXIT_OK if ok else EXIT_CHECK_FAILED

    run(go(), settings)


main.add_command(identity)

if __name__ == "__main__":
    main()
