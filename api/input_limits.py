"""Bounded input: how long a text may be, how many items a list or map may hold, which
characters text may contain, which times are plausible, how deep and how large a JSON body
may be, and which media types carry it.

Lengths, counts and the allowed characters are declared on the body's schema (msgspec
``Meta``), so msgspec enforces them while decoding and the OpenAPI document states them;
``api/errors.py`` names the refusal (``too_long``, ``too_many_items``, ``control_characters``)
and the field. What a schema cannot say (media type, depth, size, time ranges) is checked
here, before msgspec decodes the body, or right after, before any handler runs — so a
refused request never reaches the store, nor the Idempotency-Key table.
"""

from __future__ import annotations

import math
import re
import types
import typing
from datetime import date, datetime
from typing import Annotated, Any

import msgspec
import msgspec.inspect as mi
from litestar import Request
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from alliance.core.errors import AllianceError, ConfigurationError, ValidationError

#: Maximum characters (code points) of each kind of text.
LABEL = 200  # a name, an id, a schedule, a pace ("three mornings a week")
STATEMENT = 2_000  # a goal, a reason, a barrier, a milestone, one item of a list
NOTE = 10_000  # a clinical note, a review summary, feedback, crisis information
#: Maximum items of any list, and entries of any map, in a body (answers: ``MAX_ANSWERS``).
MAX_ITEMS = 20
MAX_ANSWERS = 100
#: Deepest nesting of arrays and objects in a JSON body (the deepest valid body is ~4).
MAX_DEPTH = 32
#: Body size: at least the default, at most the ceiling; in between, what the route's field
#: limits need in the worst case (every text at its limit, 4 bytes a character in UTF-8).
DEFAULT_BODY_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
#: Plausible years for any date or time a caller supplies (a future observation is the
#: domain's refusal; a due date may lie decades ahead).
EARLIEST_YEAR = 1900
LATEST_YEAR = 2200

#: No C0 control (but tab and newline), no DEL, no C1 control. An ECMA-262 pattern, so the
#: OpenAPI document can carry it as it is.
PRINTABLE = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$"


def text(max_length: int) -> Any:
    """A str of at most ``max_length`` characters, none of them a control character."""
    return Annotated[str, msgspec.Meta(max_length=max_length, pattern=PRINTABLE)]


Label = text(LABEL)
Statement = text(STATEMENT)
Note = text(NOTE)
#: Command fields (``Class.field``) that are notes or summaries.
NOTE_FIELDS = frozenset({"RecordNote.text", "SetCrisisInformation.text", "GiveFeedback.text",
                         "RecordReview.summary", "RecordReview.client_view", "RaiseRiskFlag.note"})
#: Field names that are labels wherever they appear. Every other text field is a statement,
#: so a new field is bounded before anyone thinks of it.
LABEL_FIELDS = frozenset({"pace", "instrument_id", "instrument_version", "schedule", "text_version",
                          "attestation_method", "purpose", "looked_at", "items", "contacts"})


def text_limit(owner: type, field: str) -> int:
    if f"{owner.__name__}.{field}" in NOTE_FIELDS:
        return NOTE
    return LABEL if field in LABEL_FIELDS else STATEMENT


def limited(container: Any, max_items: int) -> Any:
    """``container`` (a list, tuple or map type) holding at most ``max_items``.

    Litestar's OpenAPI generator states a list's own ``maxItems`` but neither a map's
    ``maxProperties`` nor the limits of the items inside; msgspec's JSON Schema of the same
    type has them all, so it is handed to Litestar as the field's schema extension (without
    ``type``: an optional field's schema is a ``oneOf`` that also admits null).
    """
    schema = msgspec.json.schema(Annotated[container, msgspec.Meta(max_length=max_items)])
    if "$ref" in str(schema) or "$defs" in schema:  # a Struct or enum inside: keep Litestar's own
        return Annotated[container, msgspec.Meta(max_length=max_items)]
    extra = {key: value for key, value in schema.items() if key != "type"}
    return Annotated[container, msgspec.Meta(max_length=max_items, extra_json_schema={"extra": extra})]


def bounded(hint: Any, limit: int) -> Any:
    """``hint`` with every str at most ``limit`` characters (map keys: labels) and every list
    and map at most ``MAX_ITEMS`` long."""
    if hint is str:
        return text(limit)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return Annotated[(bounded(args[0], limit), *hint.__metadata__)]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(bounded(a, limit) for a in args)]  # noqa: UP007 (built from a tuple)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return limited(tuple[bounded(args[0], limit), ...], MAX_ITEMS)  # type: ignore[misc]
    if origin is tuple:
        return tuple[tuple(bounded(a, limit) for a in args)]  # type: ignore[misc]
    if origin in (list, set, frozenset):
        return limited(origin[bounded(args[0], limit)], MAX_ITEMS)
    if origin is dict:
        return limited(dict[bounded(args[0], LABEL), bounded(args[1], limit)], MAX_ITEMS)  # type: ignore[misc]
    return hint


#: A measurement's answers: item id → number, yes/no, text (free-text items), or not answered.
Answers = limited(dict[Label, int | float | bool | Note | None], MAX_ANSWERS)  # type: ignore[valid-type]


class BoundedBody(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Base of every request body: refuses implausible dates and times once decoded."""

    def __post_init__(self) -> None:
        for field in self.__struct_fields__:
            value = getattr(self, field)
            # the year as written: an offset can push year 1 below what UTC can represent
            if isinstance(value, date) and not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
                kind = "time" if isinstance(value, datetime) else "date"
                raise ValidationError(f"{field} must be a {kind} in the years {EARLIEST_YEAR} to {LATEST_YEAR}",
                                      code="time_out_of_range", field=field)


# --- what no schema says: size, media type, depth --------------------------------------------

class BodyTooLarge(AllianceError):
    code = "body_too_large"
    status = 413


class UnsupportedMediaType(AllianceError):
    code = "unsupported_media_type"
    status = 415


class TooDeep(AllianceError):
    code = "too_deep"
    status = 400


#: application/json and any structured-syntax JSON type (application/problem+json, …).
_JSON_MEDIA = re.compile(r"application/(?:[a-z0-9.!#$&^_-]+\+)?json")
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")


def too_deep(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether ``body`` nests arrays or objects deeper than ``limit``, counted on the bytes, so
    msgspec never recurses into a hostile document.

    Strings are cut out, then only brackets kept; each pass removes every innermost pair
    (``bytes.replace``: C speed; a hostile 1 MiB body costs 8-25 ms here, a Python loop 80+ ms),
    and a balanced document of depth d is empty after d passes. Unmatched brackets (not JSON
    anyway) count as depth, so a bare run of ``[`` is refused here too.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(_SQUARE, _NOT_BRACKET)
    passes = 0
    while brackets:
        inner_removed = brackets.replace(b"[]", b"")
        if len(inner_removed) == len(brackets):
            return passes + brackets.count(b"[") > limit
        passes += 1
        if passes > limit:
            return True
        brackets = inner_removed
    return False


async def check_body(request: Request[Any, Any, Any]) -> None:
    """Before a route's body is decoded: its size (413), its media type (415), its depth (400)."""
    try:
        body = await request.body()
    except RequestEntityTooLarge:
        limit = request.route_handler.resolve_request_max_body_size()
        raise BodyTooLarge(f"the request body is larger than this route accepts ({limit} bytes)",
                           limit_bytes=limit) from None
    if not body:
        return  # no body: the route says whether it needs one
    media_type, options = request.content_type
    charset = options.get("charset", "utf-8").lower()
    if not _JSON_MEDIA.fullmatch(media_type.strip().lower()) or charset not in {"utf-8", "utf8"}:
        raise UnsupportedMediaType("send the body as JSON in UTF-8, with Content-Type: application/json",
                                   field="Content-Type")
    if too_deep(body):
        raise TooDeep(f"the JSON body nests deeper than {MAX_DEPTH} levels", max_depth=MAX_DEPTH)


def worst_case_bytes(kind: mi.Type) -> float:
    """The largest JSON encoding of a value of ``kind`` within its limits (inf: unbounded)."""
    match kind:
        case mi.Metadata(type=inner):
            return worst_case_bytes(inner)
        case mi.StrType(max_length=n):
            return math.inf if n is None else 2 + 4 * n
        case mi.DictType(key_type=key, value_type=value, max_length=n):
            return math.inf if n is None else 2 + n * (worst_case_bytes(key) + worst_case_bytes(value) + 2)
        case mi.ListType(item_type=item, max_length=n) | mi.VarTupleType(item_type=item, max_length=n) \
                | mi.SetType(item_type=item, max_length=n) | mi.FrozenSetType(item_type=item, max_length=n):
            return math.inf if n is None else 2 + n * (worst_case_bytes(item) + 1)
        case mi.TupleType(item_types=items):
            return 2 + sum(worst_case_bytes(i) + 1 for i in items)
        case mi.UnionType(types=options):
            return max(worst_case_bytes(o) for o in options)
        case mi.StructType(fields=fields):
            return 2 + sum(len(f.encode_name) + 4 + worst_case_bytes(f.type) for f in fields)
        case mi.EnumType(cls=cls):
            return 2 + max(len(str(m.value)) for m in cls)
        case mi.LiteralType(values=values):
            return 2 + max(len(str(v)) for v in values)
        case mi.AnyType():
            return math.inf
    return 64  # a number, a uuid, a date, a time, true/false/null


def body_limit(body_type: Any) -> int:
    """The route's body limit in bytes: what its body can need, between the default and the ceiling."""
    need = worst_case_bytes(mi.type_info(body_type))
    if math.isinf(need):
        return DEFAULT_BODY_BYTES  # only a body with an opaque part (a receipt to verify) is unbounded
    return min(MAX_BODY_BYTES, max(DEFAULT_BODY_BYTES, math.ceil(need / 1024) * 1024))


def bound_request_bodies(handlers: list[Any]) -> None:
    """Give every route a body limit, and every route that takes a body the checks above.
    Called once on the handlers before the app is built (like ``document_problems``)."""
    for handler in handlers:
        data = typing.get_type_hints(handler.fn, include_extras=True).get("data")
        if data is None:
            handler.request_max_body_size = DEFAULT_BODY_BYTES
            continue
        if handler.before_request not in (None, check_body):
            # Litestar runs one before_request per route: a second one would silently drop these checks
            raise ConfigurationError(f"route {handler.paths} has its own before_request; call check_body from it")
        handler.request_max_body_size = body_limit(data)
        handler.before_request = check_body
