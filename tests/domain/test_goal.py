"""Goal stream: given events / when command / then events or error code."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from alliance.core.client import CareTeamMemberRemoved, ClientDischarged, ProxyAuthorised
from alliance.core.consent import ConsentScope, ConsentWithdrawn
from alliance.core.goal import (
    AcceptChange,
    AddMilestone,
    AgreeGoal,
    AttachMeasure,
    AttainmentScaleSet,
    CancelCheckpoint,
    ChangeAccepted,
    ChangeDeclined,
    ChangeProposed,
    Checkpoint,
    CloseGoal,
    DeclineChange,
    DeclineGoal,
    DetachMeasure,
    GoalActivated,
    GoalAgreed,
    GoalProposed,
    GoalRestated,
    GoalRevised,
    GoalStatus,
    LinkIntervention,
    MarkGoalInError,
    MarkMilestoneReached,
    MarkReviewInError,
    Milestone,
    NoteBarrier,
    NoteResource,
    PauseGoal,
    PlanContingency,
    ProposeChange,
    ProposeGoal,
    RecordReview,
    ReflectGoal,
    RemoveGoalItem,
    RestateGoal,
    ResumeGoal,
    ReviseGoal,
    ScheduleCheckpoint,
    SetAttainmentScale,
    StartMaintenance,
    WithdrawChange,
    WithdrawGoal,
    decide_goal,
    fhir_lifecycle_status,
    goal_stream,
    is_due,
    is_overdue,
)
from alliance.core.identity import Role
from alliance.core.schedules import Schedule
from tests.domain.helpers import (
    ALL_SCOPES,
    AUDITOR,
    CLIENT,
    CLIENT_ID,
    CLINICIAN,
    CLINICIAN_2,
    EPISODE,
    GOAL_ID,
    OTHER_CLIENT,
    OTHER_TENANT,
    OUTSIDER,
    PROXY,
    SUPERVISOR,
    T0,
    TENANT,
    at,
    enrolled,
    fold_client,
    fold_goal,
    goal_cmd,
    new_id,
    raises,
)

CLIENT_EVENTS = enrolled(*ALL_SCOPES, team=[CLINICIAN_2, SUPERVISOR])


def decide(goal_events, command, client_events=CLIENT_EVENTS):
    return decide_goal(command, fold_goal(goal_events), fold_client(client_events))


def run(goal_events, *commands, client_events=CLIENT_EVENTS):
    """Decide and fold each command in turn; return all goal events."""
    events = list(goal_events)
    for command in commands:
        events += decide(events, command, client_events)
    return events


def proposed_by_client(**fields):
    return run([], goal_cmd(ProposeGoal, CLIENT, text="Walk to the shop on my own", **fields))


def active_goal():
    g = proposed_by_client()
    return run(g, goal_cmd(AgreeGoal, CLIENT, version=1), goal_cmd(AgreeGoal, CLINICIAN, version=1))


def test_stream_id():
    assert goal_stream(GOAL_ID) == f"goal-{GOAL_ID}"


# --- proposing ----------------------------------------------------------------------------

def test_client_proposes_in_own_words():
    [event] = decide([], goal_cmd(ProposeGoal, CLIENT, text="Walk to the shop", facets={"target": "3 times"},
                                  due_date=date(2025, 6, 1)))
    assert event == GoalProposed(goal_id=GOAL_ID, client_id=CLIENT_ID, tenant_id=TENANT, author_party="client",
                                 by=CLIENT_ID, by_role=Role.CLIENT, client_words="Walk to the shop",
                                 statement=None, facets={"target": "3 times"}, due_date=date(2025, 6, 1))
    state = fold_goal([event])
    assert state.status is GoalStatus.PROPOSED and state.version == 1 and fhir_lifecycle_status(state) == "proposed"


def test_clinician_proposes_structured_statement_and_client_restates():
    g = run([], goal_cmd(ProposeGoal, CLINICIAN, text="Increase behavioural activation"))
    assert fold_goal(g).statement == "Increase behavioural activation" and fold_goal(g).client_words is None
    restated = decide(g, goal_cmd(RestateGoal, CLIENT, client_words="Do more things I enjoy"))
    assert restated == [GoalRestated(version=2, client_words="Do more things I enjoy", by=CLIENT_ID,
                                     by_role=Role.CLIENT)]
    state = fold_goal([*g, *restated])
    assert state.version == 2 and state.statement == "Increase behavioural activation"
    raises("client_only", decide, g, goal_cmd(RestateGoal, CLINICIAN, client_words="x"))
    raises("client_words_required", decide, g, goal_cmd(RestateGoal, CLIENT, client_words=" "))


def test_proxy_proposes_on_behalf():
    client_events = [*CLIENT_EVENTS, ProxyAuthorised(proxy_id=PROXY.id, basis="minor", by=CLINICIAN.id,
                                                     by_role=Role.CLINICIAN)]
    [event] = decide([], goal_cmd(ProposeGoal, PROXY, text="Go to school"), client_events)
    assert event.author_party == "client" and event.on_behalf and event.by == PROXY.id


@pytest.mark.parametrize(("actor", "code"), [
    (AUDITOR, "auditor_read_only"), (OUTSIDER, "not_on_care_team"), (OTHER_CLIENT, "not_this_client"),
    (PROXY, "not_a_proxy_for_client"),
])
def test_propose_refused_for(actor, code):
    raises(code, decide, [], goal_cmd(ProposeGoal, actor, text="x"))


def test_propose_rules():
    raises("goal_exists", decide, proposed_by_client(), goal_cmd(ProposeGoal, CLIENT, text="again"))
    raises("text_required", decide, [], goal_cmd(ProposeGoal, CLIENT, text=""))
    raises("unknown_facet", decide, [], goal_cmd(ProposeGoal, CLIENT, text="x", facets={"colour": "red"}))
    raises("consent_not_in_force", decide, [], goal_cmd(ProposeGoal, CLIENT, text="x"), enrolled())
    raises("wrong_tenant", decide, [], goal_cmd(ProposeGoal, CLIENT, text="x", tenant=OTHER_TENANT))
    raises("client_mismatch", decide, [], goal_cmd(ProposeGoal, CLIENT, text="x", client_id=OTHER_CLIENT.id))
    raises("goal_mismatch", decide, [], goal_cmd(ProposeGoal, CLIENT, text="x", goal_id=new_id()))
    raises("client_not_enrolled", decide, [], goal_cmd(ProposeGoal, CLIENT, text="x"), [])
    raises("goal_not_found", decide, [], goal_cmd(AgreeGoal, CLIENT, version=1))


def test_goal_of_other_client_refused():
    other_goal = [GoalProposed(goal_id=GOAL_ID, client_id=OTHER_CLIENT.id, tenant_id=TENANT, author_party="client",
                               by=OTHER_CLIENT.id, by_role=Role.CLIENT, client_words="x")]
    raises("goal_client_mismatch", decide, other_goal, goal_cmd(AgreeGoal, CLIENT, version=1))


# --- reflect, revise, agree ---------------------------------------------------------------

def test_reflect_does_not_change_version():
    g = proposed_by_client()
    [event] = decide(g, goal_cmd(ReflectGoal, CLINICIAN, reflection="You want to feel safe outside"))
    assert fold_goal([*g, event]).version == 1 and event.on_version == 1
    raises("clinician_only", decide, g, goal_cmd(ReflectGoal, CLIENT, reflection="x"))


def test_each_party_revises_own_words_new_version():
    g = proposed_by_client()
    [rev] = decide(g, goal_cmd(ReviseGoal, CLINICIAN, text="Walk 10 minutes outside", facets={"measure": "diary"}))
    assert isinstance(rev, GoalRevised) and rev.version == 2 and rev.party == "clinician"
    assert rev.client_words == "Walk to the shop on my own" and rev.statement == "Walk 10 minutes outside"
    raises("nothing_changed", decide, g, goal_cmd(ReviseGoal, CLIENT))
    [rev2] = decide(g, goal_cmd(ReviseGoal, CLIENT, clear_due_date=True, pace="slowly"))
    assert rev2.pace == "slowly" and rev2.client_words == "Walk to the shop on my own"


def test_active_only_when_both_agree_same_version():
    g = proposed_by_client()
    g = run(g, goal_cmd(AgreeGoal, CLIENT, version=1))
    assert fold_goal(g).status is GoalStatus.PROPOSED and fhir_lifecycle_status(fold_goal(g)) == "accepted"
    events = decide(g, goal_cmd(AgreeGoal, CLINICIAN_2, version=1))
    assert events == [GoalAgreed(goal_id=GOAL_ID, version=1, party="clinician", by=CLINICIAN_2.id,
                                 by_role=Role.CLINICIAN), GoalActivated(version=1)]
    state = fold_goal([*g, *events])
    assert state.status is GoalStatus.ACTIVE and fhir_lifecycle_status(state) == "active"


def test_revision_after_one_agreement_resets_it():
    g = run(proposed_by_client(), goal_cmd(AgreeGoal, CLIENT, version=1),
            goal_cmd(ReviseGoal, CLINICIAN, text="Walk to the shop with a friend first"))
    raises("stale_version", decide, g, goal_cmd(AgreeGoal, CLINICIAN, version=1))
    events = decide(g, goal_cmd(AgreeGoal, CLINICIAN, version=2))
    assert not any(isinstance(e, GoalActivated) for e in events)
    g = run([*g, *events], goal_cmd(AgreeGoal, CLIENT, version=2))
    assert fold_goal(g).status is GoalStatus.ACTIVE and fold_goal(g).activated_version == 2


def test_agree_rules():
    g = run(proposed_by_client(), goal_cmd(AgreeGoal, CLIENT, version=1))
    raises("already_agreed", decide, g, goal_cmd(AgreeGoal, CLIENT, version=1))
    raises("not_on_care_team", decide, g, goal_cmd(AgreeGoal, OUTSIDER, version=1))
    raises("auditor_read_only", decide, g, goal_cmd(AgreeGoal, AUDITOR, version=1))
    raises("goal_already_active", decide, active_goal(), goal_cmd(AgreeGoal, CLIENT, version=1))


def test_clinician_just_removed_from_team_cannot_agree():
    removed = [*CLIENT_EVENTS, CareTeamMemberRemoved(member_id=CLINICIAN_2.id, by=CLINICIAN.id,
                                                     by_role=Role.CLINICIAN)]
    raises("not_on_care_team", decide, proposed_by_client(), goal_cmd(AgreeGoal, CLINICIAN_2, version=1), removed)


def test_supervisor_on_team_may_agree_for_clinic():
    events = decide(proposed_by_client(), goal_cmd(AgreeGoal, SUPERVISOR, version=1))
    assert events[0].party == "clinician"


def test_decline_and_withdraw():
    g = proposed_by_client()
    raises("cannot_decline_own_proposal", decide, g, goal_cmd(DeclineGoal, CLIENT))
    raises("not_author_party", decide, g, goal_cmd(WithdrawGoal, CLINICIAN))
    declined = run(g, goal_cmd(DeclineGoal, CLINICIAN, reason="not now"))
    assert fold_goal(declined).status is GoalStatus.DECLINED
    assert fhir_lifecycle_status(fold_goal(declined)) == "rejected"
    withdrawn = run(g, goal_cmd(WithdrawGoal, CLIENT))
    assert fhir_lifecycle_status(fold_goal(withdrawn)) == "cancelled"
    raises("goal_not_proposed", decide, withdrawn, goal_cmd(AgreeGoal, CLIENT, version=1))
    raises("change_proposal_required", decide, active_goal(), goal_cmd(ReviseGoal, CLIENT, text="x"))


# --- changes after agreement --------------------------------------------------------------

def test_clinician_change_applies_only_when_client_consents():
    g = active_goal()
    change = goal_cmd(ProposeChange, CLINICIAN, change_id=new_id(), kind="target", new_text="twice a week",
                      rationale="pace")
    [proposed] = decide(g, change)
    assert isinstance(proposed, ChangeProposed) and proposed.party == "clinician" and proposed.base_version == 1
    g = [*g, proposed]
    assert fold_goal(g).facets.get("target") is None
    raises("must_be_other_party", decide, g, goal_cmd(AcceptChange, CLINICIAN_2, change_id=change.change_id))
    [accepted] = decide(g, goal_cmd(AcceptChange, CLIENT, change_id=change.change_id))
    assert accepted == ChangeAccepted(change_id=change.change_id, party="client", by=CLIENT_ID,
                                      by_role=Role.CLIENT, new_version=2)
    state = fold_goal([*g, accepted])
    assert state.facets["target"] == "twice a week" and state.version == 2 and state.both_agreed_current
    raises("change_not_pending", decide, [*g, accepted], goal_cmd(AcceptChange, CLIENT, change_id=change.change_id))


def test_client_change_needs_care_team_clinician():
    g = active_goal()
    change = goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="due_date", new_date=date(2025, 9, 1))
    g = run(g, change)
    raises("not_on_care_team", decide, g, goal_cmd(AcceptChange, OUTSIDER, change_id=change.change_id))
    raises("must_be_other_party", decide, g, goal_cmd(AcceptChange, CLIENT, change_id=change.change_id))
    g = run(g, goal_cmd(AcceptChange, CLINICIAN_2, change_id=change.change_id))
    assert fold_goal(g).due_date == date(2025, 9, 1)


def test_declined_change_stays_in_history():
    g = active_goal()
    change = goal_cmd(ProposeChange, CLINICIAN, change_id=new_id(), kind="pace", new_text="faster")
    g = run(g, change)
    raises("must_be_other_party", decide, g, goal_cmd(DeclineChange, CLINICIAN, change_id=change.change_id))
    [declined] = decide(g, goal_cmd(DeclineChange, CLIENT, change_id=change.change_id, reason="too fast"))
    assert isinstance(declined, ChangeDeclined)
    state = fold_goal([*g, declined])
    assert state.changes[change.change_id].status == "declined" and state.pace is None and state.version == 1


def test_withdraw_change_and_stale_change():
    g = active_goal()
    c1 = goal_cmd(ProposeChange, CLINICIAN, change_id=new_id(), kind="pace", new_text="slower")
    c2 = goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="target", new_text="once")
    g = run(g, c1, c2)
    raises("not_author_party", decide, g, goal_cmd(WithdrawChange, CLIENT, change_id=c1.change_id))
    g = run(g, goal_cmd(AcceptChange, CLIENT, change_id=c1.change_id))
    raises("change_stale", decide, g, goal_cmd(AcceptChange, CLINICIAN, change_id=c2.change_id))
    g = run(g, goal_cmd(WithdrawChange, CLIENT, change_id=c2.change_id))
    assert fold_goal(g).changes[c2.change_id].status == "withdrawn"
    raises("change_not_found", decide, g, goal_cmd(AcceptChange, CLIENT, change_id=new_id()))
    raises("duplicate_id", decide, g, c1)


def test_change_validation():
    g = active_goal()
    raises("goal_not_active", decide, proposed_by_client(),
           goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="pace", new_text="x"))
    raises("new_text_required", decide, g, goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="target"))
    raises("new_date_required", decide, g, goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="due_date"))
    raises("milestone_id_required", decide, g,
           goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="milestone_add", new_text="x"))
    raises("milestone_not_found", decide, g,
           goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="milestone_remove", milestone_id=new_id()))
    raises("gas_levels_invalid", decide, g,
           goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="attainment_scale", new_levels=("a",)))


def test_milestones_after_agreement_via_change():
    g = active_goal()
    m = new_id()
    raises("change_proposal_required", decide, g, goal_cmd(AddMilestone, CLIENT, milestone_id=m, description="x"))
    add = goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="milestone_add", milestone_id=m,
                   new_text="Walk to the corner", new_date=date(2025, 4, 1))
    g = run(g, add, goal_cmd(AcceptChange, CLINICIAN, change_id=add.change_id))
    assert fold_goal(g).milestones[m].description == "Walk to the corner"
    upd = goal_cmd(ProposeChange, CLINICIAN, change_id=new_id(), kind="milestone_update", milestone_id=m,
                   new_date=date(2025, 4, 15))
    raises("new_text_required", decide, g,
           goal_cmd(ProposeChange, CLINICIAN, change_id=new_id(), kind="milestone_update", milestone_id=m))
    g = run(g, upd, goal_cmd(AcceptChange, CLIENT, change_id=upd.change_id))
    assert fold_goal(g).milestones[m].provisional_date == date(2025, 4, 15)
    g = run(g, goal_cmd(MarkMilestoneReached, CLIENT, milestone_id=m, reached_on=T0.date()))
    raises("milestone_already_reached", decide, g,
           goal_cmd(MarkMilestoneReached, CLIENT, milestone_id=m, reached_on=T0.date()))
    rem = goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="milestone_remove", milestone_id=m)
    g = run(g, rem, goal_cmd(AcceptChange, CLINICIAN, change_id=rem.change_id))
    assert fold_goal(g).milestones[m].removed
    gas = goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="attainment_scale",
                   new_levels=("a", "b", "c", "d", "e"), new_weight=2.0)
    g = run(g, gas, goal_cmd(AcceptChange, CLINICIAN, change_id=gas.change_id))
    assert fold_goal(g).attainment_scale.weight == 2.0


def test_milestone_before_agreement_and_due_helpers():
    g = proposed_by_client()
    m = new_id()
    g = run(g, goal_cmd(AddMilestone, CLINICIAN, milestone_id=m, description="Step outside",
                        provisional_date=date(2025, 3, 10)))
    ms = fold_goal(g).milestones[m]
    assert isinstance(ms, Milestone)
    assert not is_due(ms, date(2025, 3, 9)) and is_due(ms, date(2025, 3, 10))
    assert not is_overdue(ms, date(2025, 3, 10)) and is_overdue(ms, date(2025, 3, 11))
    raises("duplicate_id", decide, g, goal_cmd(AddMilestone, CLINICIAN, milestone_id=m, description="x"))
    raises("milestone_not_found", decide, active_goal(),
           goal_cmd(MarkMilestoneReached, CLIENT, milestone_id=new_id(), reached_on=T0.date()))
    reached = Milestone(milestone_id=m, description="x", provisional_date=date(2025, 1, 1), reached_on=T0.date())
    assert not is_due(reached, T0.date()) and not is_overdue(reached, T0.date())
    cp = Checkpoint(checkpoint_id=new_id(), provisional_date=date(2025, 3, 1))
    assert is_overdue(cp, date(2025, 3, 2))


def test_milestone_reached_in_future_refused():
    add = goal_cmd(ProposeChange, CLIENT, change_id=new_id(), kind="milestone_add", milestone_id=new_id(),
                   new_text="x")
    g = run(active_goal(), add, goal_cmd(AcceptChange, CLINICIAN, change_id=add.change_id))
    raises("reached_in_future", decide, g, goal_cmd(MarkMilestoneReached, CLIENT, milestone_id=add.milestone_id,
                                                    reached_on=T0.date() + timedelta(days=1)))


# --- around a goal ------------------------------------------------------------------------

def test_barriers_contingencies_resources_interventions():
    g = proposed_by_client()
    b, c, r, i = new_id(), new_id(), new_id(), new_id()
    g = run(g, goal_cmd(NoteBarrier, CLIENT, barrier_id=b, text="Crowds"),
            goal_cmd(PlanContingency, CLINICIAN, contingency_id=c, trigger="If crowded", response="Go early",
                     barrier_id=b),
            goal_cmd(NoteResource, CLIENT, resource_id=r, text="My dog"),
            goal_cmd(LinkIntervention, CLINICIAN, intervention_id=i, kind="exposure"))
    state = fold_goal(g)
    assert state.barriers == {b: "Crowds"} and state.contingencies[c].barrier_id == b
    assert state.resources == {r: "My dog"} and state.interventions[i].kind == "exposure"
    raises("barrier_not_found", decide, g, goal_cmd(PlanContingency, CLIENT, contingency_id=new_id(), trigger="a",
                                                    response="b", barrier_id=new_id()))
    raises("detail_required", decide, g, goal_cmd(LinkIntervention, CLINICIAN, intervention_id=new_id(),
                                                  kind="other"))
    raises("duplicate_id", decide, g, goal_cmd(NoteBarrier, CLIENT, barrier_id=b, text="again"))
    g = run(g, goal_cmd(RemoveGoalItem, CLIENT, item_kind="barrier", item_id=b))
    assert fold_goal(g).barriers == {}
    raises("item_not_found", decide, g, goal_cmd(RemoveGoalItem, CLIENT, item_kind="barrier", item_id=b))
    raises("not_on_care_team", decide, g, goal_cmd(NoteResource, OUTSIDER, resource_id=new_id(), text="x"))


def test_attainment_scale_and_measures():
    g = proposed_by_client()
    levels = ("never go out", "go to the door", "walk to the shop", "walk to the park", "go into town")
    [event] = decide(g, goal_cmd(SetAttainmentScale, CLIENT, levels=levels, weight=1.5))
    assert event == AttainmentScaleSet(levels=levels, weight=1.5, baseline_level=-1, by=CLIENT_ID,
                                       by_role=Role.CLIENT)
    raises("gas_levels_invalid", decide, g, goal_cmd(SetAttainmentScale, CLIENT, levels=levels[:4]))
    raises("gas_weight_invalid", decide, g, goal_cmd(SetAttainmentScale, CLIENT, levels=levels, weight=0))
    raises("gas_baseline_invalid", decide, g,
           goal_cmd(SetAttainmentScale, CLIENT, levels=levels, baseline_level=3))
    raises("change_proposal_required", decide, active_goal(), goal_cmd(SetAttainmentScale, CLIENT, levels=levels))
    weekly = Schedule(kind="every", interval=1, unit="weeks", start=date(2026, 3, 2))
    g = run(g, goal_cmd(AttachMeasure, CLINICIAN, instrument_id="phq9", schedule=weekly))
    assert fold_goal(g).measures == {"phq9": "weekly"} and fold_goal(g).schedules == {"phq9": weekly}
    raises("measure_already_attached", decide, g,
           goal_cmd(AttachMeasure, CLINICIAN, instrument_id="phq9", schedule=weekly))
    g = run(g, goal_cmd(DetachMeasure, CLIENT, instrument_id="phq9"))
    raises("measure_not_attached", decide, g, goal_cmd(DetachMeasure, CLIENT, instrument_id="phq9"))


# --- reviews, status ----------------------------------------------------------------------

def test_review_at_checkpoint_and_correction():
    g = active_goal()
    cp, rv = new_id(), new_id()
    g = run(g, goal_cmd(ScheduleCheckpoint, CLINICIAN, checkpoint_id=cp, provisional_date=date(2025, 3, 17)))
    assert is_due(fold_goal(g).checkpoints[cp], date(2025, 3, 17))
    g = run(g, goal_cmd(RecordReview, CLINICIAN, review_id=rv, checkpoint_id=cp, outcome="celebrate",
                        looked_at=("mood diary",), client_view="Proud of myself"))
    state = fold_goal(g)
    assert state.checkpoints[cp].reviewed and not is_due(state.checkpoints[cp], date(2025, 3, 20))
    raises("duplicate_id", decide, g, goal_cmd(RecordReview, CLIENT, review_id=rv, outcome="continue"))
    raises("checkpoint_not_found", decide, g,
           goal_cmd(RecordReview, CLIENT, review_id=new_id(), outcome="continue", checkpoint_id=new_id()))
    raises("goal_not_active", decide, proposed_by_client(),
           goal_cmd(RecordReview, CLIENT, review_id=new_id(), outcome="continue"))
    raises("clinician_only", decide, g, goal_cmd(MarkReviewInError, CLIENT, review_id=rv, reason="x"))
    g = run(g, goal_cmd(MarkReviewInError, CLINICIAN, review_id=rv, reason="wrong goal"))
    assert fold_goal(g).reviews[rv].in_error
    raises("already_entered_in_error", decide, g, goal_cmd(MarkReviewInError, CLINICIAN, review_id=rv, reason="x"))
    raises("review_not_found", decide, g, goal_cmd(MarkReviewInError, CLINICIAN, review_id=new_id(), reason="x"))
    g = run(g, goal_cmd(CancelCheckpoint, CLIENT, checkpoint_id=cp))
    raises("checkpoint_not_found", decide, g, goal_cmd(CancelCheckpoint, CLIENT, checkpoint_id=cp))


def test_pause_resume_close_maintenance():
    g = active_goal()
    raises("goal_not_paused", decide, g, goal_cmd(ResumeGoal, CLIENT))
    g = run(g, goal_cmd(PauseGoal, CLIENT, reason="exams"))
    assert fhir_lifecycle_status(fold_goal(g)) == "on-hold"
    raises("goal_not_active", decide, g, goal_cmd(PauseGoal, CLIENT))
    g = run(g, goal_cmd(ResumeGoal, CLINICIAN))
    assert fold_goal(g).status is GoalStatus.ACTIVE
    raises("reason_required", decide, g, goal_cmd(CloseGoal, CLINICIAN, outcome="discontinued"))
    achieved = run(g, goal_cmd(CloseGoal, CLIENT, outcome="achieved"))
    assert fhir_lifecycle_status(fold_goal(achieved)) == "completed"
    maint = run(achieved, goal_cmd(StartMaintenance, CLIENT))
    assert fold_goal(maint).status is GoalStatus.MAINTENANCE and fhir_lifecycle_status(fold_goal(maint)) == "active"
    raises("goal_not_active", decide, run(g, goal_cmd(CloseGoal, CLIENT, outcome="not_achieved", reason="x")),
           goal_cmd(StartMaintenance, CLIENT))
    stopped = run(g, goal_cmd(CloseGoal, CLINICIAN, outcome="discontinued", reason="moved away"))
    assert fhir_lifecycle_status(fold_goal(stopped)) == "cancelled"
    raises("goal_closed", decide, stopped, goal_cmd(NoteBarrier, CLIENT, barrier_id=new_id(), text="x"))


def test_entered_in_error():
    g = proposed_by_client()
    raises("clinician_only", decide, g, goal_cmd(MarkGoalInError, CLIENT, reason="x"))
    g = run(g, goal_cmd(MarkGoalInError, CLINICIAN, reason="wrong client"))
    assert fhir_lifecycle_status(fold_goal(g)) == "entered-in-error"
    raises("already_entered_in_error", decide, g, goal_cmd(MarkGoalInError, CLINICIAN, reason="x"))


def test_consent_withdrawn_blocks_new_goal_work_but_not_stopping():
    g = active_goal()
    withdrawn = [*CLIENT_EVENTS, ConsentWithdrawn(scope=ConsentScope.GOAL_SETTING, mode="self",
                                                  effective_at=at(-1), by=CLIENT_ID, by_role=Role.CLIENT)]
    raises("consent_not_in_force", decide, g, goal_cmd(NoteBarrier, CLIENT, barrier_id=new_id(), text="x"), withdrawn)
    assert decide(g, goal_cmd(CloseGoal, CLIENT, outcome="discontinued", reason="stopping"), withdrawn)


def test_after_discharge_only_wind_down():
    g = active_goal()
    discharged = [*CLIENT_EVENTS, ClientDischarged(episode_id=EPISODE, by=CLINICIAN.id, by_role=Role.CLINICIAN)]
    raises("client_discharged", decide, g, goal_cmd(NoteBarrier, CLIENT, barrier_id=new_id(), text="x"), discharged)
    assert decide(g, goal_cmd(StartMaintenance, CLIENT), discharged)
