from __future__ import annotations

import copy
import json
from datetime import date, timedelta

import pytest

from alliance.core.client import ClientEnrolled, MeasurementEnteredInError
from alliance.core.compliance.fhir import (
    ACCEPTANCE_URL,
    build_bundle,
    check_bundle,
    check_codes,
    check_references,
    validate_resources,
)
from alliance.core.consent import ConsentScope, ConsentWithdrawn
from alliance.core.events.envelope import NewEvent, RecordedEvent
from alliance.core.goal import GoalActivated, GoalAgreed, GoalDeclined, GoalRevised, MeasureAttached
from alliance.core.identity import Role
from alliance.core.schedules import parse_free_text
from alliance.plugins.measures.gad7 import GAD7
from alliance.plugins.measures.phq9 import PHQ9
from tests.compliance.helpers import History

#: The free text measures were attached with, read as a schedule (``goal.measure_attached`` v2).
WEEKLY_SCHEDULE = parse_free_text("weekly", start=date(2026, 1, 5))

INSTRUMENTS = [PHQ9, GAD7]


def recorded(stream_id: str, events: list[NewEvent], start: int = 1) -> list[RecordedEvent]:
    """What the store would hand back (no database: pure tests)."""
    return [RecordedEvent(event_id=e.event_id, stream_id=stream_id, version=n, position=1000 + n, type=e.type,
                          schema_version=1, tenant_id=e.tenant_id, subject_id=e.subject_id, actor_id=e.actor_id,
                          actor_role=e.actor_role, occurred_at=e.occurred_at,
                          recorded_at=e.occurred_at + timedelta(seconds=1), correlation_id=None,
                          causation_id=None, key_id=None, hash_scheme=1, hash=bytes(32), payload=e.payload)
            for n, e in enumerate(events, start=start)]


def history_events(h: History) -> list[RecordedEvent]:
    return recorded(h.client_stream, h.client_events()) + recorded(h.goal_stream, h.goal_events())


def resources(bundle, kind):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


@pytest.mark.parametrize("version", ["R5", "R4B"])
def test_bundle_validates_and_every_code_is_in_its_value_set(version):
    h = History()
    bundle = build_bundle(h.client, history_events(h), instruments=INSTRUMENTS, fhir_version=version,
                          progress={"goals": [{"goal_id": str(h.goal), "achievement_status": "improving"}]})
    assert validate_resources(bundle) == []
    assert check_codes(bundle, instruments=INSTRUMENTS) == []
    assert check_references(bundle) == []
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"Patient", "Goal", "CarePlan", "Consent", "Questionnaire", "QuestionnaireResponse", "Observation",
            "Provenance", "Practitioner"} <= kinds

    [patient] = resources(bundle, "Patient")
    assert set(patient) == {"resourceType", "id", "identifier"} and patient["identifier"][0]["value"] == str(h.client)
    [goal] = resources(bundle, "Goal")
    assert goal["lifecycleStatus"] == "active"
    assert goal["achievementStatus"]["coding"][0]["code"] == "improving"
    assert goal["source" if version == "R5" else "expressedBy"] == {"reference": f"Patient/{h.client}"}
    acceptance = {x["extension"][0]["valueReference"]["reference"]: x["extension"][1]["valueCode"]
                  for x in goal["extension"] if x["url"] == ACCEPTANCE_URL}
    assert acceptance == {f"Patient/{h.client}": "agree", f"Practitioner/{h.clinician}": "agree"}
    own, phq9 = goal["target"]  # the goal's own target, then the attached PHQ-9 with no detail
    assert own["measure"] == {"text": "sleep diary"} and own["detailString"] == "7 hours a night"
    assert phq9["measure"]["coding"][0]["code"] == "44261-6" and "detailString" not in phq9
    assert own["dueDate"] == phq9["dueDate"] == "2025-06-01"
    totals = {o["code"]["coding"][0]["code"]: o["valueInteger"] for o in resources(bundle, "Observation")}
    assert totals == {"44261-6": 13, "70274-6": 7}
    assert {q["status"] for q in resources(bundle, "QuestionnaireResponse")} == {"completed"}
    consents = {c["id"]: c for c in resources(bundle, "Consent")}
    assert len(consents) == 2 and {c["status"] for c in consents.values()} == {"active"}
    agreed = [p for p in resources(bundle, "Provenance") if p["activity"]["text"] == "goal.agreed"]
    assert {p["agent"][0]["who"]["reference"] for p in agreed} == {f"Patient/{h.client}",
                                                                  f"Practitioner/{h.clinician}"}
    assert all(p["agent"][0]["type"]["coding"][0]["code"] == "attester" for p in agreed)
    json.dumps(bundle)  # plain JSON


def test_bundle_of_a_declined_goal_and_withdrawn_consent():
    h = History()
    declined = GoalDeclined(party="clinician", by=h.clinician, by_role=Role.CLINICIAN)
    goal_events = [*h.goal_events()[:1], h.new(declined, h.clinician, Role.CLINICIAN, 9)]
    client_events = [
        *h.client_events(),
        h.new(ConsentWithdrawn(scope=ConsentScope.MEASUREMENT, mode="self", effective_at=h.client_events()[0]
                               .occurred_at, by=h.client, by_role=Role.CLIENT), h.client, Role.CLIENT, 20),
        h.new(MeasurementEnteredInError(measurement_id=h.gad7, reason="wrong form", by=h.clinician,
                                        by_role=Role.CLINICIAN), h.clinician, Role.CLINICIAN, 21)]
    events = recorded(h.client_stream, client_events) + recorded(h.goal_stream, goal_events)
    for version in ("R5", "R4B"):
        bundle = build_bundle(h.client, events, instruments=INSTRUMENTS, fhir_version=version)
        assert check_bundle(bundle, instruments=INSTRUMENTS) == []
        [goal] = resources(bundle, "Goal")
        assert goal["lifecycleStatus"] == "rejected" and "achievementStatus" not in goal
        statuses = sorted(x["extension"][1]["valueCode"] for x in goal["extension"])
        assert statuses == ["disagree", "pending"]
        assert sorted(c["status"] for c in resources(bundle, "Consent")) == ["active", "inactive"]
        assert sorted(o["status"] for o in resources(bundle, "Observation")) == ["entered-in-error", "final"]


def test_wrong_codes_are_caught():
    h = History()
    bundle = build_bundle(h.client, history_events(h), instruments=INSTRUMENTS)
    assert check_bundle(bundle, instruments=INSTRUMENTS) == []

    def broken(change) -> list[str]:
        copy_ = copy.deepcopy(bundle)
        change(copy_)
        return check_codes(copy_, instruments=INSTRUMENTS)

    def first(copy_, kind):
        return resources(copy_, kind)[0]

    [problem] = broken(lambda b: first(b, "Goal").update(lifecycleStatus="done"))
    assert "Goal/" in problem and "lifecycleStatus" in problem and "'done'" in problem
    [problem] = broken(lambda b: first(b, "Goal")["extension"][0]["extension"][1].update(valueCode="maybe"))
    assert "goal-acceptance" in problem
    [problem] = broken(lambda b: first(b, "Goal")["achievementStatus"]["coding"][0].update(code="great"))
    assert "achievementStatus" in problem
    [problem] = broken(lambda b: first(b, "Consent").update(status="proposed"))  # R4B only
    assert "Consent/" in problem
    [problem] = broken(lambda b: first(b, "Observation").update(status="done"))
    assert "Observation/" in problem
    [problem] = broken(lambda b: first(b, "QuestionnaireResponse").update(status="finished"))
    assert "QuestionnaireResponse/" in problem
    [problem] = broken(lambda b: first(b, "Provenance")["agent"][0]["type"]["coding"][0].update(code="boss"))
    assert "Provenance/" in problem and "agent" in problem
    [problem] = broken(lambda b: first(b, "Provenance")["activity"]["coding"][0].update(code="DECIDE"))
    assert "activity" in problem
    [problem] = broken(lambda b: first(b, "Patient").update(name=[{"family": "Doe"}]))
    assert "pseudonymous" in problem
    problems = broken(lambda b: first(b, "Observation")["code"]["coding"][0].update(code="44261-5"))
    assert any("check digit" in p for p in problems) and any("instrument definition" in p for p in problems)
    # structure is the package's job, codes are ours: the package lets a wrong code through
    wrong = copy.deepcopy(bundle)
    first(wrong, "Goal").update(lifecycleStatus="done")
    first(wrong, "Observation").update(status="done")
    assert validate_resources(wrong) == []
    assert len(check_codes(wrong)) == 2
    dangling = copy.deepcopy(bundle)
    first(dangling, "CarePlan")["goal"].append({"reference": "Goal/nowhere"})
    assert check_references(dangling) == [f"CarePlan/{first(bundle, 'CarePlan')['id']}.goal: Goal/nowhere is not "
                                          "in the bundle"]


async def test_bundle_from_stored_events_validates(history, store):
    events = await store.read_stream(history.client_stream) + await store.read_stream(history.goal_stream)
    bundle = build_bundle(history.client, events, instruments=INSTRUMENTS)
    assert check_bundle(bundle, instruments=INSTRUMENTS) == []
    answers = [i for r in resources(bundle, "QuestionnaireResponse") for i in r.get("item", [])
               if i["linkId"] == "note"]
    assert answers == [{"linkId": "note", "answer": [{"valueString": "canary-words-7f3a"}]}]


# --- Goal: the agreed statement, the client's words, each party, targets that belong together
# (observed failure #7 of issue 13, the FHIR Goal part)

def agreed_statement_history() -> tuple[History, list[RecordedEvent]]:
    """The client proposes in their words; the clinician restates; both agree the restated version."""
    h = History()
    c, k, g = h.client, h.clinician, h.goal
    first = h.goal_events()[0]
    restated = GoalRevised(version=2, party="clinician", by=k, by_role=Role.CLINICIAN,
                           statement="Sleep 7 hours on work nights by June", client_words="sleep better",
                           facets={"target": "7 hours a night", "measure": "sleep diary"},
                           due_date=first.payload.due_date)  # type: ignore[attr-defined]
    goal_events = [first, h.new(restated, k, Role.CLINICIAN, 4),
                   h.new(GoalAgreed(goal_id=g, version=2, party="client", by=c, by_role=Role.CLIENT),
                         c, Role.CLIENT, 5),
                   h.new(GoalAgreed(goal_id=g, version=2, party="clinician", by=k, by_role=Role.CLINICIAN),
                         k, Role.CLINICIAN, 6),
                   h.new(GoalActivated(version=2), k, Role.CLINICIAN, 6),
                   h.new(MeasureAttached(instrument_id=PHQ9.id, schedule=WEEKLY_SCHEDULE, by=k, by_role=Role.CLINICIAN),
                         k, Role.CLINICIAN, 7)]
    return h, recorded(h.client_stream, h.client_events()) + recorded(h.goal_stream, goal_events)


@pytest.mark.parametrize("version", ["R5", "R4B"])
def test_goal_description_is_the_agreed_statement_with_the_clients_words_beside_it(version):
    # Given a goal the client put in their words and both agreed as restated by the clinician
    h, events = agreed_statement_history()
    # When the record is exported
    bundle = build_bundle(h.client, events, instruments=INSTRUMENTS, fhir_version=version)
    [goal] = resources(bundle, "Goal")
    # Then the description is the agreed statement and the client's words are a note by the client
    assert goal["description"] == {"text": "Sleep 7 hours on work nights by June"}
    assert goal["note"] == [{"authorReference": {"reference": f"Patient/{h.client}"}, "text": "sleep better"}]
    assert validate_resources(bundle) == [] and check_references(bundle) == []


def test_goal_target_keeps_the_free_text_target_with_its_own_measure_not_the_phq9_total():
    h, events = agreed_statement_history()
    [goal] = resources(build_bundle(h.client, events, instruments=INSTRUMENTS), "Goal")
    with_detail = [t for t in goal["target"] if "detailString" in t]
    assert with_detail == [{"measure": {"text": "sleep diary"}, "detailString": "7 hours a night",
                            "dueDate": "2025-06-01"}]
    [phq9] = [t for t in goal["target"] if "coding" in t["measure"]]
    assert phq9["measure"]["coding"][0]["code"] == "44261-6" and set(phq9) == {"measure", "dueDate"}


def test_goal_acceptance_records_each_party_even_before_a_clinician_is_named():
    h = History()
    client_events = [e for e in h.client_events() if not isinstance(e.payload, ClientEnrolled)]
    proposed = h.goal_events()[0]
    events = recorded(h.client_stream, client_events) + recorded(h.goal_stream, [proposed])
    [goal] = resources(build_bundle(h.client, events, instruments=INSTRUMENTS), "Goal")
    parties = [(x["extension"][0]["valueReference"], x["extension"][1]["valueCode"])
               for x in goal["extension"] if x["url"] == ACCEPTANCE_URL]
    assert parties == [({"reference": f"Patient/{h.client}"}, "pending"),
                       ({"display": "clinician (not yet named)"}, "pending")]
    assert check_codes(build_bundle(h.client, events, instruments=INSTRUMENTS), instruments=INSTRUMENTS) == []
