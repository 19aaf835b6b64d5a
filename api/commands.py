"""Request bodies derived from the domain's commands, and the one way a command is run.

A POST body is the command's own fields minus what the request already says
(who acts, when, which clinic, which client or goal): ``body_for`` derives that
Struct from the command class, with ``forbid_unknown_fields`` so a typo is a
422 that names the field, and so the OpenAPI document always matches the
domain. Every text, list and map of the body is bounded on the way
(``api/input_limits.py``): the domain's commands say what a field is, the API
says how much of it a request may carry. Ids of new things (a milestone, a
review…) may be sent by the client or are derived from the command id, so a
retry creates nothing twice.
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Response

from alliance.api.auth import Principal
from alliance.api.input_limits import BoundedBody, bounded, text_limit
from alliance.api.schemas.commands import CommandResult, RecordedRef
from alliance.core.authority import Command
from alliance.core.handling import Outcome

CONTEXT_FIELDS = frozenset({"command_id", "actor", "at", "tenant_id", "goal_id", "client_id"})
_BODIES: dict[tuple[type, frozenset[str], frozenset[str], frozenset[str]], type[msgspec.Struct]] = {}


def body_for(command: type[Command], *, exclude: Iterable[str] = (), generated: Iterable[str] = (),
             name: str | None = None) -> type[msgspec.Struct]:
    """The request-body Struct for ``command`` (cached, so OpenAPI sees one schema per body)."""
    exclude_set = CONTEXT_FIELDS | frozenset(exclude)
    generated_set = frozenset(generated)
    cache_key = (command, exclude_set, generated_set, frozenset({name or ""}))
    if cache_key in _BODIES:
        return _BODIES[cache_key]
    hints = typing.get_type_hints(command, include_extras=True)
    defaults = dict(zip(command.__struct_fields__[len(command.__struct_fields__) - len(command.__struct_defaults__):],
                        command.__struct_defaults__, strict=True))
    fields: list[Any] = []
    for field in command.__struct_fields__:
        if field in exclude_set:
            continue
        hint = bounded(hints[field], text_limit(command, field))
        if field in generated_set:
            fields.append((field, hint | None, None))
        elif field in defaults:
            default = defaults[field]
            if isinstance(default, (dict, list, set)) or type(default).__name__ == "Factory":
                fields.append((field, hint, msgspec.field(default_factory=type(default) if not hasattr(
                    default, "factory") else default.factory)))
            else:
                fields.append((field, hint, default))
        else:
            fields.append((field, hint))
    body = msgspec.defstruct(name or f"{command.__name__}Body", fields, bases=(BoundedBody,), kw_only=True,
                             frozen=True, forbid_unknown_fields=True, module=__name__)
    _BODIES[cache_key] = body
    return body


def build(command: type[Command], body: msgspec.Struct | None, principal: Principal, command_id: UUID, *,
          at: datetime | None = None, generated: Iterable[str] = (), **context: Any) -> Any:
    """The domain command for this request."""
    values: dict[str, Any] = {} if body is None else msgspec.structs.asdict(body)
    for field in generated:
        if values.get(field) is None:
            values[field] = uuid.uuid5(command_id, field)
    values.update(context)
    return command(command_id=command_id, actor=principal.actor, at=at or datetime.now(UTC),
                   tenant_id=principal.tenant_id, **values)


def result_response(command: Command, outcome: Outcome, *, created: dict[str, UUID] | None = None,
                    receipts: list[dict[str, Any]] | None = None, status: int = 201,
                    headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> Response[bytes]:
    result = CommandResult(
        command_id=command.command_id, stream_id=outcome.stream_id, version=outcome.version,
        events=[RecordedRef(event_id=e.event_id, type=e.type, version=e.version, recorded_at=e.recorded_at)
                for e in outcome.events],
        duplicate=outcome.duplicate, created=created or {}, receipts=receipts or [])
    payload: Any = result if not extra else {**msgspec.to_builtins(result), **extra}
    return Response(msgspec.json.encode(payload), status_code=status if outcome.events else 200,
                    media_type="application/json", headers=headers)
