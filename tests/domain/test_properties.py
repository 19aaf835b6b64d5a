"""Property-based tests: random command sequences by random actors keep the invariants.

- active (or paused / in maintenance) ⇒ both parties agreed to the current version;
- every applied post-agreement change was accepted by the party who did not propose it;
- nothing is recorded in a scope whose consent is not in force at the command's time;
- folding the emitted events (after a codec round trip) gives the state the decider saw next.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alliance.core.authority import Command
from alliance.core.catalog import ALL_EVENT_TYPES
from alliance.core.client import (
    AddCareTeamMember,
    ClientState,
    GrantConsent,
    MeasurementRecorded,
    ProxyAuthorised,
    RecordMeasurement,
    RemoveCareTeamMember,
    ReportedBy,
    WithdrawConsent,
    decide_client,
    evolve_client,
)
from alliance.core.consent import ConsentScope, consent_in_force
from alliance.core.errors import AllianceError
from alliance.core.events.base import EventPayload
from alliance.core.events.codec import EventCodec
from alliance.core.goal import (
    IN_PLAY,
    STOPPING_COMMANDS,
    AcceptChange,
    AgreeGoal,
    ChangeAccepted,
    ChangeProposed,
    CloseGoal,
    DeclineChange,
    DeclineGoal,
    GoalAgreed,
    GoalState,
    PauseGoal,
    ProposeChange,
    ProposeGoal,
    RestateGoal,
    ResumeGoal,
    ReviseGoal,
    StartMaintenance,
    WithdrawChange,
    WithdrawGoal,
    decide_goal,
    evolve_goal,
)
from alliance.core.identity import Role
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.domain.helpers import (
    ALL_SCOPES,
    AUDITOR,
    CLIENT,
    CLIENT_ID,
    CLINICIAN,
    CLINICIAN_2,
    OTHER_CLIENT,
    OUTSIDER,
    PROXY,
    SUPERVISOR,
    T0,
    cmd,
    enrolled,
    fold_client,
    fold_goal,
    goal_cmd,
)

CODEC = EventCodec(ALL_EVENT_TYPES)
SCORER = InstrumentRegistry.from_plugin_manager(get_plugin_manager()).score
# Weighted towards the two parties so sequences reach agreement and changes often.
ACTORS = [CLIENT, CLIENT, CLIENT, CLINICIAN, CLINICIAN, CLINICIAN, PROXY, CLINICIAN_2, SUPERVISOR, OUTSIDER,
          AUDITOR, OTHER_CLIENT]
CHANGE_IDS = [UUID(int=i + 1) for i in range(4)]
MODES = {Role.CLIENT: "self", Role.PROXY: "proxy"}


def round_trip(events: list[EventPayload]) -> list[EventPayload]:
    out = []
    for position, event in enumerate(events):
        enc = CODEC.encode(event)
        out.append(CODEC.decode(enc.type, enc.schema_version, enc.data, enc.personal, erased=False,
                                position=position))
    return out


@st.composite
def steps(draw: st.DrawFn) -> list[tuple[str, Any, int]]:
    kinds = st.sampled_from([
        "propose", "revise", "restate", "agree", "agree", "agree", "agree", "agree", "decline", "withdraw",
        "change", "change", "accept", "accept", "decline_change", "withdraw_change",
        "pause", "resume", "close", "maintenance",
        "grant", "withdraw_consent", "measure", "measure", "add_member", "remove_member",
    ])
    first = [("propose", draw(st.sampled_from([CLIENT, CLINICIAN])), 0)]
    if draw(st.booleans()):  # half the runs start from an agreed goal, to exercise changes
        first += [("agree", CLIENT, 0), ("agree", CLINICIAN, 0)]
    rest = draw(st.lists(st.tuples(kinds, st.sampled_from(ACTORS), st.integers(0, 3)),
                         min_size=1, max_size=40))
    return [*first, *rest]


def build(kind: str, actor: Any, n: int, when: Any, goal: GoalState) -> Command:
    scope = list(ALL_SCOPES)[n % 3]
    mode = MODES.get(actor.role, "verbal_attested")
    match kind:
        case "propose":
            return goal_cmd(ProposeGoal, actor, when=when, text=f"goal {n}")
        case "revise":
            return goal_cmd(ReviseGoal, actor, when=when, text=f"revised {n}", pace=f"pace {n}")
        case "restate":
            return goal_cmd(RestateGoal, actor, when=when, client_words=f"my words {n}")
        case "agree":
            return goal_cmd(AgreeGoal, actor, when=when, version=max(goal.version - (n == 3), 1))
        case "decline":
            return goal_cmd(DeclineGoal, actor, when=when)
        case "withdraw":
            return goal_cmd(WithdrawGoal, actor, when=when)
        case "change":
            kind_ = ("target", "pace", "due_date", "pace")[n]
            return goal_cmd(ProposeChange, actor, when=when, change_id=CHANGE_IDS[n] if n < 2 else
                            UUID(int=100 + goal.version * 10 + n), kind=kind_, new_text=f"new {n}",
                            new_date=date(2025, 6, 1 + n))
        case "accept":
            return goal_cmd(AcceptChange, actor, when=when, change_id=_some_change(goal, n))
        case "decline_change":
            return goal_cmd(DeclineChange, actor, when=when, change_id=_some_change(goal, n))
        case "withdraw_change":
            return goal_cmd(WithdrawChange, actor, when=when, change_id=_some_change(goal, n))
        case "pause":
            return goal_cmd(PauseGoal, actor, when=when)
        case "resume":
            return goal_cmd(ResumeGoal, actor, when=when)
        case "close":
            return goal_cmd(CloseGoal, actor, when=when, outcome=("achieved", "not_achieved", "discontinued",
                                                                  "achieved")[n], reason="because")
        case "maintenance":
            return goal_cmd(StartMaintenance, actor, when=when)
        case "grant":
            return cmd(GrantConsent, actor, when=when, scope=scope, text_version="v1", mode=mode,
                       attestation_method="in_session")
        case "withdraw_consent":
            return cmd(WithdrawConsent, actor, when=when, scope=scope, mode=mode, attestation_method="phone")
        case "measure":
            reporter = ReportedBy(informant="self", channel="app") if actor.role is Role.CLIENT else \
                ReportedBy(informant="proxy", relationship="parent", channel="app") if actor.role is Role.PROXY \
                else ReportedBy(informant="clinician", channel="session")
            answers = {f"item{i}": min(n, 3) for i in range(1, 10)}
            return cmd(RecordMeasurement, actor, when=when, measurement_id=UUID(int=10_000 + int(when.timestamp())),
                       instrument_id="phq9", answers=answers, reported_by=reporter, observed_at=when)
        case "add_member":
            return cmd(AddCareTeamMember, actor, when=when, member_id=CLINICIAN_2.id)
        case "remove_member":
            return cmd(RemoveCareTeamMember, actor, when=when, member_id=CLINICIAN_2.id)
    raise AssertionError(kind)


def _some_change(goal: GoalState, n: int) -> UUID:
    ids = sorted(goal.changes, key=str) or CHANGE_IDS
    return ids[n % len(ids)]


CLIENT_COMMANDS = (GrantConsent, WithdrawConsent, RecordMeasurement, AddCareTeamMember, RemoveCareTeamMember)


def check_invariants(goal_events: list[EventPayload], client_events: list[EventPayload],
                     goal: GoalState, client: ClientState) -> None:
    # Active ⇒ both parties agreed to the current version.
    if goal.status in IN_PLAY:
        assert goal.client_agreed_version == goal.version == goal.clinician_agreed_version
    # Every applied change was accepted by the party who did not propose it.
    proposers = {e.change_id: e.party for e in goal_events if isinstance(e, ChangeProposed)}
    for e in goal_events:
        if isinstance(e, ChangeAccepted):
            assert proposers[e.change_id] != e.party
    # Replaying the stored events gives exactly the state the decider sees next.
    assert fold_goal(round_trip(goal_events)) == goal
    assert fold_client(round_trip(client_events)) == client


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps())
def test_random_command_sequences_keep_invariants(plan: list[tuple[str, Any, int]]) -> None:
    client_events: list[EventPayload] = [
        *enrolled(*ALL_SCOPES, team=[CLINICIAN_2, SUPERVISOR]),
        ProxyAuthorised(proxy_id=PROXY.id, basis="minor", by=CLINICIAN.id, by_role=Role.CLINICIAN)]
    goal_events: list[EventPayload] = []
    client, goal = fold_client(client_events), fold_goal(goal_events)
    when = T0
    for i, (kind, actor, n) in enumerate(plan):
        when = when + timedelta(minutes=1 + i % 7)
        command = build(kind, actor, n, when, goal)
        try:
            if isinstance(command, CLIENT_COMMANDS):
                emitted = decide_client(command, client, scorer=SCORER)  # type: ignore[arg-type]
            else:
                emitted = decide_goal(command, goal, client)  # type: ignore[arg-type]
        except AllianceError:
            continue
        assert emitted, "a decision that does not refuse records something"
        assert actor.role is not Role.AUDITOR
        if isinstance(command, CLIENT_COMMANDS):
            for e in emitted:
                if isinstance(e, MeasurementRecorded):
                    assert consent_in_force(client_events, ConsentScope.MEASUREMENT, command.at)
            client_events += emitted
            for e in emitted:
                client = evolve_client(client, e)
        else:
            if not isinstance(command, STOPPING_COMMANDS):
                assert consent_in_force(client_events, ConsentScope.GOAL_SETTING, command.at)
            for e in emitted:
                if isinstance(e, GoalAgreed):
                    if e.party == "client":
                        assert e.by == CLIENT_ID or e.by in client.proxies
                    else:
                        assert e.by in client.care_team
            goal_events += emitted
            for e in emitted:
                goal = evolve_goal(goal, e)
        check_invariants(goal_events, client_events, goal, client)
