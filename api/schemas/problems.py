"""RFC 9457 problem details: the one shape of every error answer."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An error (RFC 9457 problem details, ``application/problem+json``): ``code`` is stable, ``field``
    says where; nothing was written."""

    type: Annotated[str, Meta(description="A URI naming the problem type (ends with the code)",
                              examples=["https://alliance.example/problems/invalid"])]
    title: Annotated[str, Meta(description="Short, human-readable summary of the problem type")]
    status: Annotated[int, Meta(description="The HTTP status code")]
    detail: Annotated[str, Meta(description="What went wrong, in words (never personal data)")]
    code: Annotated[str, Meta(description="Stable machine-readable code (e.g. `unknown_field`, `version_conflict`)")]
    field: Annotated[str | None, Meta(description="The input field at fault, when there is one")] = None
    instance: Annotated[str | None, Meta(description="The request path this problem occurred on")] = None
    errors: Annotated[list[dict[str, Any]] | None, Meta(
        description="Each invalid field when more than one is at fault (`field`, `code`, `detail`)")] = None
    extra: Annotated[dict[str, Any] | None, Meta(
        description="Problem-specific facts (e.g. the current version on a conflict)")] = None
