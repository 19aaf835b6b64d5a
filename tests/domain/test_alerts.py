"""The alert policy's fold and the alert commands, without a database: given events in the
store's order, when the fold has caught up, then these decisions (and none twice)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

from msgspec.structs import replace

from alliance.core.alerts.events import ALERT_POLICY_ACTOR_ID, AlertAcknowledged, AlertRaised
from alliance.core.alerts.follower import registry_definitions
from alliance.core.alerts.policy import AlertPolicy
from alliance.core.client import (
    AcknowledgeAlert,
    ClientDischarged,
    MeasurementEnteredInError,
    MeasurementRecorded,
    RaiseAlert,
    ReportedBy,
    decide_client,
)
from alliance.core.clinic import AlertPolicySet, SetAlertPolicy, decide_clinic, evolve_clinic, initial_clinic_state
from alliance.core.events.base import EventPayload
from alliance.core.events.envelope import RecordedEvent
from alliance.core.identity import Actor, Role
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.domain.helpers import ADMIN, CLIENT, CLIENT_ID, CLINICIAN, T0, TENANT, cmd, enrolled, fold_client, raises

REGISTRY = InstrumentRegistry.from_plugin_manager(get_plugin_manager())
SYSTEM = Actor(id=ALERT_POLICY_ACTOR_ID, role=Role.SYSTEM)


class Log:
    """A client's events as the store would hand them to the policy, in order."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []

    def add(self, payload: EventPayload, *, stream: str = f"client-{CLIENT_ID}") -> RecordedEvent:
        n = len(self.events) + 1
        event = RecordedEvent(
            event_id=uuid.uuid4(), stream_id=stream, version=n, position=n, type=type(payload).type_name(),
            schema_version=1, tenant_id=TENANT, subject_id=CLIENT_ID, actor_id=CLIENT_ID, actor_role=Role.CLIENT,
            occurred_at=T0 + timedelta(minutes=n), recorded_at=T0 + timedelta(minutes=n), correlation_id=None,
            causation_id=None, key_id=None, hash_scheme=1, hash=b"", payload=payload, checkpoint=f"1.{n}")
        self.events.append(event)
        return event

    def phq9(self, total: float, *, week: int, instrument: str = "phq9") -> UUID:
        mid = uuid.uuid4()
        self.add(MeasurementRecorded(
            measurement_id=mid, instrument_id=instrument, instrument_version="1", fingerprint="f", answers={},
            scores={"total": total}, reported_by=ReportedBy(informant="self", channel="app"),
            observed_at=T0 + timedelta(weeks=week)))
        return mid

    def raised(self, alert: AlertRaised) -> None:
        self.add(alert)


def fold(log: Log, policy: AlertPolicy | None = None) -> AlertPolicy:
    policy = policy or AlertPolicy(registry_definitions(REGISTRY))
    policy.observe_all(log.events)
    return policy


def rules(policy: AlertPolicy) -> list[str]:
    return sorted(d.payload.rule for d in policy.pending.values())


def test_a_reliable_rise_raises_one_deterioration_alert_with_its_data() -> None:
    log = Log()
    base = log.phq9(8, week=0)
    log.phq9(10, week=1)
    assert rules(fold(log)) == []
    worse = log.phq9(14, week=2)  # +6: PHQ-9's reliable change threshold (NHS TT)
    policy = fold(log)
    [decision] = policy.take_pending()
    alert: Any = decision.payload
    assert (alert.rule, alert.baseline, alert.latest, alert.administrations) == ("reliable_deterioration", 8, 14, 3)
    assert (alert.baseline_measurement_id, alert.measurement_id) == (base, worse)
    assert alert.threshold == 6 and alert.weeks == 2 and "at least 6 points" in alert.criterion
    assert alert.by_role is Role.SYSTEM
    # still worse at the next one: the open alert covers it (no second alert)
    log.phq9(16, week=3)
    policy.observe_all(log.events[-1:])
    assert policy.take_pending() == []


def test_a_replay_that_meets_the_recorded_alert_decides_nothing_again() -> None:
    log = Log()
    log.phq9(8, week=0)
    log.phq9(15, week=1)
    [decision] = fold(log).take_pending()
    log.raised(decision.payload)  # what the follower recorded
    log.phq9(17, week=2)
    replay = fold(log)  # a restart folds everything from the start
    assert replay.take_pending() == []
    # the same decision has the same id on every replay (derived from the triggering event)
    log2 = Log()
    log2.events = log.events[:2]
    assert fold(log2).take_pending()[0].payload.alert_id == decision.payload.alert_id


def test_a_rule_that_stopped_holding_before_the_end_raises_nothing() -> None:
    log = Log()
    log.phq9(8, week=0)
    worse = log.phq9(15, week=1)
    log.add(MeasurementEnteredInError(measurement_id=worse, reason="wrong client", by=CLINICIAN.id,
                                      by_role=Role.CLINICIAN))
    assert fold(log).take_pending() == []
    log.phq9(9, week=2)
    log.phq9(16, week=3)  # holds again from a new event: a new alert
    assert rules(fold(log)) == ["reliable_deterioration"]


def test_after_acknowledgement_only_a_new_onset_raises_again() -> None:
    log = Log()
    log.phq9(8, week=0)
    log.phq9(15, week=1)
    [first] = fold(log).take_pending()
    log.raised(first.payload)
    log.add(AlertAcknowledged(alert_id=first.payload.alert_id, action_taken="called", acknowledged_at=T0,
                              by=CLINICIAN.id, by_role=Role.CLINICIAN))
    log.phq9(16, week=2)  # still deteriorated: the same episode, acknowledged
    assert fold(log).take_pending() == []
    log.phq9(10, week=3)  # back within reliable change
    log.phq9(15, week=4)  # and worse again: a new onset
    [second] = fold(log).take_pending()
    assert second.payload.alert_id != first.payload.alert_id


def test_no_reliable_improvement_after_the_clinics_administrations_or_weeks() -> None:
    log = Log()
    for week, total in enumerate((14, 13, 12, 13, 12, 12, 13)):
        log.phq9(total, week=week)
    assert rules(fold(log)) == []  # 7 administrations: fewer than the default 8
    log.phq9(12, week=7)
    policy = fold(log)
    [decision] = policy.take_pending()
    assert decision.payload.rule == "no_reliable_improvement"
    assert decision.payload.after_administrations == 8 and "Howard" in decision.payload.source
    # a clinic that sets 4 weeks hears at the fifth weekly administration
    short = Log()
    short.add(AlertPolicySet(tenant_id=TENANT, after_administrations=20, after_weeks=4, by=ADMIN.id,
                             by_role=Role.ADMIN), stream=f"clinic-{TENANT}")
    for week, total in enumerate((14, 13, 12, 13)):
        short.phq9(total, week=week)
    assert rules(fold(short)) == []
    short.phq9(12, week=4)
    assert rules(fold(short)) == ["no_reliable_improvement"]
    # a reliable improvement is not an alert
    better = Log()
    for week, total in enumerate((16, 14, 12, 10, 9, 8, 8, 7)):
        better.phq9(total, week=week)
    assert rules(fold(better)) == []


def test_instruments_no_rule_reads_and_discharged_clients_raise_nothing() -> None:
    log = Log()
    log.phq9(2, week=0, instrument="mood_diary")
    log.phq9(9, week=1, instrument="mood_diary")
    assert fold(log).clients[CLIENT_ID].series == {}  # no reliable change criterion, no curve: not kept
    log.phq9(8, week=0)
    log.add(ClientDischarged(episode_id=None, by=CLINICIAN.id, by_role=Role.CLINICIAN))
    log.phq9(20, week=3)  # self-monitoring after discharge: no treatment response to judge
    assert fold(log).take_pending() == []


def _alert(**changes: Any) -> AlertRaised:
    base = AlertRaised(alert_id=uuid.uuid4(), rule="reliable_deterioration", instrument_id="phq9",
                       instrument_version="1", baseline_measurement_id=uuid.uuid4(), measurement_id=uuid.uuid4(),
                       baseline=8, latest=15, baseline_observed_at=T0, latest_observed_at=T0, administrations=2,
                       weeks=1, criterion="c", raised_at=T0, by=SYSTEM.id, by_role=Role.SYSTEM)
    return replace(base, **changes)


def test_raise_is_the_policys_alone_and_acknowledge_is_the_care_teams() -> None:
    state = fold_client(enrolled())
    alert = _alert()
    raises("system_only", decide_client, cmd(RaiseAlert, CLINICIAN, alert=alert), state)
    assert decide_client(cmd(RaiseAlert, SYSTEM, alert=alert), state) == [alert]
    state = fold_client([*enrolled(), alert])
    raises("duplicate_id", decide_client, cmd(RaiseAlert, SYSTEM, alert=alert), state)
    ack = cmd(AcknowledgeAlert, CLINICIAN, alert_id=alert.alert_id, action_taken="Booked an extra session")
    raises("clinician_only", decide_client, replace(ack, actor=CLIENT), state)
    raises("alert_not_found", decide_client, replace(ack, alert_id=uuid.uuid4()), state)
    raises("action_taken_required", decide_client, replace(ack, action_taken=" "), state)
    [done] = decide_client(ack, state)
    assert isinstance(done, AlertAcknowledged) and done.by == CLINICIAN.id
    raises("alert_already_acknowledged", decide_client, ack, fold_client([*enrolled(), alert, done]))


def test_the_clinic_sets_when_no_improvement_alerts() -> None:
    from alliance.core.clinic import ActivateStaff, StaffActivated

    clinic = evolve_clinic(initial_clinic_state(TENANT), StaffActivated(
        tenant_id=TENANT, staff_id=ADMIN.id, role=Role.ADMIN, by=ADMIN.id, by_role=Role.ADMIN))
    assert clinic.alert_after_administrations == 8 and clinic.alert_after_weeks is None
    raises("alert_administrations_out_of_range", decide_clinic, cmd(SetAlertPolicy, ADMIN, after_administrations=1),
           clinic)
    raises("alert_weeks_out_of_range", decide_clinic, cmd(SetAlertPolicy, ADMIN, after_weeks=0), clinic)
    raises("admin_only", decide_clinic, cmd(SetAlertPolicy, CLINICIAN, after_administrations=6), clinic)
    [event] = decide_clinic(cmd(SetAlertPolicy, ADMIN, after_administrations=6, after_weeks=10), clinic)
    clinic = evolve_clinic(clinic, event)
    assert (clinic.alert_after_administrations, clinic.alert_after_weeks) == (6, 10)
    assert ActivateStaff  # the clinic's other commands are untouched


def test_a_decision_given_back_is_decided_again_and_a_refused_one_is_not_open() -> None:
    log = Log()
    log.phq9(8, week=0)
    log.phq9(15, week=1)
    policy = fold(log)
    [decision] = policy.take_pending()
    assert policy.take_pending() == []  # taken once
    policy.give_back(decision)  # the store was down: next round
    assert policy.take_pending() == [decision]
    policy.forget(decision)  # refused (discharged meanwhile): the rule may alert again later
    assert policy.clients[CLIENT_ID].open_alerts == {}
