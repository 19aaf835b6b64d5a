"""A client's records: consents, measurements, feedback, relapse plan, risk, corrections,
and the plan / progress / history views (now, or as of any moment)."""

import enum
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post
from litestar.params import QueryParameter

from alliance.api.access import ReadKind
from alliance.api.auth import Principal
from alliance.api.commands import CommandResult, body_for, build, result_response
from alliance.api.input_limits import MAX_ITEMS, Answers, BoundedBody, Label, limited
from alliance.api.routes.common import readable_client, run_command, visible_client
from alliance.api.routes.goals import _receipts
from alliance.api.schemas import HistoryView, MeasurementResult, PlanView, ProgressView
from alliance.api.state import AppServices, now
from alliance.core import client as c
from alliance.core.clinic import clinic_stream
from alliance.core.consent import ConsentScope
from alliance.core.errors import NotFound, ValidationError
from alliance.core.identity import Role
from alliance.core.projections import asof, queries
from alliance.core.projections.base import Projection
from alliance.core.projections.plain_words import add_plain_words, language_of, languages
from alliance.core.projections.plan import PLAN
from alliance.core.projections.progress import PROGRESS, initial_progress, render_progress


def client_route(path: str, command: type[c.Command], *, operation_id: str, summary: str,
                 generated: tuple[str, ...] = (), tags: tuple[str, ...] = ("clients",),
                 fixed: dict[str, Any] | None = None, exclude: tuple[str, ...] = ()) -> Any:
    """A POST route running one client-stream command."""
    body_type = body_for(command, generated=generated, exclude=(*exclude, *(fixed or {})))

    async def routed(request, client_id, data, principal, svc):  # type: ignore[no-untyped-def]
        async def work(command_id: UUID) -> Response:
            await visible_client(svc, principal, client_id, write=True)
            cmd = build(command, data, principal, command_id, generated=generated, **(fixed or {}))
            outcome = await svc.handler.handle_client(client_id, cmd, just_loaded=True)
            return result_response(cmd, outcome, created={f: getattr(cmd, f) for f in generated},
                                   receipts=await _receipts(svc, outcome))

        return await run_command(request, svc, principal, work)

    routed.__annotations__ = {"request": Request, "client_id": UUID, "data": body_type, "principal": Principal,
                              "svc": AppServices, "return": Response[CommandResult]}
    routed.__name__ = routed.__qualname__ = operation_id
    return post(path, operation_id=operation_id, summary=summary, description=command.__doc__, tags=list(tags),
                status_code=201)(routed)


WithdrawBody = body_for(c.WithdrawConsent, exclude=("scope",))


@post("/clients/{client_id:uuid}/consents/{consent_scope:str}/withdrawal", operation_id="withdrawConsent",
      tags=["consent"], status_code=201,
      summary="Withdraw consent for a scope (stops new actions in it; history stays)")
async def withdraw_consent(request: Request, client_id: UUID, consent_scope: str, data: WithdrawBody,  # type: ignore[valid-type]
                           principal: Principal, svc: AppServices) -> Response[CommandResult]:
    try:
        parsed = ConsentScope(consent_scope)
    except ValueError:
        raise ValidationError(f"unknown consent scope {consent_scope!r}; one of: "
                              + ", ".join(s.value for s in ConsentScope), code="unknown_scope",
                              field="scope") from None

    async def work(command_id: UUID) -> Response:
        await visible_client(svc, principal, client_id)
        cmd = build(c.WithdrawConsent, data, principal, command_id, scope=parsed)
        outcome = await svc.handler.handle_client(client_id, cmd, just_loaded=True)
        return result_response(cmd, outcome, receipts=await _receipts(svc, outcome))

    return await run_command(request, svc, principal, work)


class Informant(enum.StrEnum):
    SELF = "self"
    PROXY = "proxy"
    CLINICIAN = "clinician"


class MeasurementBody(BoundedBody, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Answers only: Alliance scores them with the installed instrument (a body carrying its own
    scores, band or risk items is refused as an unknown field)."""

    instrument_id: Label  # type: ignore[valid-type]
    answers: Answers  # type: ignore[valid-type]
    observed_at: datetime
    #: Whose answers these are: "self" (the client; the default), "proxy" (the default for a proxy)
    #: or "clinician" (staff must say so). It must match the caller.
    reported_by: Informant | None = None
    #: A proxy's relationship to the client (required when a proxy reports).
    relationship: c.ProxyRelationship | None = None
    #: How the answers were given; default: "app" for the client or a proxy, "session" for staff.
    channel: c.Channel | None = None
    #: The instrument version to score with (default: the latest installed).
    instrument_version: Label | None = None  # type: ignore[valid-type]
    goal_ids: limited(tuple[UUID, ...], MAX_ITEMS) = ()  # type: ignore[valid-type]
    measurement_id: UUID | None = None


def _reporter(data: MeasurementBody, principal: Principal) -> c.ReportedBy:
    role = principal.role
    # Staff say "clinician" explicitly: recording a rating in a client's record is a deliberate act.
    informant = str(data.reported_by) if data.reported_by is not None else (
        "proxy" if role is Role.PROXY else "self")
    channel = data.channel or ("app" if role in (Role.CLIENT, Role.PROXY) else "session")
    return c.ReportedBy(informant=informant, relationship=data.relationship,  # type: ignore[arg-type]
                        channel=channel)


@post("/clients/{client_id:uuid}/measurements", operation_id="recordMeasurement", tags=["measurements"],
      status_code=201, summary="Record a measurement: scored by its installed instrument in the domain before "
      "anything is written; a risk answer (or a skipped risk question) raises a risk flag in the same append. "
      "A client or proxy who raises one is answered with the clinic's crisis information; staff get the "
      "clinic's action lines")
async def record_measurement(request: Request, client_id: UUID, data: MeasurementBody, principal: Principal,
                             svc: AppServices) -> Response[MeasurementResult]:
    if data.observed_at.tzinfo is None:
        raise ValidationError("observed_at needs a time-zone offset", code="invalid", field="observed_at")

    async def work(command_id: UUID) -> Response:
        await visible_client(svc, principal, client_id, write=True)
        for goal_id in data.goal_ids:  # a measurement serves this client's own goals only
            goal = await svc.handler.load_goal(goal_id)
            if goal.state.client_id != client_id:
                raise ValidationError("no such goal for this client", code="unknown_goal", field="goal_ids")
        measurement_id = data.measurement_id or UUID(bytes=command_id.bytes)
        cmd = build(c.RecordMeasurement, None, principal, command_id, measurement_id=measurement_id,
                    instrument_id=data.instrument_id, instrument_version=data.instrument_version,
                    answers=dict(data.answers), reported_by=_reporter(data, principal),
                    observed_at=data.observed_at, goal_ids=data.goal_ids)
        outcome = await svc.handler.handle_client(client_id, cmd, just_loaded=True)
        recorded = next((e.payload for e in outcome.events if isinstance(e.payload, c.MeasurementRecorded)), None)
        flag = next((e.payload for e in outcome.events if isinstance(e.payload, c.RiskFlagRaised)), None)
        extra: dict[str, Any] = {}
        if recorded is not None and (recorded.incomplete or recorded.prorated):
            extra["measurement"] = {"incomplete": recorded.incomplete, "unanswered": list(recorded.unanswered),
                                    "prorated": recorded.prorated}
        if flag is not None:
            extra["risk"] = await _risk_answer(svc, principal, flag, recorded, data.goal_ids)
        return result_response(cmd, outcome, created={"measurement_id": measurement_id}, extra=extra or None)

    return await run_command(request, svc, principal, work)


async def _risk_answer(svc: AppServices, principal: Principal, flag: c.RiskFlagRaised,
                       recorded: c.MeasurementRecorded | None, goal_ids: tuple[UUID, ...]) -> dict[str, Any]:
    """What the person who raised a flag is told. The client (or their proxy) gets the clinic's
    crisis information and never the clinician-facing action lines; staff get the action lines."""
    answer: dict[str, Any] = {"flag_id": str(flag.flag_id), "reason": flag.reason}
    if principal.role in (Role.CLIENT, Role.PROXY):
        answer["crisis_information"] = await _crisis_information(svc, principal.tenant_id)
        return answer
    actions = [a for batch in svc.plugins.hook.risk_flag_actions(flag={
        "tenant_id": str(principal.tenant_id),
        "instrument_id": recorded.instrument_id if recorded else None,
        "instrument_version": recorded.instrument_version if recorded else None,
        "item_ids": list(flag.items), "reason": flag.reason,
        "goal_ids": [str(gid) for gid in goal_ids]}) for a in batch]
    return {**answer, "items": list(flag.items), "actions": actions}


# -- views --------------------------------------------------------------------------------------

def _as_of(value: str) -> datetime | str:
    """``?as_of=`` is an ISO 8601 time with an offset (or a checkpoint from an export)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        # a checkpoint "tx.position": both parts must fit the store's bigint columns
        parts = value.split(".", 1)
        if len(parts) == 2 and all(p.isascii() and p.isdigit() and int(p) < 2**63 for p in parts):
            return value
        raise ValidationError("as_of must be an ISO 8601 time with an offset", code="invalid_as_of",
                              field="as_of") from None
    if moment.tzinfo is None:
        raise ValidationError("as_of needs a time-zone offset", code="invalid_as_of", field="as_of")
    try:  # 0001-01-01T00:00+14:00 is before the first representable UTC moment
        moment.astimezone(UTC)
    except OverflowError:
        raise ValidationError("as_of is out of range", code="invalid_as_of", field="as_of") from None
    return moment


def _json(view: dict[str, Any] | None) -> Response[Any]:
    if view is None:
        raise NotFound("nothing recorded for this client yet", code="view_not_ready")
    return Response(msgspec.json.encode(view), media_type="application/json", headers={"Cache-Control": "no-store"})


AS_OF = QueryParameter(name="as_of", description="ISO 8601 time with offset: the view as it was then")


@get("/clients/{client_id:uuid}/plan", operation_id="getPlan", tags=["views"],
     summary="The client's current plan (or as of a moment)")
async def get_plan(request: Request, client_id: UUID, principal: Principal, svc: AppServices,
                   as_of: Annotated[str | None, AS_OF] = None) -> Response[PlanView]:
    if as_of is not None:
        await readable_client(svc, request, principal, client_id, "plan")
        moment = _as_of(as_of)  # a past view tolerates the standby's bounded lag (core/events/replica.py)
        return _json(await svc.runtime.read_stale(
            lambda store: asof.plan_as_of(store, client_id, moment, tenant_id=principal.tenant_id)))
    fetched = await _readable_view(svc, request, principal, PLAN, client_id, "plan")
    moment = svc.clock.now()
    view = await queries.read_plan(svc.pool, client_id, keys=svc.store.keys, tenant_id=principal.tenant_id,
                                   now=moment, fetched=fetched)
    if view is None:  # not projected yet: answer from the events, never stale
        view = await asof.plan_as_of(svc.store, client_id, moment, tenant_id=principal.tenant_id)
    if view is None:
        return _json(view)
    return _json({**view, "crisis_information": await _crisis_information(svc, principal.tenant_id,
                                                                         clinic_version=fetched.versions[1])})


async def _readable_view(svc: AppServices, request: Request, principal: Principal, view: Projection[Any],
                         client_id: UUID, kind: ReadKind) -> queries.Fetched:
    """The stored view with the client's and the clinic's stream versions, read in one round trip,
    once the caller is authorized from cached states at those versions (refused callers never
    see what was fetched).

    A client reading their own view may be answered from this worker's view cache: what
    authorizes them (enrolled in this clinic, their own id) never changes once true, and the
    change feed drops the entry as soon as the view changes. Staff and proxies always read
    the database: their access depends on care-team membership, consent and proxy grants
    that can be withdrawn, and every staff read is logged.
    """
    own = principal.role is Role.CLIENT and principal.id == client_id
    if own and (held := svc.views.get(view.name, client_id, principal.tenant_id)) is not None:
        await readable_client(svc, request, principal, client_id, kind, known_version=held.versions[0])
        return held
    since = svc.views.generation
    fetched = await queries.fetch_view(svc.pool, view, client_id, principal.tenant_id,
                                       (c.client_stream(client_id), clinic_stream(principal.tenant_id)),
                                       keys=svc.store.keys)
    await readable_client(svc, request, principal, client_id, kind, known_version=fetched.versions[0])
    if own and fetched.rows:
        svc.views.put(view.name, client_id, principal.tenant_id, fetched, fetched_at=since)
    return fetched


async def _crisis_information(svc: AppServices, tenant_id: UUID, *, clinic_version: int | None = None
                              ) -> dict[str, Any]:
    """What the client is shown about getting help urgently: the clinic's own text, or a
    clinic plugin's (``crisis_information`` hook), or a default that is never empty."""
    clinic = await svc.clinic(tenant_id, known_version=clinic_version)
    text = clinic.crisis_text or svc.plugins.hook.crisis_information(tenant_id=str(tenant_id))
    return {"text": text or "If you are in danger or might harm yourself, call your local emergency number now.",
            "contacts": list(clinic.crisis_contacts)}


@get("/clients/{client_id:uuid}/progress", operation_id="getProgress", tags=["views"],
     summary="Progress per goal and measure: series, change, reliable change, band, GAS T-score")
async def get_progress(request: Request, client_id: UUID, principal: Principal, svc: AppServices,
                       as_of: Annotated[str | None, AS_OF] = None,
                       goal_id: Annotated[UUID | None, QueryParameter(name="goal_id")] = None
                       ) -> Response[ProgressView]:
    scope: dict[str, Any] = {"tenant_id": principal.tenant_id, "goal_id": goal_id, "instruments": svc.instruments}
    if as_of is not None:
        await readable_client(svc, request, principal, client_id, "progress")
        moment = _as_of(as_of)
        view = await svc.runtime.read_stale(lambda store: asof.progress_as_of(store, client_id, moment, **scope))
        return _json(_in_words(request, svc, view))
    fetched = await _readable_view(svc, request, principal, PROGRESS, client_id, "progress")
    view = await queries.read_progress(svc.pool, client_id, keys=svc.store.keys, fetched=fetched,
                                       now=svc.clock.now(), **scope)
    if view is None:  # not projected yet: answer from the events
        view = await asof.progress_as_of(svc.store, client_id, now(), **scope)
    if view is None:  # enrolled, nothing measured yet: an empty view, not a 404
        view = render_progress(initial_progress(client_id, principal.tenant_id), instruments=svc.instruments)
    client = await visible_client(svc, principal, client_id, known_version=fetched.versions[0])
    return _json(await _with_open_flag_crisis(svc, principal, client, _in_words(request, svc, view)))


def _in_words(request: Request, svc: AppServices, view: dict[str, Any] | None) -> dict[str, Any] | None:
    """The view's plain words in the reader's language (``Accept-Language``) when an installed
    instrument speaks it; the view comes in English words (``core/projections/plain_words.py``)."""
    language = language_of(request.headers.get("accept-language"), languages(svc.instruments))
    return view if view is None or language == "en" else add_plain_words(view, svc.instruments, language)


@get("/clients/{client_id:uuid}/history", operation_id="getHistory", tags=["views"],
     summary="Decision history: who proposed, revised, agreed and consented to what, when")
async def get_history(request: Request, client_id: UUID, principal: Principal, svc: AppServices,
                      as_of: Annotated[str | None, AS_OF] = None,
                      goal_id: Annotated[UUID | None, QueryParameter(name="goal_id")] = None
                      ) -> Response[HistoryView]:
    client = await readable_client(svc, request, principal, client_id, "history")
    scope: dict[str, Any] = {"tenant_id": principal.tenant_id, "goal_id": goal_id}
    if as_of is not None:
        moment = _as_of(as_of)
        return _json(await svc.runtime.read_stale(lambda store: asof.history_as_of(store, client_id, moment, **scope)))
    view = await queries.read_history(svc.pool, client_id, keys=svc.store.keys, **scope)
    if view is None:  # not projected yet: answer from the events
        view = await asof.history_as_of(svc.store, client_id, now(), **scope)
    return _json(await _with_open_flag_crisis(svc, principal, client, view))


async def _with_open_flag_crisis(svc: AppServices, principal: Principal, client: Any,
                                 view: dict[str, Any] | None) -> dict[str, Any] | None:
    """While a risk flag is open, every current view carries the clinic's crisis information (the plan
    always does), so a client who answered a risk question sees it wherever they look until a clinician
    has acknowledged the flag. As-of views show the past and carry none."""
    if view is None or not client.open_risk_flags:
        return view
    return {**view, "crisis_information": await _crisis_information(svc, principal.tenant_id)}


CLIENT_ROUTES = [
    withdraw_consent, record_measurement, get_plan, get_progress, get_history,
    client_route("/clients/{client_id:uuid}/consents", c.GrantConsent, operation_id="grantConsent",
                 tags=("consent",), summary="Grant consent for a scope (the client, a proxy, or staff "
                 "recording verbal consent with an attestation)"),
    client_route("/clients/{client_id:uuid}/feedback", c.GiveFeedback, operation_id="giveFeedback",
                 generated=("feedback_id",), summary="The client's feedback: what resonates, what feels misaligned"),
    client_route("/clients/{client_id:uuid}/relapse-plan", c.UpdateRelapsePlan, operation_id="updateRelapsePlan",
                 summary="The relapse-prevention plan: warning signs, actions, supports"),
    client_route("/clients/{client_id:uuid}/measures", c.AttachEpisodeMeasure, operation_id="attachEpisodeMeasure",
                 summary="Attach an instrument to the care episode (not to one goal) with a schedule"),
    client_route("/clients/{client_id:uuid}/measures/detachment", c.DetachEpisodeMeasure,
                 operation_id="detachEpisodeMeasure", summary="Detach an instrument from the care episode"),
    client_route("/clients/{client_id:uuid}/risk-flags", c.RaiseRiskFlag, operation_id="raiseRiskFlag",
                 generated=("flag_id",), tags=("risk",), summary="A clinician raises a risk flag"),
    client_route("/clients/{client_id:uuid}/notes", c.RecordNote, operation_id="recordNote",
                 generated=("note_id",), summary="A clinical note"),
    client_route("/clients/{client_id:uuid}/corrections", c.MarkEntryInError, operation_id="markEntryInError",
                 summary="Mark a measurement or note entered-in-error (stays in history, leaves the views)"),
    client_route("/clients/{client_id:uuid}/proxies", c.AuthoriseProxy, operation_id="authoriseProxy",
                 summary="Authorise a proxy (guardian) to act for the client"),
    client_route("/clients/{client_id:uuid}/legal-holds", c.PlaceLegalHold, operation_id="placeLegalHold",
                 generated=("hold_id",), tags=("compliance",), summary="Place a legal hold (blocks erasure)"),
]


def _ack_route() -> Any:
    body_type = body_for(c.AcknowledgeRiskFlag, exclude=("flag_id",))

    async def acknowledge(request, client_id, flag_id, data, principal, svc):  # type: ignore[no-untyped-def]
        async def work(command_id: UUID) -> Response:
            await visible_client(svc, principal, client_id)
            cmd = build(c.AcknowledgeRiskFlag, data, principal, command_id, flag_id=flag_id)
            return result_response(cmd, await svc.handler.handle_client(client_id, cmd, just_loaded=True))

        return await run_command(request, svc, principal, work)

    acknowledge.__annotations__ = {"request": Request, "client_id": UUID, "flag_id": UUID, "data": body_type,
                                   "principal": Principal, "svc": AppServices, "return": Response[CommandResult]}
    return post("/clients/{client_id:uuid}/risk-flags/{flag_id:uuid}/acknowledgement",
                operation_id="acknowledgeRiskFlag", tags=["risk"], status_code=201,
                summary="A care-team clinician acknowledges a risk flag with the action taken")(acknowledge)


def _alert_ack_route() -> Any:
    body_type = body_for(c.AcknowledgeAlert, exclude=("alert_id",))

    async def acknowledge_alert(request, client_id, alert_id, data, principal, svc):  # type: ignore[no-untyped-def]
        async def work(command_id: UUID) -> Response:
            await visible_client(svc, principal, client_id)
            cmd = build(c.AcknowledgeAlert, data, principal, command_id, alert_id=alert_id)
            return result_response(cmd, await svc.handler.handle_client(client_id, cmd, just_loaded=True))

        return await run_command(request, svc, principal, work)

    acknowledge_alert.__annotations__ = {"request": Request, "client_id": UUID, "alert_id": UUID, "data": body_type,
                                         "principal": Principal, "svc": AppServices, "return": Response[CommandResult]}
    return post("/clients/{client_id:uuid}/alerts/{alert_id:uuid}/acknowledgement",
                operation_id="acknowledgeAlert", tags=["risk"], status_code=201,
                summary="A care-team clinician acknowledges a not-on-track alert with the action taken")(
                    acknowledge_alert)


def _interpretation_route() -> Any:
    body_type = body_for(c.InterpretMeasurement, exclude=("measurement_id",))

    async def interpret(request, client_id, measurement_id, data, principal, svc):  # type: ignore[no-untyped-def]
        async def work(command_id: UUID) -> Response:
            await visible_client(svc, principal, client_id)
            cmd = build(c.InterpretMeasurement, data, principal, command_id, measurement_id=measurement_id)
            return result_response(cmd, await svc.handler.handle_client(client_id, cmd, just_loaded=True))

        return await run_command(request, svc, principal, work)

    interpret.__annotations__ = {"request": Request, "client_id": UUID, "measurement_id": UUID, "data": body_type,
                                 "principal": Principal, "svc": AppServices, "return": Response[CommandResult]}
    return post("/clients/{client_id:uuid}/measurements/{measurement_id:uuid}/interpretation",
                operation_id="interpretMeasurement", tags=["measurements"], status_code=201,
                summary="The client's own reading of an entry (\"I had a rough week at work\"), shown beside it in "
                "progress; a later one replaces it there")(interpret)


def _feedback_answer_route() -> Any:
    body_type = body_for(c.AnswerFeedback, generated=("answer_id",), exclude=("feedback_id",))

    async def answer_feedback(request, client_id, feedback_id, data, principal, svc):  # type: ignore[no-untyped-def]
        async def work(command_id: UUID) -> Response:
            await visible_client(svc, principal, client_id)
            cmd = build(c.AnswerFeedback, data, principal, command_id, generated=("answer_id",),
                        feedback_id=feedback_id)
            for event_id in cmd.change_event_ids:  # a change of this client's, in this clinic
                linked = await svc.store.read_event(event_id)
                if linked is None or linked.subject_id != client_id or linked.tenant_id != principal.tenant_id:
                    raise ValidationError("no such event of this client", code="unknown_event",
                                          field="change_event_ids")
            outcome = await svc.handler.handle_client(client_id, cmd, just_loaded=True)
            return result_response(cmd, outcome, created={"answer_id": cmd.answer_id})

        return await run_command(request, svc, principal, work)

    answer_feedback.__annotations__ = {"request": Request, "client_id": UUID, "feedback_id": UUID,
                                       "data": body_type, "principal": Principal, "svc": AppServices,
                                       "return": Response[CommandResult]}
    return post("/clients/{client_id:uuid}/feedback/{feedback_id:uuid}/answers", operation_id="answerFeedback",
                tags=["clients"], status_code=201,
                summary="A care-team clinician answers the client's feedback, linking the events of what changed "
                "because of it (change_event_ids: this client's events)")(answer_feedback)


def _release_hold_route() -> Any:
    async def release(request, client_id, hold_id, principal, svc):  # type: ignore[no-untyped-def]
        async def work(command_id: UUID) -> Response:
            await visible_client(svc, principal, client_id)
            cmd = build(c.ReleaseLegalHold, None, principal, command_id, hold_id=hold_id)
            return result_response(cmd, await svc.handler.handle_client(client_id, cmd, just_loaded=True))

        return await run_command(request, svc, principal, work)

    release.__annotations__ = {"request": Request, "client_id": UUID, "hold_id": UUID, "principal": Principal,
                               "svc": AppServices, "return": Response[CommandResult]}
    return post("/clients/{client_id:uuid}/legal-holds/{hold_id:uuid}/release", operation_id="releaseLegalHold",
                tags=["compliance"], status_code=201, summary="Lift a legal hold")(release)


CLIENT_ROUTES += [_ack_route(), _alert_ack_route(), _interpretation_route(), _feedback_answer_route(),
                  _release_hold_route()]
