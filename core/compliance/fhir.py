"""A client's record as an HL7 FHIR Bundle (R5; R4B on request), and our code check.

``build_bundle`` is pure: it takes the client's recorded events (the client stream and
their goal streams, decoded by the store, personal fields decrypted or erased), the plan
and progress documents (plain dicts from ``core/projections``; only read defensively, for
``achievementStatus`` and a plan title) and the instrument definitions, and returns a
``collection`` Bundle holding:

* Patient — pseudonymous: its only identifier is the client id (no name, no contact);
* Goal — lifecycleStatus (``core.goal.fhir_lifecycle_status``), achievementStatus,
  description, target (measure/detail/due), who expressed it (R5 ``source``, R4B
  ``expressedBy``), each party's acceptance in the ``goal-acceptance`` extension;
* CarePlan — the care episode, linking the goals;
* Consent — one per scope, the last grant or withdrawal deciding its status;
* Questionnaire (one per instrument version used) and QuestionnaireResponse (one per
  measurement), Observation for every score, coded with the instrument's LOINC codings
  (PHQ-9 total 44261-6, GAD-7 total 70274-6);
* Provenance — one per decision (goal, consent and measurement events): who, when, what;
* Practitioner / RelatedPerson — minimal (an identifier) so every reference resolves.

``fhir.resources`` checks structure but not code values (docs/clinical-sources.md §2): ``check_codes``
is our check of every code we emit against its value set (plus LOINC check digits and,
given the instruments, that every LOINC code comes from an instrument definition), and
``validate_resources`` runs the ``fhir.resources`` models. ``check_bundle`` runs both and
checks that every reference resolves.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from alliance.core.client import (
    ClientDischarged,
    ClientEnrolled,
    ClientState,
    MeasurementEnteredInError,
    MeasurementRecorded,
    client_stream,
    evolve_client,
    informant_of,
    initial_client_state,
)
from alliance.core.consent import ConsentGranted, ConsentWithdrawn
from alliance.core.events.envelope import RecordedEvent
from alliance.core.goal import (
    GoalDeclined,
    GoalProposed,
    GoalState,
    GoalStatus,
    evolve_goal,
    fhir_lifecycle_status,
    initial_goal_state,
)
from alliance.core.identity import Role

FhirVersion = Literal["R5", "R4B"]

DEFAULT_BASE_URL = "https://alliance.invalid/fhir"
CLIENT_ID_SYSTEM = "urn:alliance:client-id"
STAFF_ID_SYSTEM = "urn:alliance:staff-id"
GOAL_ID_SYSTEM = "urn:alliance:goal-id"
CONSENT_SCOPE_SYSTEM = "urn:alliance:consent-scope"
ACCEPTANCE_URL = "http://hl7.org/fhir/StructureDefinition/goal-acceptance"
LOINC = "http://loinc.org"
GOAL_ACHIEVEMENT = "http://terminology.hl7.org/CodeSystem/goal-achievement"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
CONSENT_SCOPE_R4 = "http://terminology.hl7.org/CodeSystem/consentscope"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_NAMESPACE = UUID("0d6b8f0e-5a51-4c1e-9b7e-3f3f1d7e8a90")

#: Value sets of the codes we emit (FHIR R5 and R4B, where they differ).
VALUE_SETS: dict[str, frozenset[str]] = {
    "Bundle.type": frozenset({"document", "message", "transaction", "transaction-response", "batch",
                              "batch-response", "history", "searchset", "collection", "subscription-notification"}),
    "Goal.lifecycleStatus": frozenset({"proposed", "planned", "accepted", "active", "on-hold", "completed",
                                       "cancelled", "entered-in-error", "rejected"}),
    "Goal.achievementStatus": frozenset({"in-progress", "improving", "worsening", "no-change", "achieved",
                                         "sustaining", "not-achieved", "no-progress", "not-attainable"}),
    "goal-acceptance.status": frozenset({"agree", "disagree", "pending"}),
    "CarePlan.status": frozenset({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error",
                                  "unknown"}),
    "CarePlan.intent": frozenset({"proposal", "plan", "order", "option", "directive"}),
    "Consent.status:R5": frozenset({"draft", "active", "inactive", "not-done", "entered-in-error", "unknown"}),
    "Consent.status:R4B": frozenset({"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}),
    "Consent.decision": frozenset({"deny", "permit"}),
    "Consent.scope:R4B": frozenset({"adr", "research", "patient-privacy", "treatment"}),
    "Consent.policyRule:R4B": frozenset({"OPTIN", "OPTOUT", "OPTINR", "OPTOUTE"}),
    "consent-scope": frozenset({"goal_setting", "measurement", "care_team_sharing"}),
    "Questionnaire.status": frozenset({"draft", "active", "retired", "unknown"}),
    "Questionnaire.item.type:R5": frozenset({"group", "display", "boolean", "decimal", "integer", "date",
                                             "dateTime", "time", "string", "text", "url", "coding",
                                             "attachment", "reference", "quantity"}),
    "Questionnaire.item.type:R4B": frozenset({"group", "display", "boolean", "decimal", "integer", "date",
                                              "dateTime", "time", "string", "text", "url", "choice",
                                              "open-choice", "attachment", "reference", "quantity"}),
    "QuestionnaireResponse.status": frozenset({"in-progress", "completed", "amended", "entered-in-error",
                                               "stopped"}),
    "Observation.status": frozenset({"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                     "entered-in-error", "unknown"}),
    "Observation.category": frozenset({"social-history", "vital-signs", "imaging", "laboratory", "procedure",
                                       "survey", "exam", "therapy", "activity"}),
    "Provenance.activity": frozenset({"ABORT", "ACTIVATE", "APPEND", "CANCEL", "COMPLETE", "CREATE", "DELETE",
                                      "EXECUTE", "HOLD", "JOIN", "LINK", "MERGE", "NULLIFY", "OBSOLETE",
                                      "RELEASE", "REPLACE", "RESUME", "SUSPEND", "UNLINK", "UPDATE"}),
    "Provenance.agent.type": frozenset({"enterer", "performer", "author", "verifier", "legal", "attester",
                                        "informant", "custodian", "assembler", "composer"}),
}

_STAFF_ROLES = {Role.CLINICIAN, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN}

#: Event type → (v3-DataOperation code, Provenance participant type).
_DECISIONS: dict[str, tuple[str, str]] = {
    "goal.proposed": ("CREATE", "author"), "goal.restated": ("UPDATE", "author"),
    "goal.reflected": ("UPDATE", "author"), "goal.revised": ("UPDATE", "author"),
    "goal.agreed": ("UPDATE", "attester"), "goal.activated": ("ACTIVATE", "author"),
    "goal.declined": ("ABORT", "author"), "goal.withdrawn": ("ABORT", "author"),
    "goal.change_proposed": ("UPDATE", "author"), "goal.change_accepted": ("UPDATE", "attester"),
    "goal.change_declined": ("ABORT", "author"), "goal.change_withdrawn": ("ABORT", "author"),
    "goal.paused": ("SUSPEND", "author"), "goal.resumed": ("RESUME", "author"),
    "goal.closed": ("COMPLETE", "author"), "goal.entered_in_error": ("NULLIFY", "author"),
    "goal.review_entered_in_error": ("NULLIFY", "author"),
    "consent.granted": ("CREATE", "attester"), "consent.withdrawn": ("ABORT", "attester"),
    "measurement.recorded": ("CREATE", "author"), "measurement.entered_in_error": ("NULLIFY", "author"),
}


# --- helpers -----------------------------------------------------------------------------
def _id(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, ":".join(str(p) for p in parts)))


def _fhir_id(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9\-.]", "-", text)[:64]
    return cleaned or _id(text)


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ref(kind: str, rid: object, display: str | None = None) -> dict[str, str]:
    ref = {"reference": f"{kind}/{rid}"}
    if display:
        ref["display"] = display
    return ref


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _definitions(instruments: Any) -> dict[tuple[str, str], Any]:
    if instruments is None:
        return {}
    if hasattr(instruments, "definitions") and callable(instruments.definitions):
        instruments = instruments.definitions()
    if isinstance(instruments, Mapping):
        instruments = instruments.values()
    return {(d.id, d.version): d for d in instruments}


def _codings_for(definition: Any, target: str) -> list[Any]:
    return [c for c in getattr(definition, "codings", ()) if c.target == target]


def _find_goal_doc(document: Mapping[str, Any] | None, goal_id: UUID) -> Mapping[str, Any] | None:
    """The entry for ``goal_id`` in a plan/progress document, whatever its exact shape."""
    if not isinstance(document, Mapping):
        return None
    goals = document.get("goals")
    candidates: Iterable[Any] = ()
    if isinstance(goals, Mapping):
        if str(goal_id) in goals:
            return goals[str(goal_id)] if isinstance(goals[str(goal_id)], Mapping) else None
        candidates = goals.values()
    elif isinstance(goals, list):
        candidates = goals
    for item in candidates:
        if isinstance(item, Mapping) and str(item.get("goal_id", item.get("id"))) == str(goal_id):
            return item
    return None


def _achievement(state: GoalState, progress: Mapping[str, Any] | None) -> str | None:
    doc = _find_goal_doc(progress, state.goal_id)
    if doc is not None:
        for key in ("achievement_status", "achievementStatus", "fhir_achievement_status"):
            value = doc.get(key)
            if isinstance(value, str) and value in VALUE_SETS["Goal.achievementStatus"]:
                return value
    match state.status:
        case GoalStatus.ACHIEVED:
            return "achieved"
        case GoalStatus.NOT_ACHIEVED:
            return "not-achieved"
        case GoalStatus.MAINTENANCE:
            return "sustaining"
        case GoalStatus.ACTIVE | GoalStatus.PAUSED:
            return "in-progress"
        case _:
            return None


class _People:
    """Who appears in the record, so each reference resolves to a (minimal) resource."""

    def __init__(self, client_id: UUID) -> None:
        self.client_id = client_id
        self.practitioners: set[UUID] = set()
        self.related: set[UUID] = set()

    def ref(self, who: UUID, role: Role | str) -> dict[str, str]:
        role = Role(role)
        if role == Role.CLIENT or who == self.client_id:
            return _ref("Patient", self.client_id)
        if role == Role.PROXY:
            self.related.add(who)
            return _ref("RelatedPerson", who)
        if role == Role.SYSTEM:
            return {"display": "Alliance service"}
        self.practitioners.add(who)
        return _ref("Practitioner", who)


# --- the bundle --------------------------------------------------------------------------
def build_bundle(client_id: UUID, events: Sequence[RecordedEvent], *, plan: Mapping[str, Any] | None = None,
                 progress: Mapping[str, Any] | None = None, instruments: Any = None,
                 fhir_version: FhirVersion = "R5", base_url: str = DEFAULT_BASE_URL,
                 now: datetime | None = None) -> dict[str, Any]:
    """The client's FHIR Bundle (``type: collection``) as a plain JSON dict. Pure.

    ``events``: every recorded event of the client stream and of the client's goal
    streams (others are ignored). ``instruments``: an ``InstrumentRegistry``, or
    definitions (iterable or mapping). ``fhir_version``: "R5" (default) or "R4B".
    """
    if fhir_version not in ("R5", "R4B"):
        raise ValueError(f"unknown FHIR version {fhir_version!r}")
    r5 = fhir_version == "R5"
    definitions = _definitions(instruments)
    people = _People(client_id)
    patient = _ref("Patient", client_id)
    own_stream = client_stream(client_id)

    client: ClientState = initial_client_state(client_id)
    goals: dict[str, GoalState] = {}
    goal_events: dict[str, list[RecordedEvent]] = {}
    client_events: list[RecordedEvent] = []
    for event in sorted(events, key=lambda e: (e.stream_id, e.version)):
        if event.stream_id == own_stream:
            client = evolve_client(client, event.payload)
            client_events.append(event)
        elif event.stream_id.startswith("goal-") and event.subject_id == client_id:
            if event.stream_id not in goals:
                goals[event.stream_id] = initial_goal_state(UUID(event.stream_id[len("goal-"):]))
            goals[event.stream_id] = evolve_goal(goals[event.stream_id], event.payload)
            goal_events.setdefault(event.stream_id, []).append(event)

    resources: list[dict[str, Any]] = [{
        "resourceType": "Patient", "id": str(client_id),
        "identifier": [{"system": CLIENT_ID_SYSTEM, "value": str(client_id)}],
    }]

    # Goals
    goal_ids: dict[UUID, str] = {}
    for stream_id, state in sorted(goals.items()):
        history = goal_events[stream_id]
        resources.append(_goal(state, history, client, people, patient, progress, definitions, r5))
        goal_ids[state.goal_id] = stream_id

    # CarePlan
    enrolled = next((e for e in client_events if isinstance(e.payload, ClientEnrolled)), None)
    discharged = next((e for e in reversed(client_events) if isinstance(e.payload, ClientDischarged)), None)
    plan_id = str(client.episode_id) if client.episode_id else _id(client_id, "careplan")
    title = plan.get("title") if isinstance(plan, Mapping) and isinstance(plan.get("title"), str) else None
    care_plan: dict[str, Any] = {
        "resourceType": "CarePlan", "id": plan_id,
        "status": "completed" if client.discharged else "active" if client.enrolled else "draft",
        "intent": "plan", "subject": patient, "title": title or "Collaborative goal plan",
        "goal": [_ref("Goal", g) for g in goal_ids],
    }
    if enrolled is not None:
        care_plan["created"] = _instant(enrolled.recorded_at)
        period = {"start": _instant(enrolled.occurred_at)}
        if discharged is not None and client.discharged:
            period["end"] = _instant(discharged.occurred_at)
        care_plan["period"] = period
    team = sorted(client.care_team_roles)
    if team:
        care_plan["contributor"] = [people.ref(m, client.care_team_roles[m]) for m in team]
    resources.append(care_plan)

    # Consents: the last decision per scope
    latest: dict[str, RecordedEvent] = {}
    for event in client_events:
        if isinstance(event.payload, ConsentGranted | ConsentWithdrawn):
            latest[str(event.payload.scope)] = event
    consent_ids: dict[str, str] = {}
    for scope, event in sorted(latest.items()):
        consent_ids[scope] = _id(client_id, "consent", scope)
        resources.append(_consent(consent_ids[scope], scope, event, people, patient, r5))

    # Measurements: Questionnaire, QuestionnaireResponse, Observation
    in_error = {e.payload.measurement_id for e in client_events if isinstance(e.payload, MeasurementEnteredInError)}
    questionnaires: dict[tuple[str, str], str] = {}
    measurement_refs: dict[UUID, list[dict[str, str]]] = {}
    for event in client_events:
        payload = event.payload
        if not isinstance(payload, MeasurementRecorded):
            continue
        key = (payload.instrument_id, payload.instrument_version)
        definition = definitions.get(key)
        rid = _fhir_id(f"{payload.instrument_id}-{payload.instrument_version}")
        q_url = f"{base_url}/Questionnaire/{rid}"
        if key not in questionnaires:
            questionnaires[key] = rid
            resources.append(_questionnaire(rid, q_url, payload, definition, base_url, r5))
        error = payload.measurement_id in in_error
        author = people.ref(event.actor_id, event.actor_role)
        response_id = str(payload.measurement_id)
        resources.append(_response(response_id, q_url, payload, definition, event, author, patient,
                                   base_url, error))
        refs = [_ref("QuestionnaireResponse", response_id)]
        for score_id, value in sorted(payload.scores.items()):
            obs_id = _id(payload.measurement_id, "score", score_id)
            resources.append(_observation(obs_id, score_id, value, payload, definition, event, author,
                                          patient, response_id, error, [g for g in payload.goal_ids
                                                                        if g in goal_ids]))
            refs.append(_ref("Observation", obs_id))
        measurement_refs[payload.measurement_id] = refs

    # Provenance: who decided what
    for stream_id, history in sorted(goal_events.items()):
        goal_id = goals[stream_id].goal_id
        for event in history:
            resources.append(_provenance(event, [_ref("Goal", goal_id)], people, patient, r5))
    for event in client_events:
        payload = event.payload
        if isinstance(payload, ConsentGranted | ConsentWithdrawn):
            target = [_ref("Consent", consent_ids[str(payload.scope)])]
        elif isinstance(payload, MeasurementRecorded | MeasurementEnteredInError):
            target = measurement_refs.get(payload.measurement_id, [])
        else:
            continue
        if target:
            resources.append(_provenance(event, target, people, patient, r5))

    for who in sorted(people.practitioners):
        resources.append({"resourceType": "Practitioner", "id": str(who),
                          "identifier": [{"system": STAFF_ID_SYSTEM, "value": str(who)}]})
    for who in sorted(people.related):
        resources.append({"resourceType": "RelatedPerson", "id": str(who), "patient": patient,
                          "identifier": [{"system": STAFF_ID_SYSTEM.replace("staff", "proxy"), "value": str(who)}]})

    return {
        "resourceType": "Bundle", "id": _id(client_id, "bundle", (now or datetime.now(UTC)).isoformat()),
        "meta": {"tag": [{"system": "urn:alliance:fhir-version", "code": fhir_version}]},
        "type": "collection", "timestamp": _instant(now or datetime.now(UTC)),
        "entry": [{"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }


def _goal(state: GoalState, history: list[RecordedEvent], client: ClientState, people: _People,
          patient: dict[str, str], progress: Mapping[str, Any] | None, definitions: dict[tuple[str, str], Any],
          r5: bool) -> dict[str, Any]:
    proposed = next((e for e in history if isinstance(e.payload, GoalProposed)), None)
    # The description is the statement both parties agreed (or, before there is one, the
    # client's words); the client's own words stay beside it, as theirs, in a note.
    description = state.statement or state.client_words or "(no description)"
    goal: dict[str, Any] = {
        "resourceType": "Goal", "id": str(state.goal_id),
        "identifier": [{"system": GOAL_ID_SYSTEM, "value": str(state.goal_id)}],
        "lifecycleStatus": fhir_lifecycle_status(state),
        "description": {"text": description}, "subject": patient,
        "statusDate": history[-1].occurred_at.date().isoformat(),
    }
    if state.client_words and state.client_words != description:
        goal["note"] = [{"authorReference": patient, "text": state.client_words}]
    if proposed is not None:
        payload = proposed.payload
        assert isinstance(payload, GoalProposed)
        author = patient if payload.author_party == "client" else people.ref(payload.by, payload.by_role)
        goal["source" if r5 else "expressedBy"] = author
        goal["startDate"] = proposed.occurred_at.date().isoformat()
    if (achievement := _achievement(state, progress)) is not None:
        goal["achievementStatus"] = {"coding": [_coding(GOAL_ACHIEVEMENT, achievement)]}
    target_text = state.facets.get("target") or None
    measure_text = state.facets.get("measure") or None
    targets: list[dict[str, Any]] = []
    # The goal's own target ("7 hours a night") is measured its own way ("sleep diary"): that
    # pair is one target. An attached instrument is another, with no detail: the free-text
    # target never applies to the instrument's score (a PHQ-9 total is not "7 hours a night").
    if target_text or measure_text:
        own: dict[str, Any] = {"measure": {"text": measure_text or "the goal's own target"}}
        if target_text:
            own["detailString"] = target_text
        targets.append(own)
    for instrument_id in sorted(state.measures):
        found = [d for (i, _), d in definitions.items() if i == instrument_id]
        codings = _codings_for(found[-1], "total") if found else []
        measure: dict[str, Any] = {"text": found[-1].title if found else instrument_id}
        if codings:
            measure["coding"] = [_coding(c.system, c.code, c.display or None) for c in codings]
        targets.append({"measure": measure})
    if state.due_date and not targets:
        targets.append({"measure": {"text": "the goal's own target"}})
    if state.due_date:
        for target in targets:
            target["dueDate"] = state.due_date.isoformat()
    if targets:
        goal["target"] = targets
    declined_by = {e.payload.party for e in history if isinstance(e.payload, GoalDeclined)}

    def status(agreed: bool, party: str) -> str:
        if agreed:
            return "agree"
        if party in declined_by:
            return "disagree"
        return "pending"

    client_agreed = state.version > 0 and state.client_agreed_version == state.version
    clinician_agreed = state.version > 0 and state.clinician_agreed_version == state.version
    clinician = state.clinician_agreed_by or client.primary_clinician \
        or (state.author_id if state.author_party == "clinician" else None)
    # Both parties, always: a clinician not yet named is shown as such, never left out.
    clinician_ref = people.ref(clinician, Role.CLINICIAN) if clinician is not None \
        else {"display": "clinician (not yet named)"}
    acceptance = [(patient, status(client_agreed, "client")),
                  (clinician_ref, status(clinician_agreed, "clinician"))]
    goal["extension"] = [{"url": ACCEPTANCE_URL, "extension": [
        {"url": "individual", "valueReference": who}, {"url": "status", "valueCode": code}]}
        for who, code in acceptance]
    return goal


def _consent(rid: str, scope: str, event: RecordedEvent, people: _People, patient: dict[str, str],
             r5: bool) -> dict[str, Any]:
    payload = event.payload
    assert isinstance(payload, ConsentGranted | ConsentWithdrawn)
    granted = isinstance(payload, ConsentGranted)
    grantor = patient if payload.by_role == Role.CLIENT else people.ref(payload.by, payload.by_role)
    category = [{"coding": [_coding(LOINC, "59284-0", "Patient Consent")]},
                {"coding": [_coding(CONSENT_SCOPE_SYSTEM, scope)], "text": scope.replace("_", " ")}]
    consent: dict[str, Any] = {
        "resourceType": "Consent", "id": rid, "status": "active" if granted else "inactive",
        "category": category,
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{event.event_id}"}],
    }
    verification = None
    if payload.attested_by is not None:
        when = payload.attested_at or event.occurred_at
        if r5:
            verification = {"verified": True, "verifiedBy": people.ref(payload.attested_by, Role.CLINICIAN),
                            "verifiedWith": grantor, "verificationDate": [_instant(when)]}
        else:  # R4B names only whom it was verified with
            verification = {"verified": True, "verifiedWith": grantor, "verificationDate": _instant(when)}
    if r5:
        consent.update(subject=patient, date=payload.effective_at.date().isoformat(), grantor=[grantor],
                       decision="permit", period={"start": _instant(payload.effective_at)})
        if not granted:
            consent["period"] = {"end": _instant(payload.effective_at)}
    else:
        consent.update(patient=patient, dateTime=_instant(payload.effective_at), performer=[grantor],
                       scope={"coding": [_coding(CONSENT_SCOPE_R4, "patient-privacy" if scope == "care_team_sharing"
                                                 else "treatment")]},
                       policyRule={"coding": [_coding(ACT_CODE, "OPTIN")]},
                       provision={"type": "permit", "period": {"start": _instant(payload.effective_at)}
                                  if granted else {"end": _instant(payload.effective_at)}})
    if verification is not None:
        consent["verification"] = [verification]
    return consent


def _answer_coding(option: Any, answers_system: str) -> dict[str, str]:
    if option.code:
        return _coding(LOINC, option.code, option.label)
    value = option.value
    code = str(int(value)) if float(value).is_integer() else str(value)
    return _coding(answers_system, code, option.label)


def _questionnaire(rid: str, url: str, payload: MeasurementRecorded, definition: Any, base_url: str,
                   r5: bool) -> dict[str, Any]:
    answers_system = f"{base_url}/CodeSystem/{rid}-answers"
    name = re.sub(r"[^A-Za-z0-9_]", "", "".join(w[:1].upper() + w[1:]
                                                   for w in re.split(r"[^A-Za-z0-9]+", payload.instrument_id)))
    questionnaire: dict[str, Any] = {
        "resourceType": "Questionnaire", "id": rid, "url": url, "version": payload.instrument_version,
        "name": (name if name[:1].isalpha() else f"Instrument{name}")[:250] or "Instrument",
        "title": definition.title if definition else payload.instrument_id, "status": "active",
    }
    if definition is None:
        return questionnaire
    panel = _codings_for(definition, "panel")
    if panel:
        questionnaire["code"] = [_coding(c.system, c.code, c.display or None) for c in panel]
    items = []
    for item in definition.items:
        kind = type(item.response).__name__
        entry: dict[str, Any] = {"linkId": item.id, "text": item.prompt, "required": item.required}
        # Item-level codes (LOINC 44250-9 … for PHQ-9) sit on the Questionnaire's items, which a
        # QuestionnaireResponse item names by linkId (R4/R5 QuestionnaireResponse.item has no code).
        if item_codes := _codings_for(definition, item.id):
            entry["code"] = [_coding(c.system, c.code, c.display or None) for c in item_codes]
        if kind == "ChoiceResponse":
            entry["type"] = "coding" if r5 else "choice"
            entry["answerOption"] = [{"valueCoding": _answer_coding(o, answers_system)}
                                     for o in item.response.options]
            if r5:
                entry["answerConstraint"] = "optionsOnly"
        else:
            entry["type"] = {"IntegerResponse": "integer", "NumberResponse": "decimal",
                             "YesNoResponse": "boolean"}.get(kind, "text")
        items.append(entry)
    questionnaire["item"] = items
    return questionnaire


def _answer(value: Any, item: Any, answers_system: str) -> dict[str, Any]:
    response: Any = getattr(item, "response", None)
    if type(response).__name__ == "ChoiceResponse":
        for option in response.options:
            if option.value == value:
                return {"valueCoding": _answer_coding(option, answers_system)}
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()
                                  and type(response).__name__ == "IntegerResponse"):
        return {"valueInteger": int(value)}
    return {"valueDecimal": float(value)}


def _response(rid: str, url: str, payload: MeasurementRecorded, definition: Any, event: RecordedEvent,
              author: dict[str, str], patient: dict[str, str], base_url: str, error: bool) -> dict[str, Any]:
    items_by_id = {i.id: i for i in definition.items} if definition else {}
    answers_system = f"{base_url}/CodeSystem/{_fhir_id(f'{payload.instrument_id}-{payload.instrument_version}')}" \
                     "-answers"
    items = []
    # the definition's order first; answers it does not know are kept, never dropped
    order = [*items_by_id, *sorted({*payload.answers, *payload.free_text} - set(items_by_id))]
    for item_id in order:
        if item_id in payload.answers:
            answer = _answer(payload.answers[item_id], items_by_id.get(item_id), answers_system)
        elif item_id in payload.free_text:
            answer = {"valueString": payload.free_text[item_id]}
        else:
            continue
        entry: dict[str, Any] = {"linkId": item_id, "answer": [answer]}
        if item_id in items_by_id:
            entry["text"] = items_by_id[item_id].prompt
        items.append(entry)
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse", "id": rid,
        "questionnaire": f"{url}|{payload.instrument_version}",
        "status": "entered-in-error" if error else "completed", "subject": patient,
        "authored": _instant(payload.observed_at), "author": author,
    }
    if informant_of(payload.reported_by, event.actor_role) == "self":
        response["source"] = patient
    if items:
        response["item"] = items
    return response


def _observation(rid: str, score_id: str, value: float, payload: MeasurementRecorded, definition: Any,
                 event: RecordedEvent, author: dict[str, str], patient: dict[str, str], response_id: str,
                 error: bool, goal_ids: list[UUID]) -> dict[str, Any]:
    codings = _codings_for(definition, score_id) if definition else []
    title = definition.title if definition else payload.instrument_id
    code: dict[str, Any] = {"text": f"{title} — {score_id}"}
    if codings:
        code["coding"] = [_coding(c.system, c.code, c.display or None) for c in codings]
    observation: dict[str, Any] = {
        "resourceType": "Observation", "id": rid, "status": "entered-in-error" if error else "final",
        "category": [{"coding": [_coding(OBSERVATION_CATEGORY, "survey", "Survey")]}],
        "code": code, "subject": patient, "effectiveDateTime": _instant(payload.observed_at),
        "issued": _instant(event.recorded_at), "performer": [author],
        "derivedFrom": [_ref("QuestionnaireResponse", response_id)],
    }
    if float(value).is_integer():
        observation["valueInteger"] = int(value)
    else:
        observation["valueQuantity"] = {"value": value}
    if payload.band and score_id == "total":
        observation["interpretation"] = [{"text": payload.band}]
    if goal_ids:
        observation["focus"] = [_ref("Goal", g) for g in goal_ids]
    return observation


def _provenance(event: RecordedEvent, target: list[dict[str, str]], people: _People, patient: dict[str, str],
                r5: bool) -> dict[str, Any]:
    operation, participant = _DECISIONS.get(event.type, ("UPDATE", "author"))
    agent: dict[str, Any] = {"type": {"coding": [_coding(PARTICIPANT_TYPE, participant)]},
                             "who": people.ref(event.actor_id, event.actor_role)}
    if event.actor_role == Role.PROXY or getattr(event.payload, "on_behalf", False):
        agent["onBehalfOf"] = patient
    provenance: dict[str, Any] = {
        "resourceType": "Provenance", "id": str(event.event_id), "target": target,
        "occurredDateTime": _instant(event.occurred_at), "recorded": _instant(event.recorded_at),
        "activity": {"coding": [_coding(DATA_OPERATION, operation)], "text": event.type},
        "agent": [agent],
    }
    if r5:
        provenance["patient"] = patient
    return provenance


# --- checks ------------------------------------------------------------------------------
def loinc_check_digit_ok(code: str) -> bool:
    """Whether a LOINC code (``44261-6``) has a valid mod-10 check digit.

    Answer and part codes (``LA6568-5``, ``LP…``, ``LL…``) are checked for their form only:
    their check digit is not computed the same way.
    """
    if re.fullmatch(r"L[APL]\d{1,7}-\d", code):
        return True
    match = re.fullmatch(r"()(\d{1,7})-(\d)", code)
    if match is None:
        return False
    digits = match.group(2)
    from_right = digits[::-1]
    odd = "".join(from_right[0::2])  # positions 1, 3, 5… counted from the right
    even = "".join(from_right[1::2])
    doubled = str(int(odd) * 2) if odd else ""
    total = sum(int(d) for d in even + doubled)
    return (10 - total % 10) % 10 == int(match.group(3))


def _resources(bundle: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if isinstance(resource, dict):
            yield resource


def _walk_codings(value: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(value, Mapping):
        if "system" in value and "code" in value:
            yield path, value
        for key, inner in value.items():
            yield from _walk_codings(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _walk_codings(inner, f"{path}[{index}]")


def _bundle_version(bundle: Mapping[str, Any]) -> FhirVersion:
    for tag in (bundle.get("meta") or {}).get("tag") or []:
        if tag.get("system") == "urn:alliance:fhir-version" and tag.get("code") in ("R5", "R4B"):
            return tag["code"]  # type: ignore[no-any-return]
    return "R5"


def check_codes(bundle: Mapping[str, Any], *, instruments: Any = None,
                fhir_version: FhirVersion | None = None) -> list[str]:
    """Every code we emit checked against its value set; one sentence per problem, naming
    the resource and element (empty list: all good). ``fhir.resources`` does not do this.

    Also: LOINC check digits everywhere, LOINC codes on Observations and Questionnaires
    taken from the instrument definitions (when ``instruments`` are given), the
    goal-acceptance extension's shape, and a pseudonymous Patient (identifier only).
    """
    version = fhir_version or _bundle_version(bundle)
    problems: list[str] = []
    known_loinc = {c.code for d in _definitions(instruments).values() for c in d.codings
                   if c.system == LOINC} if instruments is not None else None

    def need(value: Any, value_set: str, where: str) -> None:
        if value not in VALUE_SETS[value_set]:
            problems.append(f"{where}: {value!r} is not in {value_set.split(':')[0]}")

    def coded(concept: Any, system: str, value_set: str, where: str, required: bool = True) -> None:
        codings = [c for c in (concept or {}).get("coding") or [] if c.get("system") == system]
        if not codings and required:
            problems.append(f"{where}: no {system} coding")
        for c in codings:
            need(c.get("code"), value_set, where)

    need(bundle.get("type"), "Bundle.type", "Bundle.type")
    for r in _resources(bundle):
        kind, rid = r.get("resourceType"), r.get("id")
        at = f"{kind}/{rid}"
        if kind == "Patient":
            extra = sorted(set(r) - {"resourceType", "id", "meta", "identifier"})
            if extra:
                problems.append(f"{at}: a pseudonymous Patient carries {', '.join(extra)}")
        elif kind == "Goal":
            need(r.get("lifecycleStatus"), "Goal.lifecycleStatus", f"{at}.lifecycleStatus")
            if "achievementStatus" in r:
                coded(r["achievementStatus"], GOAL_ACHIEVEMENT, "Goal.achievementStatus", f"{at}.achievementStatus")
            for ext in r.get("extension") or []:
                if ext.get("url") != ACCEPTANCE_URL:
                    continue
                parts = {e.get("url"): e for e in ext.get("extension") or []}
                if "individual" not in parts or "valueReference" not in parts["individual"]:
                    problems.append(f"{at}.extension(goal-acceptance): no individual")
                need((parts.get("status") or {}).get("valueCode"), "goal-acceptance.status",
                     f"{at}.extension(goal-acceptance).status")
            for index, target in enumerate(r.get("target") or []):
                if any(k.startswith("detail") for k in target) and "measure" not in target:
                    problems.append(f"{at}.target[{index}]: a detail needs a measure (gol-1)")
        elif kind == "CarePlan":
            need(r.get("status"), "CarePlan.status", f"{at}.status")
            need(r.get("intent"), "CarePlan.intent", f"{at}.intent")
        elif kind == "Consent":
            need(r.get("status"), f"Consent.status:{version}", f"{at}.status")
            if version == "R5":
                need(r.get("decision"), "Consent.decision", f"{at}.decision")
            else:
                coded(r.get("scope"), CONSENT_SCOPE_R4, "Consent.scope:R4B", f"{at}.scope")
                coded(r.get("policyRule"), ACT_CODE, "Consent.policyRule:R4B", f"{at}.policyRule")
                need((r.get("provision") or {}).get("type"), "Consent.decision", f"{at}.provision.type")
            for index, category in enumerate(r.get("category") or []):
                coded(category, CONSENT_SCOPE_SYSTEM, "consent-scope", f"{at}.category[{index}]", required=False)
        elif kind == "Questionnaire":
            need(r.get("status"), "Questionnaire.status", f"{at}.status")
            for item in r.get("item") or []:
                need(item.get("type"), f"Questionnaire.item.type:{version}", f"{at}.item({item.get('linkId')}).type")
            for c in (r.get("code") or []):
                if c.get("system") == LOINC and known_loinc is not None and c.get("code") not in known_loinc:
                    problems.append(f"{at}.code: LOINC {c.get('code')} is not from an instrument definition")
        elif kind == "QuestionnaireResponse":
            need(r.get("status"), "QuestionnaireResponse.status", f"{at}.status")
        elif kind == "Observation":
            need(r.get("status"), "Observation.status", f"{at}.status")
            for index, category in enumerate(r.get("category") or []):
                coded(category, OBSERVATION_CATEGORY, "Observation.category", f"{at}.category[{index}]")
            for c in (r.get("code") or {}).get("coding") or []:
                if c.get("system") == LOINC and known_loinc is not None and c.get("code") not in known_loinc:
                    problems.append(f"{at}.code: LOINC {c.get('code')} is not from an instrument definition")
        elif kind == "Provenance":
            coded(r.get("activity"), DATA_OPERATION, "Provenance.activity", f"{at}.activity")
            for index, agent in enumerate(r.get("agent") or []):
                coded(agent.get("type"), PARTICIPANT_TYPE, "Provenance.agent.type", f"{at}.agent[{index}].type")
        for path, coding in _walk_codings(r, at):
            if coding.get("system") == LOINC and not loinc_check_digit_ok(str(coding.get("code"))):
                problems.append(f"{path}: {coding.get('code')!r} is not a valid LOINC code (check digit)")
    return problems


def check_references(bundle: Mapping[str, Any]) -> list[str]:
    """Every ``Type/id`` reference names a resource in the bundle."""
    present = {f"{r.get('resourceType')}/{r.get('id')}" for r in _resources(bundle)}
    problems: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, Mapping):
            ref = value.get("reference")
            if isinstance(ref, str) and re.fullmatch(r"[A-Za-z]+/[A-Za-z0-9\-.]{1,64}", ref) and ref not in present:
                problems.append(f"{where}: {ref} is not in the bundle")
            for key, inner in value.items():
                walk(inner, f"{where}.{key}")
        elif isinstance(value, list):
            for inner in value:
                walk(inner, where)

    for r in _resources(bundle):
        walk(r, f"{r.get('resourceType')}/{r.get('id')}")
    return problems


def validate_resources(bundle: Mapping[str, Any], *, fhir_version: FhirVersion | None = None) -> list[str]:
    """Structure check with ``fhir.resources`` (R5 or R4B): the bundle and each resource."""
    version = fhir_version or _bundle_version(bundle)
    if version == "R5":
        from fhir.resources import get_fhir_model_class
    else:
        from fhir.resources.R4B import get_fhir_model_class
    problems = []
    for r in [dict(bundle), *_resources(bundle)]:
        try:
            get_fhir_model_class(str(r.get("resourceType"))).model_validate(r)
        except Exception as exc:  # pydantic.ValidationError, KeyError for an unknown type
            problems.append(f"{r.get('resourceType')}/{r.get('id')}: {exc}")
    return problems


def check_bundle(bundle: Mapping[str, Any], *, instruments: Any = None,
                 fhir_version: FhirVersion | None = None) -> list[str]:
    """``validate_resources`` + ``check_codes`` + ``check_references``."""
    return [*validate_resources(bundle, fhir_version=fhir_version),
            *check_codes(bundle, instruments=instruments, fhir_version=fhir_version),
            *check_references(bundle)]
