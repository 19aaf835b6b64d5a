"""Client stream: given events / when command / then events or error code."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alliance.core.authority import require_tenant
from alliance.core.client import (
    SYSTEM_ACTOR_ID,
    AcknowledgeRiskFlag,
    AddCareTeamMember,
    AuthoriseProxy,
    CareTeamMemberAdded,
    CareTeamMemberRemoved,
    ChangePrimaryClinician,
    ClientDischarged,
    ClientEnrolled,
    ClientErased,
    CompleteErasure,
    DischargeClient,
    EnrollClient,
    ErasureRequested,
    FeedbackGiven,
    GiveFeedback,
    GrantConsent,
    LegalHoldPlaced,
    LegalHoldReleased,
    MarkEntryInError,
    MeasurementEnteredInError,
    MeasurementRecorded,
    NoteEnteredInError,
    NoteRecorded,
    PlaceLegalHold,
    PrimaryClinicianChanged,
    ProxyAuthorised,
    ProxyRevoked,
    RaiseRiskFlag,
    RecordMeasurement,
    RecordNote,
    RelapsePreventionPlanUpdated,
    ReleaseLegalHold,
    RemoveCareTeamMember,
    ReportedBy,
    RequestErasure,
    RevokeProxy,
    RiskFlagAcknowledged,
    RiskFlagRaised,
    UpdateRelapsePlan,
    WithdrawConsent,
    client_stream,
    decide_client,
    risk_flag_id_for,
)
from alliance.core.clinic import StaffActivated, evolve_clinic, initial_clinic_state
from alliance.core.consent import (
    ConsentGranted,
    ConsentScope,
    ConsentWithdrawn,
    consent_in_force,
)
from alliance.core.identity import Role
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.domain.helpers import (
    ADMIN,
    ALL_SCOPES,
    AUDITOR,
    CLIENT,
    CLIENT_ID,
    CLINICIAN,
    CLINICIAN_2,
    EPISODE,
    OTHER_CLIENT,
    OTHER_TENANT,
    OUTSIDER,
    PROXY,
    SYSTEM,
    T0,
    TENANT,
    at,
    cmd,
    enrolled,
    fold_client,
    new_id,
    raises,
)

MEASUREMENT = ConsentScope.MEASUREMENT


REGISTRY = InstrumentRegistry.from_plugin_manager(get_plugin_manager())
PHQ9_ANSWERS = {f"item{n}": 0 for n in range(1, 10)} | {"item1": 1}
CHANNEL = {"self": "app", "proxy": "app", "clinician": "session"}


def decide(events, command, clinic=None):
    return decide_client(command, fold_client(events), clinic, scorer=REGISTRY.score)


def measurement(actor=CLIENT, when=T0, reported_by="self", **fields):
    reporter = ReportedBy(informant=reported_by, channel=CHANNEL.get(reported_by, "app"),
                          relationship="parent" if reported_by == "proxy" else None)
    base = dict(measurement_id=new_id(), instrument_id="phq9", instrument_version="2",
                answers=PHQ9_ANSWERS, reported_by=reporter, observed_at=when - timedelta(hours=1))
    base.update(fields)
    return cmd(RecordMeasurement, actor, when=when, **base)


def test_stream_id():
    assert client_stream(CLIENT_ID) == f"client-{CLIENT_ID}"


# --- enrolment and care team --------------------------------------------------------------

def test_enrol_puts_primary_clinician_on_team():
    events = decide([], cmd(EnrollClient, ADMIN, client_id=CLIENT_ID, episode_id=EPISODE,
                            primary_clinician_id=CLINICIAN.id))
    assert events == [ClientEnrolled(client_id=CLIENT_ID, tenant_id=TENANT, episode_id=EPISODE,
                                     primary_clinician_id=CLINICIAN.id, by=ADMIN.id,
                                     by_role=Role.ADMIN)]
    state = fold_client(events)
    assert state.care_team == {CLINICIAN.id} and state.primary_clinician == CLINICIAN.id


@pytest.mark.parametrize(("actor", "code"), [(AUDITOR, "auditor_read_only"), (CLIENT, "staff_only")])
def test_enrol_refused_for(actor, code):
    raises(code, decide, [], cmd(EnrollClient, actor, client_id=CLIENT_ID, episode_id=EPISODE,
                                 primary_clinician_id=CLINICIAN.id))


def test_enrol_twice_refused_then_allowed_after_discharge():
    c = cmd(EnrollClient, ADMIN, client_id=CLIENT_ID, episode_id=new_id(),
            primary_clinician_id=CLINICIAN_2.id)
    raises("already_enrolled", decide, enrolled(), c)
    events = [*enrolled(), ClientDischarged(episode_id=EPISODE, by=CLINICIAN.id,
                                            by_role=Role.CLINICIAN)]
    state = fold_client([*events, *decide(events, c)])
    assert not state.discharged and state.primary_clinician == CLINICIAN_2.id


def test_enrol_other_client_or_tenant_refused():
    raises("client_mismatch", decide, [], cmd(EnrollClient, ADMIN, client_id=OTHER_CLIENT.id,
                                              episode_id=EPISODE, primary_clinician_id=CLINICIAN.id))
    events = [*enrolled(), ClientDischarged(episode_id=EPISODE, by=ADMIN.id, by_role=Role.ADMIN)]
    raises("wrong_tenant", decide, events, cmd(EnrollClient, ADMIN, tenant=OTHER_TENANT,
                                               client_id=CLIENT_ID, episode_id=EPISODE,
                                               primary_clinician_id=CLINICIAN.id))


def test_enrol_checks_clinic_staff_when_clinic_given():
    clinic = initial_clinic_state(TENANT)
    clinic = evolve_clinic(clinic, StaffActivated(tenant_id=TENANT, staff_id=ADMIN.id, role=Role.ADMIN,
                                                  by=SYSTEM.id, by_role=Role.SYSTEM))
    c = cmd(EnrollClient, ADMIN, client_id=CLIENT_ID, episode_id=EPISODE,
            primary_clinician_id=CLINICIAN.id)
    raises("not_clinic_staff", decide, [], c, clinic)
    clinic = evolve_clinic(clinic, StaffActivated(tenant_id=TENANT, staff_id=CLINICIAN.id,
                                                  role=Role.CLINICIAN, by=ADMIN.id, by_role=Role.ADMIN))
    assert decide([], c, clinic)


def test_commands_before_enrolment_refused():
    raises("client_not_enrolled", decide, [], measurement())


def test_other_tenant_refused():
    raises("wrong_tenant", decide, enrolled(*ALL_SCOPES),
           cmd(RecordNote, CLINICIAN, tenant=OTHER_TENANT, note_id=new_id(), text="x"))


def test_add_care_team_member_needs_sharing_consent():
    c = cmd(AddCareTeamMember, CLINICIAN, member_id=CLINICIAN_2.id)
    raises("consent_not_in_force", decide, enrolled(), c)
    events = decide(enrolled(ConsentScope.CARE_TEAM_SHARING), c)
    assert events == [CareTeamMemberAdded(member_id=CLINICIAN_2.id, member_role=Role.CLINICIAN,
                                          by=CLINICIAN.id, by_role=Role.CLINICIAN)]


def test_add_care_team_member_rules():
    given = enrolled(*ALL_SCOPES, team=[CLINICIAN_2])
    raises("already_on_care_team", decide, given, cmd(AddCareTeamMember, CLINICIAN, member_id=CLINICIAN_2.id))
    raises("not_on_care_team", decide, given, cmd(AddCareTeamMember, OUTSIDER, member_id=OUTSIDER.id))
    raises("invalid_member_role", decide, given,
           cmd(AddCareTeamMember, ADMIN, member_id=new_id(), member_role=Role.AUDITOR))
    raises("clinician_only", decide, given, cmd(AddCareTeamMember, CLIENT, member_id=new_id()))


def test_remove_care_team_member():
    given = enrolled(*ALL_SCOPES, team=[CLINICIAN_2])
    events = decide(given, cmd(RemoveCareTeamMember, ADMIN, member_id=CLINICIAN_2.id))
    assert isinstance(events[0], CareTeamMemberRemoved)
    assert CLINICIAN_2.id not in fold_client([*given, *events]).care_team
    raises("member_not_on_care_team", decide, given, cmd(RemoveCareTeamMember, ADMIN, member_id=OUTSIDER.id))
    raises("cannot_remove_primary_clinician", decide, given,
           cmd(RemoveCareTeamMember, ADMIN, member_id=CLINICIAN.id))


def test_change_primary_clinician():
    given = enrolled(*ALL_SCOPES, team=[CLINICIAN_2])
    events = decide(given, cmd(ChangePrimaryClinician, CLINICIAN, clinician_id=CLINICIAN_2.id))
    assert events == [PrimaryClinicianChanged(clinician_id=CLINICIAN_2.id, by=CLINICIAN.id,
                                              by_role=Role.CLINICIAN)]
    raises("member_not_on_care_team", decide, given,
           cmd(ChangePrimaryClinician, CLINICIAN, clinician_id=OUTSIDER.id))
    raises("already_primary_clinician", decide, given,
           cmd(ChangePrimaryClinician, CLINICIAN, clinician_id=CLINICIAN.id))


def test_discharge():
    given = enrolled()
    events = decide(given, cmd(DischargeClient, CLINICIAN))
    assert isinstance(events[0], ClientDischarged)
    raises("already_discharged", decide, [*given, *events], cmd(DischargeClient, CLINICIAN))
    raises("client_discharged", decide, [*given, *events],
           cmd(AddCareTeamMember, CLINICIAN, member_id=CLINICIAN_2.id))


# --- proxies ------------------------------------------------------------------------------

def test_proxy_authorise_and_revoke():
    given = enrolled()
    events = decide(given, cmd(AuthoriseProxy, CLINICIAN, proxy_id=PROXY.id, basis="minor"))
    assert events == [ProxyAuthorised(proxy_id=PROXY.id, basis="minor", by=CLINICIAN.id,
                                      by_role=Role.CLINICIAN)]
    given = [*given, *events]
    raises("proxy_already_authorised", decide, given,
           cmd(AuthoriseProxy, CLINICIAN, proxy_id=PROXY.id, basis="minor"))
    raises("invalid_proxy", decide, given, cmd(AuthoriseProxy, CLINICIAN, proxy_id=CLIENT_ID, basis="minor"))
    revoked = decide(given, cmd(RevokeProxy, CLIENT, proxy_id=PROXY.id))
    assert revoked == [ProxyRevoked(proxy_id=PROXY.id, by=CLIENT_ID, by_role=Role.CLIENT)]
    raises("proxy_not_found", decide, [*given, *revoked], cmd(RevokeProxy, CLIENT, proxy_id=PROXY.id))


# --- consent ------------------------------------------------------------------------------

def test_client_grants_consent_self():
    events = decide(enrolled(), cmd(GrantConsent, CLIENT, scope=MEASUREMENT, text_version="v2", mode="self"))
    assert events == [ConsentGranted(scope=MEASUREMENT, text_version="v2", mode="self", effective_at=T0,
                                     by=CLIENT_ID, by_role=Role.CLIENT)]
    assert consent_in_force([*enrolled(), *events], MEASUREMENT, T0)
    assert not consent_in_force([*enrolled(), *events], MEASUREMENT, T0 - timedelta(seconds=1))


def test_verbal_consent_recorded_by_team_clinician_with_attestation():
    c = cmd(GrantConsent, CLINICIAN, scope=MEASUREMENT, text_version="v1", mode="verbal_attested",
            attestation_method="in_session", given_at=at(-5))
    [event] = decide(enrolled(), c)
    assert isinstance(event, ConsentGranted)
    assert (event.mode, event.attested_by, event.attested_at, event.attestation_method, event.given_at) == (
        "verbal_attested", CLINICIAN.id, T0, "in_session", at(-5))
    raises("attestation_required", decide, enrolled(),
           cmd(GrantConsent, CLINICIAN, scope=MEASUREMENT, text_version="v1", mode="verbal_attested"))
    raises("given_in_future", decide, enrolled(),
           cmd(GrantConsent, CLINICIAN, scope=MEASUREMENT, text_version="v1", mode="verbal_attested",
               attestation_method="phone", given_at=at(5)))
    raises("not_on_care_team", decide, enrolled(),
           cmd(GrantConsent, OUTSIDER, scope=MEASUREMENT, text_version="v1", mode="verbal_attested",
               attestation_method="phone"))


def test_proxy_consent_marked_and_needs_registration():
    c = cmd(GrantConsent, PROXY, scope=MEASUREMENT, text_version="v1", mode="proxy")
    raises("not_a_proxy_for_client", decide, enrolled(), c)
    given = [*enrolled(), ProxyAuthorised(proxy_id=PROXY.id, basis="lacks_capacity", by=CLINICIAN.id,
                                          by_role=Role.CLINICIAN)]
    [event] = decide(given, c)
    assert event.mode == "proxy" and event.by == PROXY.id and event.by_role is Role.PROXY


@pytest.mark.parametrize(("actor", "mode", "code"), [
    (CLINICIAN, "self", "consent_mode_mismatch"),
    (CLIENT, "proxy", "consent_mode_mismatch"),
    (CLIENT, "verbal_attested", "consent_mode_mismatch"),
    (OTHER_CLIENT, "self", "not_this_client"),
    (AUDITOR, "self", "auditor_read_only"),
])
def test_only_client_or_proxy_consents(actor, mode, code):
    raises(code, decide, enrolled(), cmd(GrantConsent, actor, scope=MEASUREMENT, text_version="v1", mode=mode))


def test_consent_already_in_force_and_new_text_version():
    given = enrolled(MEASUREMENT)
    raises("consent_already_in_force", decide, given,
           cmd(GrantConsent, CLIENT, scope=MEASUREMENT, text_version="v1", mode="self"))
    assert decide(given, cmd(GrantConsent, CLIENT, scope=MEASUREMENT, text_version="v2", mode="self"))
    raises("text_version_required", decide, enrolled(),
           cmd(GrantConsent, CLIENT, scope=MEASUREMENT, text_version=" ", mode="self"))


def test_withdrawal_stops_measurement_and_keeps_history():
    given = enrolled(MEASUREMENT)
    first = decide(given, measurement(when=at(1)))
    withdrawn = decide([*given, *first], cmd(WithdrawConsent, CLIENT, when=at(2), scope=MEASUREMENT, mode="self"))
    assert withdrawn == [ConsentWithdrawn(scope=MEASUREMENT, mode="self", effective_at=at(2), by=CLIENT_ID,
                                          by_role=Role.CLIENT)]
    history = [*given, *first, *withdrawn]
    raises("consent_not_in_force", decide, history, measurement(when=at(3)))
    state = fold_client(history)
    assert len(state.measurements) == 1  # history kept
    assert consent_in_force(state, MEASUREMENT, at(1)) and not consent_in_force(state, MEASUREMENT, at(2))
    raises("consent_not_in_force", decide, history,
           cmd(WithdrawConsent, CLIENT, when=at(4), scope=MEASUREMENT, mode="self"))


# --- measurements -------------------------------------------------------------------------

def test_measurement_recorded_with_exact_fields():
    c = measurement(answers={**PHQ9_ANSWERS, "item2": 3, "item3": 2, "item10": 1}, goal_ids=(new_id(),))
    [event] = decide(enrolled(MEASUREMENT), c)
    phq9 = REGISTRY.get("phq9", "2")
    assert event == MeasurementRecorded(
        measurement_id=c.measurement_id, instrument_id="phq9", instrument_version="2",
        fingerprint=phq9.fingerprint, answers={**PHQ9_ANSWERS, "item2": 3, "item3": 2, "item10": 1},
        scores={"total": 6.0}, band="mild", reported_by=ReportedBy(informant="self", channel="app"),
        observed_at=c.observed_at, goal_ids=c.goal_ids, recorded_under_consent_at=c.at,
        risk_items=(), unanswered=())


def test_measurement_needs_consent():
    raises("consent_not_in_force", decide, enrolled(), measurement())


def test_measurement_with_risk_items_raises_flag_in_same_decision():
    c = measurement(answers={**PHQ9_ANSWERS, "item9": 1})
    events = decide(enrolled(MEASUREMENT), c)
    assert isinstance(events[0], MeasurementRecorded)
    assert events[1] == RiskFlagRaised(flag_id=risk_flag_id_for(c.measurement_id), source="measurement",
                                       measurement_id=c.measurement_id, items=("item9",),
                                       reason="risk_answer", raised_by=SYSTEM_ACTOR_ID,
                                       raised_by_role=Role.SYSTEM, raised_at=T0)
    assert risk_flag_id_for(c.measurement_id) == risk_flag_id_for(c.measurement_id)
    state = fold_client([*enrolled(MEASUREMENT), *events])
    assert state.open_risk_flags == {risk_flag_id_for(c.measurement_id)}


def test_self_monitoring_continues_after_discharge_but_not_clinician_measurement():
    given = [*enrolled(MEASUREMENT), ClientDischarged(episode_id=EPISODE, by=CLINICIAN.id,
                                                      by_role=Role.CLINICIAN)]
    assert decide(given, measurement())
    raises("client_discharged", decide, given, measurement(actor=CLINICIAN, reported_by="clinician"))


def test_measurement_rules():
    given = enrolled(MEASUREMENT)
    raises("not_on_care_team", decide, given, measurement(actor=OUTSIDER, reported_by="clinician"))
    raises("informant_mismatch", decide, given, measurement(actor=CLINICIAN, reported_by="self"))
    raises("informant_mismatch", decide, given, measurement(actor=PROXY, reported_by="self"))
    raises("not_this_client", decide, given, measurement(actor=OTHER_CLIENT))
    raises("observed_in_future", decide, given, measurement(observed_at=at(10)))
    raises("invalid", decide, given, measurement(reported_by="someone"))
    c = measurement()
    raises("duplicate_id", decide, [*given, *decide(given, c)], c)


# --- notes and corrections ----------------------------------------------------------------

def test_note_and_corrections():
    given = enrolled(MEASUREMENT)
    note = cmd(RecordNote, CLINICIAN, note_id=new_id(), text="Session went well")
    [note_event] = decide(given, note)
    assert isinstance(note_event, NoteRecorded)
    raises("text_required", decide, given, cmd(RecordNote, CLINICIAN, note_id=new_id(), text=""))
    raises("clinician_only", decide, given, cmd(RecordNote, CLIENT, note_id=new_id(), text="x"))
    m = measurement()
    history = [*given, note_event, *decide(given, m)]
    fix = decide(history, cmd(MarkEntryInError, CLIENT, kind="measurement", entry_id=m.measurement_id,
                              reason="typo"))
    assert fix == [MeasurementEnteredInError(measurement_id=m.measurement_id, reason="typo", by=CLIENT_ID,
                                             by_role=Role.CLIENT)]
    raises("already_entered_in_error", decide, [*history, *fix],
           cmd(MarkEntryInError, CLINICIAN, kind="measurement", entry_id=m.measurement_id, reason="x"))
    raises("measurement_not_found", decide, history,
           cmd(MarkEntryInError, CLINICIAN, kind="measurement", entry_id=new_id(), reason="x"))
    raises("reason_required", decide, history,
           cmd(MarkEntryInError, CLINICIAN, kind="measurement", entry_id=m.measurement_id, reason=""))
    note_fix = decide(history, cmd(MarkEntryInError, CLINICIAN, kind="note", entry_id=note.note_id, reason="x"))
    assert isinstance(note_fix[0], NoteEnteredInError)
    raises("clinician_only", decide, history,
           cmd(MarkEntryInError, CLIENT, kind="note", entry_id=note.note_id, reason="x"))
    raises("already_entered_in_error", decide, [*history, *note_fix],
           cmd(MarkEntryInError, CLINICIAN, kind="note", entry_id=note.note_id, reason="x"))
    raises("note_not_found", decide, history,
           cmd(MarkEntryInError, CLINICIAN, kind="note", entry_id=new_id(), reason="x"))
    state = fold_client([*history, *fix, *note_fix])
    assert m.measurement_id in state.measurements and m.measurement_id in state.measurements_in_error


# --- risk ---------------------------------------------------------------------------------

def test_risk_flag_acknowledged_by_care_team_clinician_only():
    given = enrolled()
    flag = cmd(RaiseRiskFlag, CLINICIAN, flag_id=new_id(), items=("said so",))
    [raised] = decide(given, flag)
    assert isinstance(raised, RiskFlagRaised) and raised.source == "clinician"
    history = [*given, raised]
    raises("not_on_care_team", decide, history,
           cmd(AcknowledgeRiskFlag, OUTSIDER, flag_id=flag.flag_id, action_taken="called"))
    raises("clinician_only", decide, history,
           cmd(AcknowledgeRiskFlag, CLIENT, flag_id=flag.flag_id, action_taken="called"))
    raises("action_taken_required", decide, history,
           cmd(AcknowledgeRiskFlag, CLINICIAN, flag_id=flag.flag_id, action_taken=" "))
    raises("risk_flag_not_found", decide, history,
           cmd(AcknowledgeRiskFlag, CLINICIAN, flag_id=new_id(), action_taken="called"))
    ack = decide(history, cmd(AcknowledgeRiskFlag, CLINICIAN, flag_id=flag.flag_id, action_taken="called"))
    assert ack == [RiskFlagAcknowledged(flag_id=flag.flag_id, action_taken="called", by=CLINICIAN.id,
                                        by_role=Role.CLINICIAN, acknowledged_at=T0)]
    raises("risk_flag_already_acknowledged", decide, [*history, *ack],
           cmd(AcknowledgeRiskFlag, CLINICIAN, flag_id=flag.flag_id, action_taken="again"))
    raises("duplicate_id", decide, history, flag)
    assert fold_client([*history, *ack]).open_risk_flags == frozenset()


def test_risk_flag_acknowledged_after_discharge():
    given = [*enrolled(), RiskFlagRaised(flag_id=new_id(), source="clinician", raised_by=CLINICIAN.id,
                                         raised_by_role=Role.CLINICIAN, raised_at=T0),
             ClientDischarged(episode_id=EPISODE, by=CLINICIAN.id, by_role=Role.CLINICIAN)]
    flag_id = next(iter(fold_client(given).risk_flags))
    assert decide(given, cmd(AcknowledgeRiskFlag, CLINICIAN, flag_id=flag_id, action_taken="rang"))


# --- feedback and relapse plan ------------------------------------------------------------

def test_feedback_from_client_only():
    c = cmd(GiveFeedback, CLIENT, feedback_id=new_id(), text="Helpful", rating=8, resonates=("walks",),
            misaligned=("pace",))
    [event] = decide(enrolled(), c)
    assert isinstance(event, FeedbackGiven) and event.rating == 8
    raises("client_only", decide, enrolled(), cmd(GiveFeedback, CLINICIAN, feedback_id=new_id(), text="x"))
    raises("invalid_rating", decide, enrolled(), cmd(GiveFeedback, CLIENT, feedback_id=new_id(), text="x",
                                                     rating=11))
    raises("text_required", decide, enrolled(), cmd(GiveFeedback, CLIENT, feedback_id=new_id(), text=""))
    raises("duplicate_id", decide, [*enrolled(), event], c)


def test_relapse_plan_versions():
    c = cmd(UpdateRelapsePlan, CLIENT, warning_signs=("sleeping badly",), actions=("call Sam",),
            supports=("Sam",))
    [first] = decide(enrolled(), c)
    assert first == RelapsePreventionPlanUpdated(plan_version=1, warning_signs=("sleeping badly",),
                                                 actions=("call Sam",), supports=("Sam",), by=CLIENT_ID,
                                                 by_role=Role.CLIENT)
    [second] = decide([*enrolled(), first], cmd(UpdateRelapsePlan, CLINICIAN, actions=("walk",)))
    assert second.plan_version == 2
    raises("plan_empty", decide, enrolled(), cmd(UpdateRelapsePlan, CLIENT))
    raises("not_on_care_team", decide, enrolled(), cmd(UpdateRelapsePlan, OUTSIDER, actions=("x",)))


# --- legal hold and erasure ---------------------------------------------------------------

def test_legal_hold_blocks_erasure():
    hold, request = new_id(), new_id()
    given = [*enrolled(), LegalHoldPlaced(hold_id=hold, reason="case 12", by=ADMIN.id, by_role=Role.ADMIN),
             ErasureRequested(request_id=request, by=CLIENT_ID, by_role=Role.CLIENT)]
    raises("legal_hold_in_force", decide, given, cmd(CompleteErasure, ADMIN, request_id=request))
    released = decide(given, cmd(ReleaseLegalHold, ADMIN, hold_id=hold))
    assert released == [LegalHoldReleased(hold_id=hold, by=ADMIN.id, by_role=Role.ADMIN)]
    erased = decide([*given, *released], cmd(CompleteErasure, ADMIN, request_id=request))
    assert erased == [ClientErased(request_id=request, by=ADMIN.id, by_role=Role.ADMIN)]
    after = [*given, *released, *erased]
    raises("client_erased", decide, after, cmd(GiveFeedback, CLIENT, feedback_id=new_id(), text="x"))
    raises("client_erased", decide, after, cmd(EnrollClient, ADMIN, client_id=CLIENT_ID, episode_id=new_id(),
                                               primary_clinician_id=CLINICIAN.id))


def test_legal_hold_and_erasure_rules():
    given = enrolled()
    assert decide(given, cmd(PlaceLegalHold, ADMIN, hold_id=new_id(), reason="litigation"))
    raises("admin_only", decide, given, cmd(PlaceLegalHold, CLINICIAN, hold_id=new_id(), reason="x"))
    raises("reason_required", decide, given, cmd(PlaceLegalHold, ADMIN, hold_id=new_id(), reason=""))
    raises("legal_hold_not_found", decide, given, cmd(ReleaseLegalHold, ADMIN, hold_id=new_id()))
    raises("erasure_not_requested", decide, given, cmd(CompleteErasure, ADMIN, request_id=new_id()))
    req = cmd(RequestErasure, CLIENT, request_id=new_id())
    [event] = decide(given, req)
    raises("duplicate_id", decide, [*given, event], req)
    raises("admin_only", decide, given, cmd(RequestErasure, CLINICIAN, request_id=new_id()))
    raises("auditor_read_only", decide, given, cmd(RequestErasure, AUDITOR, request_id=new_id()))


def test_require_tenant_ignores_unknown_tenant():
    require_tenant(TENANT, None)
    raises("wrong_tenant", require_tenant, TENANT, OTHER_TENANT)


def test_evolve_ignores_unknown_events():
    state = fold_client(enrolled())
    assert fold_client([*enrolled(), StaffActivated(tenant_id=TENANT, staff_id=ADMIN.id, role=Role.ADMIN,
                                                    by=ADMIN.id, by_role=Role.ADMIN)]) == state


def test_consent_events_types():
    assert ConsentGranted.type_name() == "consent.granted"
    assert ConsentWithdrawn.type_name() == "consent.withdrawn"


def test_withdrawal_never_takes_effect_before_a_measurement_already_recorded():
    given = [*enrolled(MEASUREMENT)]
    c = measurement(when=at(5))
    given += decide(given, c)
    [withdrawn] = decide(given, cmd(WithdrawConsent, CLIENT, when=c.at - timedelta(minutes=1),
                                    scope=ConsentScope.MEASUREMENT, mode="self"))
    assert withdrawn.effective_at > c.at
