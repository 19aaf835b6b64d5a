"""Building realistic client and goal histories for projection tests and benchmarks."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from alliance.core.catalog import ALL_EVENT_TYPES
from alliance.core.client import (
    ClientEnrolled,
    ClientErased,
    ErasureRequested,
    FeedbackGiven,
    MeasurementEnteredInError,
    MeasurementRecorded,
    RelapsePreventionPlanUpdated,
    ReportedBy,
    RiskFlagAcknowledged,
    RiskFlagRaised,
    client_stream,
)
from alliance.core.consent import ConsentGranted, ConsentScope, ConsentWithdrawn
from alliance.core.events.base import EventPayload
from alliance.core.events.codec import EventCodec
from alliance.core.events.envelope import NewEvent
from alliance.core.goal import (
    AttainmentScaleSet,
    BarrierNoted,
    ChangeAccepted,
    ChangeProposed,
    CheckpointScheduled,
    ContingencyPlanned,
    GoalActivated,
    GoalAgreed,
    GoalProposed,
    GoalRevised,
    MeasureAttached,
    MilestoneAdded,
    ResourceNoted,
    ReviewRecorded,
    goal_stream,
)
from alliance.core.identity import Role
from alliance.core.schedules import parse_free_text

#: The free text measures were attached with, read as a schedule (``goal.measure_attached`` v2).
MONTHLY_SCHEDULE = parse_free_text("monthly", start=date(2026, 1, 5))
WEEKLY_SCHEDULE = parse_free_text("weekly", start=date(2026, 1, 5))


def domain_codec() -> EventCodec:
    return EventCodec(ALL_EVENT_TYPES)


class Client:
    """One client's streams with their versions; ``events()`` drains what was built."""

    def __init__(self, tenant: UUID | None = None, client: UUID | None = None, *, canary: str = "",
                 t0: datetime | None = None) -> None:
        self.tenant = tenant or uuid.uuid4()
        self.client = client or uuid.uuid4()
        self.clinician = uuid.uuid4()
        self.canary = canary
        self.t = t0 or datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
        self.versions: dict[str, int] = {}
        self.pending: list[tuple[str, NewEvent]] = []
        self.goals: list[UUID] = []
        self.goal_versions: dict[UUID, int] = {}
        self.measurements: list[UUID] = []

    def text(self, words: str) -> str:
        return f"{words} {self.canary}".strip()

    def _add(self, stream: str, payload: EventPayload, *, role: Role = Role.CLINICIAN, actor: UUID | None = None
             ) -> None:
        self.t += timedelta(minutes=7)
        actor = actor or (self.client if role in (Role.CLIENT, Role.PROXY) else self.clinician)
        self.pending.append((stream, NewEvent(event_id=uuid.uuid4(), payload=payload, tenant_id=self.tenant,
                                              subject_id=self.client, actor_id=actor, actor_role=role,
                                              occurred_at=self.t)))

    def by(self, role: Role = Role.CLINICIAN) -> dict[str, Any]:
        return {"by": self.client if role is Role.CLIENT else self.clinician, "by_role": role}

    @property
    def stream(self) -> str:
        return client_stream(self.client)

    # --- client stream
    def enrol(self) -> Client:
        self._add(self.stream, ClientEnrolled(client_id=self.client, tenant_id=self.tenant, episode_id=uuid.uuid4(),
                                              primary_clinician_id=self.clinician, **self.by()))
        for scope in ConsentScope:
            self._add(self.stream, ConsentGranted(scope=scope, text_version="v1", mode="self",
                                                  effective_at=self.t, **self.by(Role.CLIENT)), role=Role.CLIENT)
        return self

    def withdraw(self, scope: ConsentScope) -> Client:
        self._add(self.stream, ConsentWithdrawn(scope=scope, mode="self", effective_at=self.t + timedelta(minutes=7),
                                                **self.by(Role.CLIENT)), role=Role.CLIENT)
        return self

    def measure(self, total: float, *, instrument: str = "phq9", goal: UUID | None = None,
                observed: datetime | None = None, risk: bool = False) -> UUID:
        mid = uuid.uuid4()
        self._add(self.stream, MeasurementRecorded(
            measurement_id=mid, instrument_id=instrument, instrument_version="1", fingerprint="x",
            answers={"q1": 1}, free_text={"note": self.text("felt low")}, scores={"total": float(total)},
            band=None, reported_by=ReportedBy(informant="self", channel="app"), observed_at=observed or self.t,
            goal_ids=(goal,) if goal else ()), role=Role.CLIENT)
        if risk:
            self._add(self.stream, RiskFlagRaised(flag_id=uuid.uuid4(), source="measurement", measurement_id=mid,
                                                  items=("phq9.q9",), raised_by=self.client,
                                                  raised_by_role=Role.CLIENT, raised_at=self.t), role=Role.SYSTEM)
        self.measurements.append(mid)
        return mid

    def in_error(self, mid: UUID) -> None:
        self._add(self.stream, MeasurementEnteredInError(measurement_id=mid, reason=self.text("wrong form"),
                                                         **self.by()))

    def acknowledge_last_flag(self, flag: UUID) -> None:
        self._add(self.stream, RiskFlagAcknowledged(flag_id=flag, action_taken=self.text("called"),
                                                    acknowledged_at=self.t, **self.by()))

    def feedback(self) -> None:
        self._add(self.stream, FeedbackGiven(feedback_id=uuid.uuid4(), text=self.text("this helps"), rating=7,
                                             resonates=(self.text("walks"),), **self.by(Role.CLIENT)),
                  role=Role.CLIENT)

    def relapse_plan(self, version: int = 1) -> None:
        self._add(self.stream, RelapsePreventionPlanUpdated(
            plan_version=version, warning_signs=(self.text("sleeping late"),), actions=(self.text("call Sam"),),
            supports=(self.text("sister"),), **self.by(Role.CLIENT)), role=Role.CLIENT)

    def erase(self) -> None:
        rid = uuid.uuid4()
        admin = uuid.uuid4()
        self._add(self.stream, ErasureRequested(request_id=rid, by=self.client, by_role=Role.CLIENT),
                  role=Role.CLIENT)
        self._add(self.stream, ClientErased(request_id=rid, by=admin, by_role=Role.ADMIN), role=Role.ADMIN,
                  actor=admin)

    # --- goal streams
    def goal(self, *, instrument: str = "phq9", activate: bool = True) -> UUID:
        gid = uuid.uuid4()
        s = goal_stream(gid)
        self.goals.append(gid)
        self._add(s, GoalProposed(goal_id=gid, client_id=self.client, tenant_id=self.tenant, author_party="client",
                                  client_words=self.text("sleep better"), facets={"target": self.text("7 hours")},
                                  due_date=date(2025, 6, 1), **self.by(Role.CLIENT)), role=Role.CLIENT)
        self._add(s, GoalRevised(version=2, party="clinician", statement=self.text("Improve sleep duration"),
                                 client_words=self.text("sleep better"),
                                 facets={"target": self.text("7 hours"), "measure": "sleep diary"},
                                 due_date=date(2025, 6, 1), **self.by()))
        self.goal_versions[gid] = 2
        self._add(s, MilestoneAdded(milestone_id=uuid.uuid4(), description=self.text("bed by 11"),
                                    provisional_date=date(2025, 3, 10), **self.by()))
        self._add(s, CheckpointScheduled(checkpoint_id=uuid.uuid4(), provisional_date=date(2025, 4, 1),
                                         **self.by()))
        bid = uuid.uuid4()
        self._add(s, BarrierNoted(barrier_id=bid, text=self.text("night shifts"), **self.by(Role.CLIENT)),
                  role=Role.CLIENT)
        self._add(s, ContingencyPlanned(contingency_id=uuid.uuid4(), trigger=self.text("if late shift"),
                                        response=self.text("nap"), barrier_id=bid, **self.by(Role.CLIENT)),
                  role=Role.CLIENT)
        self._add(s, ResourceNoted(resource_id=uuid.uuid4(), text=self.text("my dog"), **self.by(Role.CLIENT)),
                  role=Role.CLIENT)
        self._add(s, MeasureAttached(instrument_id=instrument, schedule=WEEKLY_SCHEDULE, **self.by()))
        if activate:
            self._add(s, GoalAgreed(goal_id=gid, version=2, party="client", **self.by(Role.CLIENT)), role=Role.CLIENT)
            self._add(s, GoalAgreed(goal_id=gid, version=2, party="clinician", **self.by()))
            self._add(s, GoalActivated(version=2), role=Role.SYSTEM)
        return gid

    def attainment(self, gid: UUID) -> None:
        self._add(goal_stream(gid), AttainmentScaleSet(levels=tuple(self.text(f"level {i}") for i in range(-2, 3)),
                                                       **self.by(Role.CLIENT)), role=Role.CLIENT)
        self._add(goal_stream(gid), MeasureAttached(instrument_id="gas", schedule=MONTHLY_SCHEDULE, **self.by()))

    def propose_change(self, gid: UUID, *, accept: bool) -> None:
        cid = uuid.uuid4()
        self._add(goal_stream(gid), ChangeProposed(change_id=cid, kind="target", party="clinician",
                                                   base_version=self.goal_versions[gid],
                                                   new_text=self.text("6 hours"), **self.by()))
        if accept:
            self.goal_versions[gid] += 1
            self._add(goal_stream(gid), ChangeAccepted(change_id=cid, party="client",
                                                       new_version=self.goal_versions[gid],
                                                       **self.by(Role.CLIENT)), role=Role.CLIENT)

    def review(self, gid: UUID) -> None:
        self._add(goal_stream(gid), ReviewRecorded(review_id=uuid.uuid4(), outcome="celebrate",
                                                   client_view=self.text("proud"), **self.by()))

    def typical(self, *, measurements: int = 4) -> Client:
        """An enrolled client with an active goal, a GAS scale and a few measurements."""
        self.enrol()
        gid = self.goal()
        self.attainment(gid)
        for i in range(measurements):
            self.measure(18 - 3 * i, goal=gid)
        self.measure(0, instrument="gas", goal=gid)
        self.feedback()
        self.review(gid)
        self.propose_change(gid, accept=True)
        self.relapse_plan()
        return self

    async def flush(self, store: Any) -> str:
        """Append what was built, stream by stream in order; returns the last checkpoint."""
        batch: list[NewEvent] = []
        current: str | None = None
        last = ""
        for stream, event in [*self.pending, (None, None)]:  # type: ignore[list-item]
            if stream != current and batch:
                assert current is not None
                result = await store.append(current, batch, self.versions.get(current, 0))
                self.versions[current] = result.version
                last = result.checkpoint
                batch = []
            current = stream
            if event is not None:
                batch.append(event)
        self.pending = []
        return last
