"""One translation of errors to RFC 9457 problem details (``application/problem+json``).

Every problem has ``type``, ``title``, ``status``, ``detail``, the stable domain
``code`` and, when known, the offending ``field``. Bad input is never a 500.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.exceptions import ValidationException as LitestarValidation

from core.errors import AllianceError
from core.logging import get_logger

log = get_logger("alliance.api")

PROBLEM_TYPE_BASE = "https://alliance.example/problems/"
PROBLEM_JSON = "application/problem+json"


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    code: str
    field: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
    extra: dict[str, Any] | None = None


_TITLES = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 409: "Conflict", 412: "Precondition failed", 415: "Unsupported media type",
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


def alliance_error_handler(request: Request, exc: AllianceError) -> Response[Problem]:
    status = exc.status if exc.status >= 400 else 400
    if status >= 500 and exc.code not in {"outcome_unknown", "instrument_failed"}:
        log.error("server_error", code=exc.code, route=request.scope.get("path_template"))
    return problem(status, exc.code, exc.message, field=exc.field, instance=request.url.path,
                   extra=_safe_details(exc.details))


def validation_handler(request: Request, exc: LitestarValidation) -> Response[Problem]:
    errors = exc.extra if isinstance(exc.extra, list) else []
    fields = [e.get("key") for e in errors if isinstance(e, dict) and e.get("key")]
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    detail = str(first.get("message") or exc.detail or "the request is not valid")
    field = _field_from(detail) or (fields[0] if fields else None)
    return problem(422, "invalid", detail, field=field, instance=request.url.path,
                   errors=[{k: v for k, v in e.items() if k in {"key", "message", "source"}}
                           for e in errors if isinstance(e, dict)] or None)


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
    # Never the exception text: it could hold personal data.
    log.error("unhandled_error", error=type(exc).__name__, route=request.scope.get("path_template"))
    return problem(500, "internal_error", "something went wrong on our side", instance=request.url.path)


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    AllianceError: alliance_error_handler,
    LitestarValidation: validation_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}
