"""One translation of errors to RFC 9457 problem details (``application/problem+json``).

Every problem has ``type``, ``title``, ``status``, ``detail``, the stable domain
``code`` and, when known, the offending ``field``. Bad input is never a 500.

A database that cannot be reached is never a 500 either: every form of lost or refused
connection (``database_outage`` below is the one list) answers 503 ``database_unavailable``
with ``Retry-After``, whichever layer it surfaced in.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.exceptions import ValidationException as LitestarValidation

from alliance.api.schemas.problems import Problem as _Problem
from alliance.core.errors import AllianceError, DatabaseUnavailable
from alliance.core.logging import get_logger

log = get_logger("alliance.api")

PROBLEM_TYPE_BASE = "https://alliance.example/problems/"
PROBLEM_JSON = "application/problem+json"


# The problem-details Struct lives with the other answers' shapes (its fields described there).
Problem = _Problem


_TITLES = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 412: "Precondition failed", 413: "Content too large",
           415: "Unsupported media type",
           422: "Invalid input", 429: "Too many requests", 500: "Internal error", 503: "Service unavailable"}


def problem(status: int, code: str, detail: str, *, field: str | None = None, instance: str | None = None,
            errors: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> Response[Problem]:
    body = Problem(type=PROBLEM_TYPE_BASE + code, title=_TITLES.get(status, "Error"), status=status,
                   detail=detail, code=code, field=field, instance=instance, errors=errors, extra=extra)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _safe_details(details: dict[str, Any]) -> dict[str, Any] | None:
    kept = {k: v for k, v in details.items() if isinstance(v, (str, int, float, bool)) or v is None}
    return kept or None


#: SQLSTATEs that mean "the server cannot serve us now", not "this request is wrong":
#: class 08 (connection exception), 57P01-57P03 (admin / crash shutdown, cannot connect now:
#: starting up or in recovery), 53300 (too many connections), 25006 (read-only: a standby).
_OUTAGE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "25006"})
_FILE_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def database_outage(exc: BaseException) -> bool:
    """True when ``exc`` says the database is unreachable or unwilling right now (a 503, not a 500).

    The one list of what counts: refused or reset sockets (``OSError``, which includes
    ``ConnectionRefusedError``, but not the errors of files), a timeout waiting for a connection, asyncpg's connection
    and shutdown errors by SQLSTATE (a read-only transaction, 25006, is a demoted primary or a standby),
    no host of a multi-host DSN accepting writes (``TargetServerAttributeNotMatched``), a
    connection whose server died mid-error, and ``InterfaceError`` on a closed pool or connection.
    An exception group (Litestar resolves dependencies in a task group) counts when every
    exception in it does.
    """
    if isinstance(exc, BaseExceptionGroup):
        return all(database_outage(e) for e in exc.exceptions)
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, _FILE_ERRORS):  # a file, not the network: a bug or the disk, not an outage
        return False
    if isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        return sqlstate.startswith("08") or sqlstate in _OUTAGE_SQLSTATES
    if isinstance(exc, asyncpg.TargetServerAttributeNotMatched):
        # A multi-host DSN with target_session_attrs=read-write found no writable host: during a
        # failover, the old primary is gone and the standby is not promoted yet.
        return True
    if isinstance(exc, asyncpg.InternalClientError) and "cannot switch to state" in str(exc):
        # The protocol still waits for the end of an error the server sent as it died (a FATAL
        # "unexpected postmaster exit" is followed by no ReadyForQuery), so the connection is
        # lost; two tasks sharing a connection fail earlier, as the InterfaceError below.
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        text = str(exc)
        return "closed" in text or "closing" in text or "not connected" in text
    return False


def outage_reason(exc: BaseException) -> str:
    """Why the database is unreachable, in words safe for a public ``/ready`` (no host, no text
    from the server, which could quote a query)."""
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return outage_reason(exc.exceptions[0])
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out"
    if sqlstate in {"57P01", "57P02"}:
        return "shutting down"
    if sqlstate == "57P03":
        return "starting up or recovering"
    if sqlstate == "53300":
        return "too many connections"
    if sqlstate == "25006":
        return "read-only (a standby)"
    if isinstance(exc, asyncpg.TargetServerAttributeNotMatched):
        return "no writable primary (failover in progress)"
    if sqlstate.startswith("08") or isinstance(exc, (ConnectionError, asyncpg.InterfaceError,
                                                     asyncpg.InternalClientError)):
        return "connection lost"
    if isinstance(exc, OSError):
        return "network error"
    return "unavailable"


def unavailable(request: Request, exc: BaseException) -> Response[Problem]:
    """The 503 for an outage. Only the exception's class is logged (its text may name a host)."""
    log.warning("database_unavailable", error=type(exc).__name__, route=request.scope.get("path_template"))
    return problem(503, DatabaseUnavailable.code, "the database cannot be reached just now; retry shortly "
                   "(with the same Idempotency-Key, a retry is safe)", instance=request.url.path,
                   headers={"Retry-After": str(DatabaseUnavailable.retry_after)})


def alliance_error_handler(request: Request, exc: AllianceError) -> Response[Problem]:
    status = exc.status if exc.status >= 400 else 400
    if status >= 500 and exc.code not in {"outcome_unknown", "instrument_failed", "database_unavailable"}:
        log.error("server_error", code=exc.code, route=request.scope.get("path_template"))
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return problem(status, exc.code, exc.message, field=exc.field, instance=request.url.path,
                   extra=_safe_details(exc.details), headers=headers)


def validation_handler(request: Request, exc: LitestarValidation) -> Response[Problem]:
    errors = exc.extra if isinstance(exc.extra, list) else []
    fields = [e.get("key") for e in errors if isinstance(e, dict) and e.get("key")]
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    detail = str(first.get("message") or exc.detail or "the request is not valid")
    field = _field_from(detail) or (fields[0] if fields else None)
    code, detail = input_problem(detail, field)
    return problem(422, code, detail, field=field, instance=request.url.path,
                   errors=[{k: input_problem(v, e.get("key"))[1] if k == "message" else v for k, v in e.items()
                            if k in {"key", "message", "source"}} for e in errors if isinstance(e, dict)] or None)


def _field_from(message: str) -> str | None:
    # msgspec names the path of the offending value: "... - at `$.answers.q9`"
    if "at `$." in message:
        return message.split("at `$.", 1)[1].split("`", 1)[0]
    if "field `" in message:
        return message.split("field `", 1)[1].split("`", 1)[0]
    return None


def http_error_handler(request: Request, exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    code = {401: "not_authenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
            415: "unsupported_media_type", 429: "too_many_requests"}.get(status, "http_error")
    if isinstance(exc, NotAuthorizedException):
        code = "not_authenticated"
    elif isinstance(exc, PermissionDeniedException):
        code = "forbidden"
    if status >= 500:
        log.error("server_error", route=request.scope.get("path_template"), status=status)
        return problem(status, "internal_error", "something went wrong on our side", instance=request.url.path)
    headers = {"WWW-Authenticate": 'Bearer realm="alliance"'} if status == 401 else None
    return problem(status, code, str(exc.detail), instance=request.url.path, headers=headers)


def internal_error_handler(request: Request, exc: Exception) -> Response[Problem]:
    if database_outage(exc):
        return unavailable(request, exc)
    # Never the exception text: it could hold personal data.
    log.error("unhandled_error", error=type(exc).__name__, route=request.scope.get("path_template"))
    return problem(500, "internal_error", "something went wrong on our side", instance=request.url.path)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    AllianceError: alliance_error_handler,
    LitestarValidation: validation_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}


#: msgspec's words for a broken bound of ``api/input_limits.py`` → the stable code, and a
#: sentence that names the field and the limit (never the value, nor the pattern's regex).
_INPUT_BOUNDS = (
    ("Expected `str` of length <= ", "too_long", "{field} is longer than {limit} characters"),
    ("Expected `array` of length <= ", "too_many_items", "{field} holds more than {limit} items"),
    ("Expected `object` of length <= ", "too_many_items", "{field} holds more than {limit} entries"),
    ("Expected `str` matching regex", "control_characters",
     "{field} contains a control character (only newline and tab are allowed in text)"),
)


def input_problem(message: str, field: str | None) -> tuple[str, str]:
    """The code and detail of a 422 from msgspec's message: ``invalid`` unless a bound was broken."""
    for prefix, code, sentence in _INPUT_BOUNDS:
        if message.startswith(prefix):
            limit = message.removeprefix(prefix).split(" ", 1)[0]
            return code, sentence.format(field=field or "a value", limit=limit)
    return "invalid", message
