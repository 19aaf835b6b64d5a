"""One error hierarchy with stable codes. ``api/errors.py`` maps it to RFC 9457 problems.

Every error has a ``code`` (stable, snake_case, documented; clients branch on it),
a plain ``message`` a person can read, and optionally the ``field`` at fault.
"""

from __future__ import annotations

from typing import Any


class AllianceError(Exception):
    """Base of every error Alliance raises on purpose."""

    code: str = "alliance_error"
    #: The HTTP status the API answers with; the domain does not depend on HTTP,
    #: it only names the class of failure.
    status: int = 400
    #: Seconds after which the same request may well succeed (the API's ``Retry-After``);
    #: ``None`` when repeating it would only repeat the answer.
    retry_after: int | None = None

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None,
                 **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field
        self.details = details


class ValidationError(AllianceError):
    """Input does not match what is expected (422). Nothing was written."""

    code = "invalid"
    status = 422


class NotFound(AllianceError):
    code = "not_found"
    status = 404


class Forbidden(AllianceError):
    code = "forbidden"
    status = 403


class DomainRuleViolation(AllianceError):
    """A command is refused by a rule of the domain (409: the state does not allow it)."""

    code = "rule_violation"
    status = 409


class ConcurrencyConflict(AllianceError):
    """The stream moved on since the caller read it; nothing was written (409)."""

    code = "concurrency_conflict"
    status = 409

    def __init__(self, message: str, *, stream_id: str, expected: int, actual: int,
                 retry_after: int | None = None) -> None:
        super().__init__(message, stream_id=stream_id, expected=expected, actual=actual)
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        # Set when the handler ran out of time re-deciding: the command may still be valid,
        # so this is not an answer to keep (never stored under an Idempotency-Key).
        self.retry_after = retry_after


class RequestInProgress(AllianceError):
    """The first request with this Idempotency-Key is still running on a live worker (409).

    Not a final answer: retry after ``Retry-After`` seconds with the same key.
    """

    code = "request_in_progress"
    status = 409
    retry_after = 1


class PreconditionFailed(AllianceError):
    """A conditional request (``If-Match``) did not hold (412)."""

    code = "precondition_failed"
    status = 412


class OutcomeUnknown(AllianceError):
    """The connection dropped during an append: it may or may not have committed.

    Retrying with the same event ids is safe: the store accepts them once and
    says whether they were already recorded.
    """

    code = "outcome_unknown"
    status = 503
    retry_after = 1


class DatabaseUnavailable(AllianceError):
    """The database cannot be reached now (refused, lost, starting, shutting down, full): 503.

    Nothing about the request is known to have been recorded; a retry with the same
    Idempotency-Key is safe and tells.
    """

    code = "database_unavailable"
    status = 503
    retry_after = 2


class EventDecodeError(AllianceError):
    """A stored event cannot be read (unknown type or undecodable payload)."""

    code = "event_undecodable"
    status = 500

    def __init__(self, message: str, *, position: int, type_name: str) -> None:
        super().__init__(message, position=position, type=type_name)
        self.position = position
        self.type_name = type_name


class ConfigurationError(AllianceError):
    """Start-up found a problem in settings or plugins; the service refuses to start."""

    code = "configuration_error"
    status = 500
