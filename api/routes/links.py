"""One-time questionnaire links: a clinician hands one over in session, and the page at
``/q/{token}`` that answers it without an account.

Opening the page (GET) never uses the link up, so a mail scanner that prefetches it changes
nothing; only the answer (POST) does, in the same append as the measurement on the client's
stream, so a link answers exactly once even when two answers race. The measurement goes
through the client decider like any other (scored by the installed instrument, a risk answer
raising its flag), as the client's own answers (``reported_by`` self, channel ``link``). A
refusal of a real link (used, expired, consent withdrawn…) is recorded on the link's stream
and nothing else is written; a token that opens no link is answered 404 and recorded nowhere
(it names no stream anyone could be told about).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post
from litestar.enums import MediaType

from alliance.api.auth import Principal
from alliance.api.errors import problem
from alliance.api.idempotency import command_id_for, idempotency_key
from alliance.api.input_limits import BoundedBody, Label
from alliance.api.questionnaire_page import HEADERS, answers_from_form, form_page, message_page
from alliance.api.routes.clients import _crisis_information
from alliance.api.routes.common import visible_client
from alliance.api.state import AppServices
from alliance.core import questionnaire_links as ql
from alliance.core.client import (
    RecordMeasurement,
    ReportedBy,
    RiskFlagRaised,
    client_stream,
    decide_client,
)
from alliance.core.errors import AllianceError, ConcurrencyConflict, NotFound, ValidationError
from alliance.core.events.envelope import NewEvent
from alliance.core.events.store import StreamAppend
from alliance.core.handling import envelope, load
from alliance.core.identity import Actor, Role
from alliance.core.logging import get_logger
from alliance.core.reminders.sources import attached_measures, episode_measures
from alliance.core.schedules import status
from alliance.plugins.instruments import InstrumentDefinition

log = get_logger("alliance.links")

#: A form or JSON answer is small: an instrument's answers (free text included).
MAX_ANSWER_BYTES = 64 * 1024
#: Refusals recorded per link; later ones are logged (by link id) only.
MAX_RECORDED_REFUSALS = 20


def _now(svc: AppServices) -> datetime:
    return svc.clock.now()  # type: ignore[no-any-return]


def _key(svc: AppServices) -> bytes:
    return ql.link_key(svc.mac_key)


def _html(text: str, status: int) -> Response[str]:
    return Response(text, status_code=status, media_type=MediaType.HTML, headers=HEADERS)


def _refusal_page(exc: AllianceError) -> Response[str]:
    titles = {"link_used": "This link was already used", "link_expired": "This link has expired",
              "link_not_found": "This link is not known"}
    return _html(message_page(titles.get(exc.code, "This link cannot be used"), exc.message), exc.status)


def _problem(exc: AllianceError) -> Response[Any]:
    response = problem(exc.status, exc.code, exc.message, field=exc.field)
    response.headers.update(HEADERS)
    return response


async def _open(svc: AppServices, token: str) -> tuple[Any, ql.QuestionnaireLinkIssued, Any]:
    link_id = ql.parse_token(token)
    loaded = await load(svc.store, ql.link_stream(link_id), ql.initial_link_state(link_id), ql.evolve_link,
                        cache=svc.handler.cache)
    issued = ql.matching(loaded.state, token)
    client = await svc.handler.load_client(issued.client_id)
    return loaded, issued, client


async def _record_refusal(svc: AppServices, loaded: Any, issued: ql.QuestionnaireLinkIssued,
                          refused: ql.LinkRefused, tenant_id: UUID, now: datetime) -> None:
    """Every refusal of a real link is on its stream (one event per refusal, never the answers),
    up to ``MAX_RECORDED_REFUSALS``: a link posted to over and over (a script) fills no stream."""
    if loaded.state.refusals >= MAX_RECORDED_REFUSALS:
        log.info("questionnaire_link_refused", link_id=str(issued.link_id), reason=refused.reason, recorded=False)
        return
    payload = ql.QuestionnaireLinkRefused(link_id=issued.link_id, reason=refused.reason, refused_at=now)
    event = NewEvent(event_id=uuid.uuid4(), payload=payload, tenant_id=tenant_id, subject_id=issued.client_id,
                     actor_id=issued.client_id, actor_role=Role.CLIENT, occurred_at=now)
    try:
        await svc.store.append(loaded.stream_id, [event], loaded.version)
    except ConcurrencyConflict:
        # the link moved meanwhile (the race's winner used it): this refusal still happened
        await svc.store.append(loaded.stream_id, [event], await svc.store.stream_version(loaded.stream_id))
    log.info("questionnaire_link_refused", link_id=str(issued.link_id), reason=refused.reason)


@get("/q/{token:str}", operation_id="openQuestionnaireLink", include_in_schema=False)
async def open_link(token: str, svc: AppServices) -> Response[str]:
    """The questionnaire page. Reading it changes nothing: the link stays usable."""
    try:
        loaded, issued, client = await _open(svc, token)
        ql.check_usable(loaded.state, client.state, _now(svc))
        definition = svc.instruments.get(issued.instrument_id)
    except AllianceError as exc:
        return _refusal_page(exc)
    return _html(form_page(definition, action=f"/q/{token}", administration_id=issued.administration_id), 200)


def _submitted(request: Request[Any, Any, Any], raw: bytes) -> tuple[bool, dict[str, Any], dict[str, str]]:
    """(JSON?, the JSON body or {}, the form fields or {})."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media == "application/json":
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise ValidationError("The body is not JSON.", code="invalid_json", field="body") from None
        if not isinstance(body, dict):
            raise ValidationError("The body is a JSON object.", code="invalid", field="body")
        return True, body, {}
    if media not in ("application/x-www-form-urlencoded", ""):
        raise ValidationError("Send the form (application/x-www-form-urlencoded) or JSON.",
                              code="unsupported_media_type", field="Content-Type")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("The form is not UTF-8.", code="invalid", field="body") from None
    return False, {}, {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _administration_of(as_json: bool, body: dict[str, Any], fields: dict[str, str]) -> UUID | None:
    given = body.get("administration_id") if as_json else fields.get("administration_id")
    if given in (None, ""):
        return None
    try:
        return UUID(str(given))
    except ValueError:
        raise ValidationError("administration_id is not an id.", code="invalid", field="administration_id") from None


def _answers(as_json: bool, body: dict[str, Any], fields: dict[str, str],
             definition: InstrumentDefinition) -> dict[str, Any]:
    if not as_json:
        return answers_from_form(definition, fields)
    answers = body.get("answers")
    if not isinstance(answers, dict):
        raise ValidationError("answers is an object of item id to answer.", code="invalid", field="answers")
    return answers


@post("/q/{token:str}", operation_id="answerQuestionnaireLink", include_in_schema=False, status_code=201)
async def answer_link(request: Request[Any, Any, Any], token: str, svc: AppServices) -> Response[Any]:
    """Record the answers once; a risk answer shows the clinic's crisis information at once."""
    raw = await request.body()
    as_json = (request.headers.get("content-type") or "").lower().startswith("application/json")
    try:
        if len(raw) > MAX_ANSWER_BYTES:
            raise ValidationError("The answers are too long.", code="too_long", field="body")
        as_json, body, fields = _submitted(request, raw)
        return await _answer(svc, token, as_json, body, fields)
    except AllianceError as exc:
        if as_json:
            return _problem(exc)
        return _refusal_page(exc)


async def _answer(svc: AppServices, token: str, as_json: bool, body: dict[str, Any],
                  fields: dict[str, str]) -> Response[Any]:
    for _ in range(5):
        now = _now(svc)
        loaded, issued, client = await _open(svc, token)
        state = client.state
        try:
            ql.check_usable(loaded.state, state, now, administration_id=_administration_of(as_json, body, fields))
        except ql.LinkRefused as refused:
            await _record_refusal(svc, loaded, issued, refused, state.tenant_id, now)
            raise
        definition = svc.instruments.get(issued.instrument_id)
        measurement_id = ql.measurement_id_for(issued.link_id)
        command = RecordMeasurement(
            command_id=ql.event_id_for(issued.link_id, "answer"), actor=Actor(id=issued.client_id, role=Role.CLIENT),
            at=now, tenant_id=state.tenant_id, measurement_id=measurement_id, instrument_id=issued.instrument_id,
            answers=_answers(as_json, body, fields, definition),
            reported_by=ReportedBy(informant="self", channel="link"), observed_at=now, goal_ids=issued.goal_ids)
        try:
            payloads = decide_client(command, state, scorer=svc.instruments.score)
        except ValidationError as invalid:
            if as_json:
                raise
            # The person sees their form again with what to fix, their answers kept.
            values = {k.removeprefix("answer."): v for k, v in fields.items() if k.startswith("answer.")}
            page = form_page(definition, action=f"/q/{token}", administration_id=issued.administration_id,
                             error=invalid.message, values=values)
            return _html(page, 422)
        events = envelope(command, issued.client_id, payloads)
        use = NewEvent(event_id=ql.event_id_for(issued.link_id, "used"), payload=ql.used(issued, measurement_id, now),
                       tenant_id=state.tenant_id, subject_id=issued.client_id, actor_id=issued.client_id,
                       actor_role=Role.CLIENT, occurred_at=now, correlation_id=command.command_id,
                       causation_id=command.command_id)
        try:
            await svc.store.append_many([
                StreamAppend(stream_id=client_stream(issued.client_id), expected_version=client.version,
                             events=events),
                StreamAppend(stream_id=loaded.stream_id, expected_version=loaded.version, events=[use])])
        except ConcurrencyConflict:
            continue  # the record or the link moved: read again (a used link is then refused)
        except ValidationError as exc:
            if exc.code != "event_id_reused":
                raise
            continue
        flag = next((p for p in payloads if isinstance(p, RiskFlagRaised)), None)
        crisis = await _crisis_information(svc, state.tenant_id) if flag is not None else None
        log.info("questionnaire_link_used", link_id=str(issued.link_id), risk=flag is not None)
        if as_json:
            return Response({"measurement_id": str(measurement_id), "crisis_information": crisis},
                            status_code=201, headers=HEADERS)
        return _html(message_page("Thank you", "Your answers were sent to your care team. This link is now used up.",
                                  crisis=crisis), 201)
    raise ConcurrencyConflict("the record kept moving; send the answers again", stream_id=client_stream(
        issued.client_id), expected=-1, actual=-1, retry_after=1)


# --- a clinician hands a link over in session --------------------------------------------------

class LinkBody(BoundedBody, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The instrument to answer and, optionally, the administration the answer is for."""

    instrument_id: Label  # type: ignore[valid-type]
    #: One of this client's administrations of the instrument (open now); default: the one
    #: due now, or an unscheduled one when none is.
    administration_id: UUID | None = None


class LinkIssuedView(msgspec.Struct, kw_only=True):
    """A one-time link, shown once: Alliance keeps only a hash of its token."""

    link_id: UUID
    #: The page the client opens (no account needed); it works once.
    url: str
    #: The token in the URL (the last path segment).
    token: str
    instrument_id: str
    #: The administration the answer will complete.
    administration_id: UUID
    expires_at: datetime


async def _administration(svc: AppServices, client_id: UUID, instrument_id: str, wanted: UUID | None,
                          link_id: UUID, now: datetime) -> tuple[UUID, tuple[UUID, ...]]:
    """The administration a link answers, and its goal: one of the client's own, open now."""
    goal_ids = sorted({UUID(e.stream_id[5:]) for e in await svc.store.read_subject(client_id)
                       if e.stream_id.startswith("goal-")})
    open_now = []
    view_cache = svc.handler.cache
    client = await svc.handler.load_client(client_id)
    measures = [*episode_measures(client.state), *await attached_measures(svc.store, client_id, goal_ids, view_cache)]
    for m in measures:
        if m.instrument_id != instrument_id:
            continue
        read = status(m.schedule, owner_id=m.owner_id, instrument_id=m.instrument_id, goal_id=m.goal_id,
                      measurements=(), now=now, checkpoints=m.checkpoints)
        if read.current is not None:
            goals = () if m.goal_id is None else (m.goal_id,)
            open_now.append((read.current.state not in ("due", "overdue"), read.current.administration_id, goals))
    if wanted is not None:
        for _, administration_id, goals in open_now:
            if administration_id == wanted:
                return administration_id, goals
        raise ValidationError("This is not an administration of this client's measure that is open now.",
                              code="unknown_administration", field="administration_id")
    if open_now:
        _, administration_id, goals = min(open_now, key=lambda o: o[0])
        return administration_id, goals
    return ql.unscheduled_administration(link_id), ()


@post("/clients/{client_id:uuid}/questionnaire-links", operation_id="createQuestionnaireLink",
      tags=["measurements"], status_code=201,
      summary="Hand a client a one-time link to answer one questionnaire without an account",
      description="A clinician on the care team makes a link in session (the reminder process makes its own). "
                  "The token is shown once; Alliance keeps its hash. The link expires after "
                  "ALLIANCE_QUESTIONNAIRE_LINK_HOURS and answers once; opening it changes nothing.")
async def create_link(request: Request[Any, Any, Any], client_id: UUID, data: LinkBody, principal: Principal,
                      svc: AppServices) -> Response[LinkIssuedView]:
    await visible_client(svc, principal, client_id)
    try:
        svc.instruments.get(data.instrument_id)
    except NotFound as exc:
        raise ValidationError(exc.message, code=exc.code, field="instrument_id") from None
    # A retry with the same Idempotency-Key is the same link, with the same (derived) token.
    command_id = command_id_for(principal, idempotency_key(request))
    link_id = uuid.uuid5(command_id, "questionnaire-link")
    now = _now(svc)
    administration_id, goal_ids = await _administration(svc, client_id, data.instrument_id, data.administration_id,
                                                        link_id, now)
    token = ql.token_for(_key(svc), link_id)
    hours = min(svc.runtime.settings.questionnaire_link_hours, ql.MAX_LINK_HOURS)
    command = ql.IssueLink(command_id=command_id, actor=principal.actor, at=now, tenant_id=principal.tenant_id,
                           link_id=link_id, client_id=client_id, instrument_id=data.instrument_id,
                           administration_id=administration_id, goal_ids=goal_ids, token_hash=ql.token_hash(token),
                           expires_at=now + timedelta(hours=hours))
    outcome = await svc.handler.handle_on(
        command, stream_id=ql.link_stream(link_id), subject_id=client_id, initial=ql.initial_link_state(link_id),
        evolve=ql.evolve_link, reads=lambda: svc.handler.load_client(client_id),
        decide=lambda link, client: ql.decide_issue(command, link, client))
    issued = next(e.payload for e in outcome.events if isinstance(e.payload, ql.QuestionnaireLinkIssued))
    public = svc.runtime.settings.public_url.rstrip("/")
    return Response(LinkIssuedView(link_id=link_id, url=f"{public}/q/{token}", token=token,
                                   instrument_id=issued.instrument_id, administration_id=issued.administration_id,
                                   expires_at=issued.expires_at),
                    status_code=201, headers={"Cache-Control": "no-store"})


LINK_ROUTES = [open_link, answer_link, create_link]
