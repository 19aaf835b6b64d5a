"""What the OpenAPI document says beyond the handlers' signatures: tags, descriptions, the
headers the API reads and sends, public routes, examples.

The handlers declare their bodies and answers (``api/schemas``); the headers that every
command shares (``Idempotency-Key``, ``If-Match``, ``ETag``…) are read and written by shared
code (``api/idempotency.py``, ``api/routes/common.py``), so they are declared here, once, by
the same rules that code follows. ``finish_document`` runs on the built document, so a
generator (openapi-typescript, openapi-python-client) and the linters (Spectral's
``spectral:oas``, Redocly's ``recommended``, both run by ``.ci/run``) read one document.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.datastructures import ResponseHeader
from litestar.openapi.spec import (
    BaseSchemaObject,
    Contact,
    Example,
    License,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Parameter,
    Schema,
    Tag,
)

from alliance.api.schemas import examples
from alliance.api.schemas.commands import COMMAND_EXAMPLE
from alliance.api.schemas.requests import FIELDS
from alliance.api.schemas.shared_types import COMPONENT_FIELDS
from alliance.core.logging import get_logger

log = get_logger("alliance.openapi")

#: Every tag an operation may carry, in the order the viewer lists them.
TAGS = [
    Tag(name="system", description="Liveness and readiness (public: no token)."),
    Tag(name="instruments", description="Installed measurement instruments: items, anchors, translations, "
                                        "scoring, bands and the sources of every criterion."),
    Tag(name="clinic", description="Clinic set-up: staff, enrolment, caseloads, care teams, discharge."),
    Tag(name="clients", description="A client's records: feedback, relapse plan, notes, corrections, proxies."),
    Tag(name="consent", description="Consent per scope, granted and withdrawn (each with a signed receipt)."),
    Tag(name="goals", description="The collaborative goal lifecycle: propose in the client's words, reflect, "
                                  "revise, agree (both parties, same version), change with consent, review."),
    Tag(name="measurements", description="Measurements scored by their installed instrument; risk answers "
                                         "raise risk flags."),
    Tag(name="risk", description="Risk flags and their acknowledgement."),
    Tag(name="views", description="Plan, progress and decision history (now or as of a moment), and their "
                                  "live Server-Sent Event streams."),
    Tag(name="compliance", description="Exports, FHIR, erasure, legal holds, receipts and the signing keys."),
    Tag(name="audit", description="The access log and the store's last verification (auditors)."),
    Tag(name="identity", description="Linking identity-provider accounts to clients and staff."),
    Tag(name="reminders", description="Reminders of due measures: where they are sent, and opting out."),
]

#: Operations anyone may call: no bearer token.
PUBLIC = frozenset({"health", "ready", "signingKeys", "verifyReceipt"})
#: POSTs that do not run through ``run_command`` (so no Idempotency-Key).
NOT_IDEMPOTENT = frozenset({"inviteIdentity", "redeemInvitation", "confirmInvitation", "unlinkIdentity",
                            "verifyReceipt", "issueProgressStreamTicket", "issueCaseloadStreamTicket"})

_STRING = Schema(type=OpenAPIType.STRING)
IDEMPOTENCY_KEY = Parameter(
    name="Idempotency-Key", param_in="header", required=False, schema=Schema(type=OpenAPIType.STRING,
                                                                             max_length=200),
    description="Your own key for this request (1–200 characters, kept only as a keyed digest for "
                "`ALLIANCE_IDEMPOTENCY_HOURS`): a retry with the same key and body answers the first result "
                "(`Idempotent-Replayed: true`) and records nothing twice; the same key with another body is a 422.")
IF_MATCH = Parameter(
    name="If-Match", param_in="header", required=False, schema=_STRING,
    description='The goal\'s ETag from `GET /goals/{goal_id}` (e.g. `"3"`): the command is refused with 412 '
                "when the goal changed since.")


SSE_FRAMES = ("Server-Sent Events (`event:`, `id:`, `data:` lines; `data` is JSON): the event types are in "
              "the operation's description")
ETAG = "The goal stream's version, quoted (send it back in `If-Match`)"
LOCATION = "Where the created resource is read"
REPLAYED = "`true` when this is the stored answer of an earlier request with the same Idempotency-Key"
RETRY_AFTER = "Seconds to wait before retrying"


def _operation_id(handler: Any) -> str:
    return str(handler.operation_id or handler.handler_name)


def _is_goal_command(handler: Any) -> bool:
    return "POST" in handler.http_methods and any(p.startswith("/goals/") for p in handler.paths)


def document_handlers(handlers: list[Any]) -> None:
    """Descriptions and success-response headers on the handlers (before the app is built)."""
    for handler in handlers:
        operation = _operation_id(handler)
        post = "POST" in handler.http_methods
        if not handler.description:
            words = handler.summary or operation
            if post and operation not in NOT_IDEMPOTENT:
                words += (". Safe to retry with the same `Idempotency-Key`: the first answer is replayed "
                          "and nothing is recorded twice.")
            handler.description = words
        headers: list[tuple[str, str]] = []
        if _is_goal_command(handler) or operation in {"proposeGoal", "getGoal"}:
            headers.append(("ETag", ETAG))
        if operation in {"proposeGoal", "enrolClient"}:
            headers.append(("Location", LOCATION))
        if post and operation not in NOT_IDEMPOTENT:
            headers.append(("Idempotent-Replayed", REPLAYED))
        if headers:
            existing = list(handler.response_headers or [])
            handler.response_headers = [*existing, *(ResponseHeader(name=name, value="", documentation_only=True,
                                                                    description=text) for name, text in headers)]


_EXAMPLES = {
    "getPlan": ("A plan with one agreed goal", examples.plan_example),
    "getGoal": ("An active goal", examples.goal_example),
    "getProgress": ("PHQ-9 from 16 to 7: reliable improvement and recovery", examples.progress_example),
    "getHistory": ("The client agreed to version 2", examples.history_example),
    "listClients": ("One client on the caseload", examples.caseload_example),
    "getClinicSettings": ("A clinic that set its crisis text and escalation", examples.clinic_settings_example),
    "listInstruments": ("The built-in PHQ-9", examples.instruments_example),
    "recordMeasurement": ("A PHQ-9 recorded", examples.measurement_example),
    "proposeGoal": ("A goal proposed in the client's words", lambda: COMMAND_EXAMPLE),
}


def finish_document(openapi: OpenAPI) -> None:
    """Tags, licence and contact; parameters and error headers; public routes; examples."""
    openapi.tags = TAGS
    openapi.info.license = License(name="Apache-2.0", identifier="Apache-2.0")
    openapi.info.contact = Contact(name="Alliance maintainers")
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "post"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            name = operation.operation_id or ""
            params = list(operation.parameters or [])
            if method == "post" and name not in NOT_IDEMPOTENT:
                params.append(IDEMPOTENCY_KEY)
            if method == "post" and path.startswith("/goals/"):
                params.append(IF_MATCH)
            operation.parameters = params or None
            if name in PUBLIC:
                operation.security = []
            for status, response in (operation.responses or {}).items():
                if status in {"429", "503"} or (status == "409" and method == "post"):
                    assert isinstance(response, OpenAPIResponse)
                    response.headers = {**(response.headers or {}),
                                        "Retry-After": OpenAPIHeader(schema=Schema(type=OpenAPIType.INTEGER),
                                                                     description=RETRY_AFTER)}
                if status.startswith("2") and isinstance(response, OpenAPIResponse):
                    for header in (response.headers or {}).values():
                        header.schema = header.schema or _STRING
            for response in (operation.responses or {}).values():
                stream = (getattr(response, "content", None) or {}).get("text/event-stream")
                if stream is not None:  # frames, not JSON: what they carry is in the description
                    stream.schema = Schema(type=OpenAPIType.STRING, description=SSE_FRAMES)
            if name in _EXAMPLES:
                summary, make = _EXAMPLES[name]
                success = next(r for s, r in (operation.responses or {}).items() if s.startswith("2"))
                assert isinstance(success, OpenAPIResponse) and success.content
                media: OpenAPIMediaType = success.content["application/json"]
                try:  # rendered by the projections' code: a renderer that changed must not stop the server
                    value = msgspec.to_builtins(make())
                except Exception as exc:  # the document tests require every example: they fail instead
                    log.warning("openapi_example_failed", operation=name, error=type(exc).__name__)
                    continue
                media.examples = {name: Example(summary=summary, value=_Verbatim(value))}
    for name, schema in (openapi.components.schemas or {}).items():
        _one_number(schema)
        words = FIELDS if name.endswith("Body") else COMPONENT_FIELDS.get(name, {})
        for field, prop in (schema.properties or {}).items():
            if not getattr(prop, "description", None) and field in words:
                prop.description = words[field]


@dataclass
class _Verbatim(BaseSchemaObject):
    """An example value emitted as it is: Litestar drops the ``null`` members of plain dicts, and an
    example without its required ``null`` fields does not match its own schema."""

    value: Any

    def to_schema(self) -> Any:  # type: ignore[override]
        return self.value


def _one_number(schema: Any) -> None:
    """Unions as a generator reads them, everywhere in the tree:

    - ``int | float`` is one JSON number: Litestar's ``oneOf: [integer, number]`` matches an integer
      twice, so no integer would be valid. Collapsed to ``number``.
    - ``X | UnsetType`` (a field that may be absent) leaves ``oneOf: [X]``, and ``tuple[int, ...]``
      an empty schema beside ``integer`` for its ``...``: the one real member is used directly
      (``allOf`` around a reference, so the field keeps its description).
    """
    if not isinstance(schema, Schema):
        return
    for key in ("one_of", "any_of"):
        members = getattr(schema, key) or []
        if not members:
            continue
        if {getattr(m, "type", None) for m in members} == {OpenAPIType.INTEGER, OpenAPIType.NUMBER}:
            setattr(schema, key, None)
            schema.type = OpenAPIType.NUMBER
            continue
        members = [m for m in members if not (isinstance(m, Schema) and m == Schema())]
        if len(members) == 1:
            (member,) = members
            setattr(schema, key, None)
            if isinstance(member, Schema):
                for field in dataclasses.fields(member):
                    value = getattr(member, field.name)
                    if value is not None and getattr(schema, field.name) is None:
                        setattr(schema, field.name, value)
            else:
                schema.all_of = [member]
        else:
            setattr(schema, key, members)
    for child in (*(schema.one_of or ()), *(schema.any_of or ()), *(schema.all_of or ()),
                  *(schema.properties or {}).values(), schema.items, schema.additional_properties):
        _one_number(child)
