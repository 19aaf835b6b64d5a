"""The generic command handler against the real store (and the in-memory one).

load → fold → decide → append with the expected version; goal commands assert the
client stream unchanged; bounded re-decide on conflict; ``if_match`` → no re-decide;
event ids derived from the command id so a retried command is recorded once.

Every test uses fresh tenant / client / staff ids: the database is shared by the run.
Races use a barrier in front of the store's append so every racer has loaded (and
decided) before any of them appends: the loser always meets a version conflict.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import pytest

from alliance.core.catalog import ALL_EVENT_TYPES
from alliance.core.client import (
    AddCareTeamMember,
    CareTeamMemberRemoved,
    EnrollClient,
    GrantConsent,
    MeasurementRecorded,
    RecordMeasurement,
    RecordNote,
    RemoveCareTeamMember,
    ReportedBy,
    WithdrawConsent,
    client_stream,
)
from alliance.core.clinic import ActivateStaff
from alliance.core.consent import ConsentGranted, ConsentScope, ConsentWithdrawn, consent_in_force
from alliance.core.errors import AllianceError, ConcurrencyConflict, PreconditionFailed
from alliance.core.events.codec import EventCodec
from alliance.core.events.crypto import MemoryKeyRing, PostgresKeyRing
from alliance.core.events.envelope import derive_event_id
from alliance.core.events.memory import MemoryEventStore
from alliance.core.events.postgres import PostgresEventStore
from alliance.core.events.store import parse_checkpoint
from alliance.core.goal import (
    AgreeGoal,
    GoalAgreed,
    GoalProposed,
    GoalReflected,
    GoalRevised,
    GoalState,
    GoalStatus,
    ProposeGoal,
    ReflectGoal,
    ReviseGoal,
    goal_stream,
)
from alliance.core.handling import CommandHandler, Outcome
from alliance.core.identity import Actor, Role
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager
from tests.database import TEST_KEK

#: Measurements are scored by the installed instruments (handed to every handler).
SCORER = InstrumentRegistry.from_plugin_manager(get_plugin_manager()).score

C = TypeVar("C")

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
SCOPES = (ConsentScope.GOAL_SETTING, ConsentScope.MEASUREMENT, ConsentScope.CARE_TEAM_SHARING)


# --- stores -----------------------------------------------------------------------------

@pytest.fixture(params=["memory", "postgres"])
async def store(request: pytest.FixtureRequest, app_pool: Any, database: Any) -> AsyncIterator[Any]:
    codec = EventCodec(ALL_EVENT_TYPES)
    if request.param == "memory":
        yield MemoryEventStore(codec, MemoryKeyRing())
    else:
        pg = PostgresEventStore(app_pool, codec, PostgresKeyRing(app_pool, TEST_KEK), dsn=database.app_dsn)
        yield pg
        await pg.close()


@pytest.fixture
async def pg_store(app_pool: Any, database: Any) -> AsyncIterator[PostgresEventStore]:
    pg = PostgresEventStore(app_pool, EventCodec(ALL_EVENT_TYPES), PostgresKeyRing(app_pool, TEST_KEK),
                            dsn=database.app_dsn)
    yield pg
    await pg.close()


class GatedStore:
    """Delegates to a store; before its first append it waits at a shared barrier and/or
    runs a hook (a write that lands between this handler's load and its append)."""

    def __init__(self, inner: Any, *, barrier: asyncio.Barrier | None = None,
                 before_first_append: Callable[[], Awaitable[object]] | None = None) -> None:
        self._inner = inner
        self._barrier = barrier
        self._hook = before_first_append
        self._gated = False
        self.appends = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def _gate(self) -> None:
        self.appends += 1
        if self._gated:
            return
        self._gated = True
        if self._barrier is not None:
            async with asyncio.timeout(10):
                await self._barrier.wait()
        if self._hook is not None:
            await self._hook()

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        await self._gate()
        return await self._inner.append(*args, **kwargs)

    async def append_many(self, *args: Any, **kwargs: Any) -> Any:
        await self._gate()
        return await self._inner.append_many(*args, **kwargs)


Run = Callable[[CommandHandler], Awaitable[Outcome]]


def on_goal(command: Any) -> Run:
    return lambda h: h.handle_goal(command)


def on_client(client_id: UUID, command: Any) -> Run:
    return lambda h: h.handle_client(client_id, command)


async def race(store: Any, *runs: Run) -> list[Outcome | BaseException]:
    """Run the commands at once; every one loads and decides before any appends."""
    barrier = asyncio.Barrier(len(runs))
    handlers = [CommandHandler(GatedStore(store, barrier=barrier), scorer=SCORER) for _ in runs]
    return await asyncio.gather(*(run(h) for run, h in zip(runs, handlers, strict=True)),
                                return_exceptions=True)


# --- a clinic, a client, consents -------------------------------------------------------

@dataclass
class World:
    store: Any
    handler: CommandHandler
    tenant: UUID
    admin: Actor
    clinician: Actor  # primary
    clinician2: Actor  # on the care team, not primary
    client: Actor
    _clock: Iterator[int] = field(default_factory=itertools.count)

    @property
    def client_id(self) -> UUID:
        return self.client.id

    def tick(self) -> datetime:
        return T0 + timedelta(seconds=next(self._clock))

    def cmd(self, cls: type[C], actor: Actor, *, at: datetime | None = None, **fields: Any) -> C:
        return cls(command_id=uuid.uuid4(), actor=actor, at=at or self.tick(),  # type: ignore[call-arg]
                   tenant_id=self.tenant, **fields)

    def goal_cmd(self, cls: type[C], actor: Actor, goal_id: UUID, **fields: Any) -> C:
        return self.cmd(cls, actor, goal_id=goal_id, client_id=self.client_id, **fields)

    def measurement(self, *, at: datetime) -> RecordMeasurement:
        return self.cmd(RecordMeasurement, self.client, at=at, measurement_id=uuid.uuid4(),
                        instrument_id="phq9", answers={f"item{n}": 1 for n in range(1, 9)} | {"item9": 0},
                        reported_by=ReportedBy(informant="self", channel="app"), observed_at=at)

    async def goal(self, goal_id: UUID) -> tuple[GoalState, int]:
        loaded = await self.handler.load_goal(goal_id)
        return loaded.state, loaded.version


def new_actor(role: Role) -> Actor:
    return Actor(id=uuid.uuid4(), role=role)


async def setup_world(store: Any, *, scopes: tuple[ConsentScope, ...] = SCOPES) -> World:
    """Bootstrap a clinic, activate two clinicians, enrol a client, grant consents and add
    the second clinician to the care team."""
    handler = CommandHandler(store, scorer=SCORER)
    w = World(store, handler, uuid.uuid4(), new_actor(Role.ADMIN), new_actor(Role.CLINICIAN),
              new_actor(Role.CLINICIAN), new_actor(Role.CLIENT))
    system = new_actor(Role.SYSTEM)
    await handler.handle_clinic(w.cmd(ActivateStaff, system, staff_id=w.admin.id, role=Role.ADMIN))
    for staff in (w.clinician, w.clinician2):
        await handler.handle_clinic(w.cmd(ActivateStaff, w.admin, staff_id=staff.id, role=Role.CLINICIAN))
    await handler.handle_client(w.client_id, w.cmd(EnrollClient, w.admin, client_id=w.client_id,
                                                   episode_id=uuid.uuid4(),
                                                   primary_clinician_id=w.clinician.id))
    for scope in scopes:
        await handler.handle_client(w.client_id, w.cmd(GrantConsent, w.client, scope=scope,
                                                       text_version="v1", mode="self"))
    if ConsentScope.CARE_TEAM_SHARING in scopes:
        await handler.handle_client(w.client_id, w.cmd(AddCareTeamMember, w.clinician,
                                                       member_id=w.clinician2.id))
    return w


async def proposed_goal(w: World, *, by: Actor | None = None, text: str = "Walk to the park") -> UUID:
    goal_id = uuid.uuid4()
    await w.handler.handle_goal(w.goal_cmd(ProposeGoal, by or w.client, goal_id, text=text))
    return goal_id


def assert_recorded_by(outcome: Outcome, command: Any) -> None:
    """The outcome's events are the command's, with derived ids and the command as cause."""
    assert outcome.events, "nothing recorded"
    assert [e.event_id for e in outcome.events] == [derive_event_id(command.command_id, i)
                                                    for i in range(len(outcome.events))]
    assert all(e.causation_id == command.command_id for e in outcome.events)
    assert all(e.actor_id == command.actor.id and e.actor_role == command.actor.role for e in outcome.events)
    assert all(e.tenant_id == command.tenant_id and e.occurred_at == command.at for e in outcome.events)
    versions = [e.version for e in outcome.events]
    assert versions == list(range(versions[0], versions[0] + len(versions)))
    assert outcome.version == versions[-1]


def code_of(result: Outcome | BaseException) -> str | None:
    return result.code if isinstance(result, AllianceError) else None


def unexpected(results: list[Outcome | BaseException]) -> list[BaseException]:
    return [r for r in results if isinstance(r, BaseException) and not isinstance(r, AllianceError)]


def check_active_invariant(goal: GoalState) -> None:
    if goal.status in (GoalStatus.ACTIVE, GoalStatus.PAUSED, GoalStatus.MAINTENANCE):
        assert goal.both_agreed_current, goal
        assert goal.activated_version == goal.version


# --- 1. the happy path ------------------------------------------------------------------

async def test_happy_path_from_enrolment_to_an_active_goal(store: Any) -> None:
    w = await setup_world(store)
    client_events = await store.read_stream(f"client-{w.client_id}")
    assert [e.type for e in client_events] == [
        "client.enrolled", "consent.granted", "consent.granted", "consent.granted", "care_team.member_added"]
    assert all(e.subject_id == w.client_id for e in client_events)
    assert [e.version for e in client_events] == [1, 2, 3, 4, 5]

    goal_id = uuid.uuid4()
    propose = w.goal_cmd(ProposeGoal, w.client, goal_id, text="I want to walk to the park on Sundays")
    out = await w.handler.handle_goal(propose)
    assert_recorded_by(out, propose)
    assert out.stream_id == goal_stream(goal_id) and out.version == 1 and not out.duplicate
    assert isinstance(out.events[0].payload, GoalProposed)
    assert out.events[0].payload.client_words == "I want to walk to the park on Sundays"
    assert out.events[0].subject_id == w.client_id  # goal events are about the client

    reflect = w.goal_cmd(ReflectGoal, w.clinician, goal_id, reflection="Getting outside matters to you")
    out = await w.handler.handle_goal(reflect)
    assert_recorded_by(out, reflect)
    assert out.version == 2 and isinstance(out.events[0].payload, GoalReflected)

    revise = w.goal_cmd(ReviseGoal, w.client, goal_id, text="Walk to the park every Sunday morning",
                        facets={"measure": "Sundays walked"})
    out = await w.handler.handle_goal(revise)
    assert_recorded_by(out, revise)
    assert out.version == 3 and isinstance(out.events[0].payload, GoalRevised)
    assert out.events[0].payload.version == 2  # the goal's own version, not the stream's

    agree_client = w.goal_cmd(AgreeGoal, w.client, goal_id, version=2)
    out = await w.handler.handle_goal(agree_client)
    assert_recorded_by(out, agree_client)
    assert [e.type for e in out.events] == ["goal.agreed"] and out.version == 4

    agree_clinician = w.goal_cmd(AgreeGoal, w.clinician2, goal_id, version=2)
    out = await w.handler.handle_goal(agree_clinician)
    assert_recorded_by(out, agree_clinician)
    assert [e.type for e in out.events] == ["goal.agreed", "goal.activated"]
    assert [e.version for e in out.events] == [5, 6] and out.version == 6

    goal, version = await w.goal(goal_id)
    assert version == 6
    assert goal.status is GoalStatus.ACTIVE and goal.both_agreed_current and goal.version == 2
    assert goal.client_words == "Walk to the park every Sunday morning"
    assert goal.clinician_agreed_by == w.clinician2.id
    # the goal commands wrote nothing to the client stream (they only asserted it)
    assert await store.stream_version(f"client-{w.client_id}") == 5


async def test_a_refused_command_writes_nothing(store: Any) -> None:
    w = await setup_world(store, scopes=(ConsentScope.MEASUREMENT,))
    with pytest.raises(AllianceError) as info:
        await w.handler.handle_goal(w.goal_cmd(ProposeGoal, w.client, uuid.uuid4(), text="Sleep better"))
    assert info.value.code == "consent_not_in_force"
    outsider = new_actor(Role.CLINICIAN)
    goal_id = uuid.uuid4()
    with pytest.raises(AllianceError) as info:
        await w.handler.handle_goal(w.goal_cmd(ProposeGoal, outsider, goal_id, text="Sleep better"))
    assert info.value.code in ("consent_not_in_force", "not_on_care_team")
    assert await store.stream_version(goal_stream(goal_id)) == 0


# --- 2. concurrent conflicting commands on one goal -------------------------------------

async def test_agreement_racing_a_revision_exactly_one_wins(store: Any) -> None:
    w = await setup_world(store)
    outcomes: set[str] = set()
    for round_ in range(10):
        goal_id = await proposed_goal(w)
        await w.handler.handle_goal(w.goal_cmd(AgreeGoal, w.client, goal_id, version=1))
        agree = w.goal_cmd(AgreeGoal, w.clinician, goal_id, version=1)
        revise = w.goal_cmd(ReviseGoal, w.client, goal_id, text="Walk to the park twice a week")
        runs: list[Run] = [on_goal(agree), on_goal(revise)]
        if round_ % 2:
            runs.reverse()
        results = await race(store, *runs)
        if round_ % 2:
            results.reverse()
        assert not unexpected(results), results
        agreed, revised = results
        goal, version = await w.goal(goal_id)
        check_active_invariant(goal)
        if isinstance(agreed, Outcome):
            # the agreement won: the goal is active at version 1, the revision is refused
            assert code_of(revised) == "change_proposal_required", revised
            assert goal.status is GoalStatus.ACTIVE and goal.version == 1
            assert [e.type for e in agreed.events] == ["goal.agreed", "goal.activated"]
            outcomes.add("agreed")
        else:
            # the revision won: the agreement was to a version that no longer exists
            assert code_of(agreed) == "stale_version", agreed
            assert isinstance(revised, Outcome)
            assert goal.status is GoalStatus.PROPOSED and goal.version == 2
            assert goal.client_agreed_version == 1 and goal.clinician_agreed_version is None
            outcomes.add("revised")
        types = [e.type for e in await store.read_stream(goal_stream(goal_id))]
        assert len(types) == version
        assert types in (["goal.proposed", "goal.agreed", "goal.revised"],  # only the winner's
                         ["goal.proposed", "goal.agreed", "goal.agreed", "goal.activated"])
    assert outcomes  # at least one round decided something


async def test_both_parties_agreeing_at_once_activates_once(store: Any) -> None:
    w = await setup_world(store)
    for round_ in range(10):
        goal_id = await proposed_goal(w)
        by_client = w.goal_cmd(AgreeGoal, w.client, goal_id, version=1)
        by_clinician = w.goal_cmd(AgreeGoal, w.clinician, goal_id, version=1)
        runs: list[Run] = [on_goal(by_client), on_goal(by_clinician)]
        if round_ % 2:
            runs.reverse()
        results = await race(store, *runs)
        assert all(isinstance(r, Outcome) for r in results), results  # the loser was safely re-decided
        events = await store.read_stream(goal_stream(goal_id))
        types = [e.type for e in events]
        # without the expected version both would record "agreed" and nobody "activated"
        assert types == ["goal.proposed", "goal.agreed", "goal.agreed", "goal.activated"], types
        assert {e.payload.party for e in events if isinstance(e.payload, GoalAgreed)} == {"client", "clinician"}
        goal, _ = await w.goal(goal_id)
        assert goal.status is GoalStatus.ACTIVE
        check_active_invariant(goal)


async def test_two_revisions_racing_both_land_no_lost_write(store: Any) -> None:
    w = await setup_world(store)
    for round_ in range(10):
        goal_id = await proposed_goal(w, text="Walk more")
        by_client = w.goal_cmd(ReviseGoal, w.client, goal_id, text="Walk to the park on Sundays")
        by_clinician = w.goal_cmd(ReviseGoal, w.clinician, goal_id, text="Walk 30 minutes, weekly",
                                  pace="start with one walk")
        runs: list[Run] = [on_goal(by_client), on_goal(by_clinician)]
        if round_ % 2:
            runs.reverse()
        results = await race(store, *runs)
        assert all(isinstance(r, Outcome) for r in results), results
        revisions = [e.payload for e in await store.read_stream(goal_stream(goal_id))
                     if isinstance(e.payload, GoalRevised)]
        assert [r.version for r in revisions] == [2, 3]  # each on top of the other: no fork
        goal, _ = await w.goal(goal_id)
        # both parties' words survive: the loser revised on top of the winner's version
        assert goal.version == 3
        assert goal.client_words == "Walk to the park on Sundays"
        assert goal.statement == "Walk 30 minutes, weekly" and goal.pace == "start with one walk"
        # and an agreement to the superseded version is refused
        with pytest.raises(AllianceError) as info:
            await w.handler.handle_goal(w.goal_cmd(AgreeGoal, w.client, goal_id, version=2))
        assert info.value.code == "stale_version"


async def test_conflicts_beyond_the_bound_are_reported(store: Any) -> None:
    """A stream that keeps moving under the command: the handler gives up after max_attempts,
    or when its time budget is spent."""
    w = await setup_world(store)
    goal_id = await proposed_goal(w)
    gated = GatedStore(store)

    async def interfere(*args: Any, **kwargs: Any) -> Any:
        gated.appends += 1
        await w.handler.handle_goal(w.goal_cmd(ReflectGoal, w.clinician2, goal_id, reflection="again"))
        return await store.append_many(*args, **kwargs)

    gated.append_many = interfere  # type: ignore[method-assign]
    handler = CommandHandler(gated, max_attempts=3, scorer=SCORER)
    reflect = w.goal_cmd(ReflectGoal, w.clinician, goal_id, reflection="mine")
    with pytest.raises(ConcurrencyConflict) as info:
        await handler.handle_goal(reflect)
    assert gated.appends == 3
    assert await store.read_event(derive_event_id(reflect.command_id, 0)) is None
    # not an answer about the command (it is still valid): the API says "retry" and never stores it
    assert info.value.retry_after == 1

    # without a count, a time budget bounds the re-decides (backing off between them)
    gated.appends = 0
    budgeted = CommandHandler(gated, budget_seconds=0.3, scorer=SCORER)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ConcurrencyConflict) as info:
        await budgeted.handle_goal(w.goal_cmd(ReflectGoal, w.clinician, goal_id, reflection="mine too"))
    assert 0.2 < loop.time() - started < 2.0
    assert gated.appends > 3 and info.value.retry_after == 1


# --- 3. consent withdrawal racing a measurement -----------------------------------------

def assert_no_measurement_without_consent(events: list[Any]) -> None:
    in_force = False
    for e in events:
        p = e.payload
        if isinstance(p, ConsentGranted) and p.scope == ConsentScope.MEASUREMENT:
            in_force = True
        elif isinstance(p, ConsentWithdrawn) and p.scope == ConsentScope.MEASUREMENT:
            in_force = False
        elif isinstance(p, MeasurementRecorded):
            assert in_force, f"measurement recorded at version {e.version} after consent was withdrawn"


async def test_consent_withdrawal_racing_a_measurement(store: Any) -> None:
    w = await setup_world(store, scopes=(ConsentScope.MEASUREMENT,))
    seen: set[str] = set()
    for round_ in range(16):
        if round_:  # re-grant for the next round
            await w.handler.handle_client(w.client_id, w.cmd(GrantConsent, w.client,
                                                             scope=ConsentScope.MEASUREMENT,
                                                             text_version="v1", mode="self"))
        at = w.tick()  # both arrive at the same moment
        withdraw = w.cmd(WithdrawConsent, w.client, at=at, scope=ConsentScope.MEASUREMENT, mode="self")
        measure = w.measurement(at=at)
        runs: list[Run] = [on_client(w.client_id, withdraw),
                           on_client(w.client_id, measure)]
        if round_ % 2:
            runs.reverse()
        results = await race(store, *runs)
        if round_ % 2:
            results.reverse()
        assert not unexpected(results), results
        withdrawn, measured = results
        assert isinstance(withdrawn, Outcome), withdrawn  # a withdrawal is never refused here
        if isinstance(measured, Outcome):
            assert measured.version < withdrawn.version  # it succeeded before the withdrawal
            seen.add("measured first")
        else:
            assert code_of(measured) == "consent_not_in_force", measured
            assert await store.read_event(derive_event_id(measure.command_id, 0)) is None
            seen.add("refused")
    assert_no_measurement_without_consent(await store.read_stream(f"client-{w.client_id}"))
    assert seen


async def test_a_withdrawal_that_lost_the_race_is_not_backdated_before_a_recorded_measurement(store: Any) -> None:
    """The withdrawal arrived (``at``) a moment before a measurement but is appended after it
    (the measurement lands between the withdrawal's load and append; the withdrawal is
    re-decided). Either it is refused or re-timed, or the history says the measurement was
    recorded while consent was not in force."""
    w = await setup_world(store, scopes=(ConsentScope.MEASUREMENT,))
    t = w.tick()
    withdraw = w.cmd(WithdrawConsent, w.client, at=t, scope=ConsentScope.MEASUREMENT, mode="self")
    measure = w.measurement(at=t + timedelta(milliseconds=5))

    async def measurement_lands() -> None:
        await w.handler.handle_client(w.client_id, measure)

    gated = GatedStore(store, before_first_append=measurement_lands)
    with contextlib.suppress(AllianceError):  # refusing the late withdrawal would keep the rule
        await CommandHandler(gated, scorer=SCORER).handle_client(w.client_id, withdraw)
    events = await store.read_stream(f"client-{w.client_id}")
    history = [e.payload for e in events]
    for e in events:
        if isinstance(e.payload, MeasurementRecorded):
            assert consent_in_force(history, ConsentScope.MEASUREMENT, e.occurred_at), (
                "history now says the measurement was recorded while consent was not in force")


# --- 4. a clinician removed from the care team racing their agreement ------------------

async def test_removed_clinician_never_agrees_after_removal(store: Any) -> None:
    seen: set[str] = set()
    for round_ in range(10):
        w = await setup_world(store)
        goal_id = await proposed_goal(w)
        agree = w.goal_cmd(AgreeGoal, w.clinician2, goal_id, version=1)
        remove = w.cmd(RemoveCareTeamMember, w.clinician, member_id=w.clinician2.id)
        runs: list[Run] = [on_goal(agree), on_client(w.client_id, remove)]
        if round_ % 2:
            runs.reverse()
        results = await race(store, *runs)
        if round_ % 2:
            results.reverse()
        assert not unexpected(results), results
        agreed, removed = results
        assert isinstance(removed, Outcome), removed  # the removal is never refused here
        removal = next(e for e in removed.events if isinstance(e.payload, CareTeamMemberRemoved))
        agreements = [e for e in await store.read_stream(goal_stream(goal_id))
                      if isinstance(e.payload, GoalAgreed) and e.payload.by == w.clinician2.id]
        if isinstance(agreed, Outcome):
            assert len(agreements) == 1
            # the agreement comes before the removal in the global order, (transaction, position):
            # positions alone are taken in no particular order by concurrent writers
            assert parse_checkpoint(agreements[0].checkpoint) < parse_checkpoint(removal.checkpoint)
            seen.add("agreed first")
        else:
            assert code_of(agreed) == "not_on_care_team", agreed
            assert agreements == []
            seen.add("refused")
        # after the removal the clinician is refused, whatever happened in the race
        with pytest.raises(AllianceError) as info:
            await w.handler.handle_goal(w.goal_cmd(ReflectGoal, w.clinician2, goal_id, reflection="x"))
        assert info.value.code == "not_on_care_team"
    assert seen


async def test_goal_command_asserts_the_client_stream(store: Any) -> None:
    """Deterministic interleaving: the removal lands between the agreement's load and append."""
    w = await setup_world(store)
    goal_id = await proposed_goal(w)

    async def remove() -> None:
        await w.handler.handle_client(w.client_id, w.cmd(RemoveCareTeamMember, w.clinician,
                                                         member_id=w.clinician2.id))

    gated = GatedStore(store, before_first_append=remove)
    with pytest.raises(AllianceError) as info:
        await CommandHandler(gated, scorer=SCORER).handle_goal(w.goal_cmd(AgreeGoal, w.clinician2, goal_id, version=1))
    assert info.value.code == "not_on_care_team"
    assert gated.appends == 1  # refused on re-decide, not appended twice
    assert await store.stream_version(goal_stream(goal_id)) == 1


# --- 5. a retried command is recorded once ----------------------------------------------

async def test_retried_command_is_recorded_once(store: Any) -> None:
    w = await setup_world(store)
    goal_id = uuid.uuid4()
    propose = w.goal_cmd(ProposeGoal, w.client, goal_id, text="Walk to the park")
    first = await w.handler.handle_goal(propose)
    again = await w.handler.handle_goal(propose)  # re-decide says goal_exists: answered as a retry
    assert again.duplicate and not first.duplicate
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert again.version == first.version == 1

    # a retry that re-decides fine (a reflection may be repeated) is still recorded once
    reflect = w.goal_cmd(ReflectGoal, w.clinician, goal_id, reflection="Being outdoors matters")
    first = await w.handler.handle_goal(reflect)
    again = await w.handler.handle_goal(reflect)
    assert again.duplicate
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert again.version == first.version == 2
    assert await store.stream_version(goal_stream(goal_id)) == 2

    # a retry that would be refused on re-decide ("already agreed"); two events, both returned
    await w.handler.handle_goal(w.goal_cmd(AgreeGoal, w.client, goal_id, version=1))
    agree = w.goal_cmd(AgreeGoal, w.clinician, goal_id, version=1)
    first = await w.handler.handle_goal(agree)
    assert [e.type for e in first.events] == ["goal.agreed", "goal.activated"]
    again = await w.handler.handle_goal(agree)
    assert again.duplicate
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert [e.version for e in again.events] == [e.version for e in first.events]
    assert again.version == first.version == 5
    assert await store.stream_version(goal_stream(goal_id)) == 5


async def test_retry_after_the_streams_moved_on(store: Any) -> None:
    w = await setup_world(store)
    goal_id = await proposed_goal(w)
    reflect = w.goal_cmd(ReflectGoal, w.clinician, goal_id, reflection="first")
    first = await w.handler.handle_goal(reflect)
    # other commands land on both streams before the retry arrives
    await w.handler.handle_goal(w.goal_cmd(ReflectGoal, w.clinician2, goal_id, reflection="second"))
    measure = w.measurement(at=w.tick())
    measured = await w.handler.handle_client(w.client_id, measure)
    again = await w.handler.handle_goal(reflect)
    assert again.duplicate and [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert again.version == 2
    retried = await w.handler.handle_client(w.client_id, measure)  # re-decide: duplicate_id
    assert retried.duplicate and [e.event_id for e in retried.events] == [e.event_id for e in measured.events]
    assert await store.stream_version(goal_stream(goal_id)) == 3
    measurements = [e for e in await store.read_stream(f"client-{w.client_id}")
                    if isinstance(e.payload, MeasurementRecorded)]
    assert len(measurements) == 1


async def test_retry_whose_stream_moves_between_load_and_append(store: Any) -> None:
    """The retry re-decides fine, then another command lands before its append: the store
    answers "already recorded" and the outcome must carry this command's events, not the
    other command's."""
    w = await setup_world(store)
    goal_id = await proposed_goal(w)
    reflect = w.goal_cmd(ReflectGoal, w.clinician, goal_id, reflection="mine")
    first = await w.handler.handle_goal(reflect)

    async def someone_else() -> None:
        await w.handler.handle_goal(w.goal_cmd(ReflectGoal, w.clinician2, goal_id, reflection="theirs"))

    again = await CommandHandler(GatedStore(store, before_first_append=someone_else)).handle_goal(reflect)
    assert again.duplicate
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert again.version == first.version == 2
    assert await store.stream_version(goal_stream(goal_id)) == 3


async def test_concurrent_copies_of_one_command_are_recorded_once(store: Any) -> None:
    w = await setup_world(store)
    for _ in range(4):
        goal_id = await proposed_goal(w)
        reflect = w.goal_cmd(ReflectGoal, w.clinician, goal_id, reflection="twice sent")
        results = await race(store, on_goal(reflect), on_goal(reflect))
        assert all(isinstance(r, Outcome) for r in results), results
        outcomes = [r for r in results if isinstance(r, Outcome)]
        assert sorted(o.duplicate for o in outcomes) == [False, True]
        assert outcomes[0].events and [e.event_id for e in outcomes[0].events] == \
            [e.event_id for e in outcomes[1].events]
        assert await store.stream_version(goal_stream(goal_id)) == 2


# --- 6. if_match ------------------------------------------------------------------------

async def test_if_match_mismatch_is_a_failed_precondition(store: Any) -> None:
    w = await setup_world(store)
    goal_id = await proposed_goal(w)
    reflect = w.goal_cmd(ReflectGoal, w.clinician, goal_id, reflection="stale read")
    with pytest.raises(PreconditionFailed) as info:
        await w.handler.handle_goal(reflect, if_match=0)
    assert info.value.code == "precondition_failed" and info.value.status == 412
    assert info.value.details.get("actual") == 1
    assert await store.stream_version(goal_stream(goal_id)) == 1
    assert await store.read_event(derive_event_id(reflect.command_id, 0)) is None
    out = await w.handler.handle_goal(w.goal_cmd(ReflectGoal, w.clinician, goal_id, reflection="fresh"),
                                      if_match=1)
    assert out.version == 2


async def test_conflict_with_if_match_is_not_redecided(store: Any) -> None:
    w = await setup_world(store)
    goal_id = await proposed_goal(w)

    async def someone_else() -> None:
        await w.handler.handle_goal(w.goal_cmd(ReflectGoal, w.clinician2, goal_id, reflection="theirs"))

    gated = GatedStore(store, before_first_append=someone_else)
    reflect = w.goal_cmd(ReflectGoal, w.clinician, goal_id, reflection="mine")
    with pytest.raises(ConcurrencyConflict) as info:
        await CommandHandler(gated, scorer=SCORER).handle_goal(reflect, if_match=1)
    assert info.value.code == "concurrency_conflict"
    assert gated.appends == 1  # no second attempt
    assert await store.stream_version(goal_stream(goal_id)) == 2  # only theirs
    assert await store.read_event(derive_event_id(reflect.command_id, 0)) is None

    # the same interleaving without if_match is re-decided and lands on top
    gated = GatedStore(store, before_first_append=someone_else)
    reflect = w.goal_cmd(ReflectGoal, w.clinician, goal_id, reflection="mine")
    out = await CommandHandler(gated, scorer=SCORER).handle_goal(reflect)
    assert gated.appends == 2 and out.version == 4 and not out.duplicate
    assert_recorded_by(out, reflect)


# --- trusting a state the caller has just loaded ----------------------------------------

async def test_just_loaded_state_that_went_stale_is_redecided_not_lost(store: Any) -> None:
    """``just_loaded`` skips the first read; when another process moved the streams meanwhile
    the append conflicts and the command is re-read and re-decided: no write is lost."""
    w = await setup_world(store)
    goal_id = await proposed_goal(w)
    mine = CommandHandler(store, scorer=SCORER)  # this process's cache, about to go stale
    await mine.load_client(w.client_id)
    await mine.load_goal(goal_id)
    other = CommandHandler(store, scorer=SCORER)  # another process writes both streams
    await other.handle_client(w.client_id, w.measurement(at=w.tick()))
    await other.handle_goal(w.goal_cmd(AgreeGoal, w.client, goal_id, version=1))
    before = await store.stream_version(client_stream(w.client_id))
    outcome = await mine.handle_client(w.client_id, w.measurement(at=w.tick()), just_loaded=True)
    assert outcome.version == before + 1
    agreed = await mine.handle_goal(w.goal_cmd(AgreeGoal, w.clinician, goal_id, version=1), just_loaded=True)
    assert agreed.events[0].type == "goal.agreed"
    assert await store.stream_version(goal_stream(goal_id)) == agreed.version == 4  # proposed, agreed ×2, active
    assert outcome.events == tuple(await store.read_stream(client_stream(w.client_id), from_version=before + 1))


async def test_concurrent_commands_on_one_stream_in_one_process_queue_instead_of_conflicting(store: Any) -> None:
    """In one process, commands on the same stream run one at a time, each from the state the
    previous one left (cached, not read back): no conflict, no re-decide, nothing lost."""
    w = await setup_world(store)
    counting = GatedStore(store)
    handler = CommandHandler(counting, scorer=SCORER)
    await handler.load_client(w.client_id)
    reads: list[int] = []
    original = store.read_stream

    async def counted_read(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return await original(*args, **kwargs)

    counting.read_stream = counted_read  # type: ignore[method-assign]
    outcomes = await asyncio.gather(*(handler.handle_client(w.client_id, w.measurement(at=w.tick()),
                                                            just_loaded=True) for _ in range(20)))
    first = min(o.version for o in outcomes)
    assert sorted(o.version for o in outcomes) == list(range(first, first + 20))
    assert counting.appends == 20  # each appended once: no conflicts
    assert reads == []  # each started from the state the previous one left
    state = (await CommandHandler(store, scorer=SCORER).load_client(w.client_id)).state
    assert len(state.measurements) == 20
    assert handler.cache.get(client_stream(w.client_id)).state == state  # type: ignore[union-attr]


# --- contention across processes ----------------------------------------------------------

async def test_eight_writers_in_each_of_two_processes_on_one_stream_lose_nothing(pg_store: Any,
                                                                                  database: Any) -> None:
    """Two workers (two handlers, each with its own pool, cache and in-process locks, as two
    processes have) with 8 writers each, all on one client's stream: every command is valid,
    so every one is recorded, exactly once; none is refused for having lost a race."""
    from alliance.core.database import create_app_pool

    w = await setup_world(pg_store)
    per_writer = 25
    pools = [await create_app_pool(database.app_dsn, min_size=2, max_size=10) for _ in range(2)]
    stores = [PostgresEventStore(pool, EventCodec(ALL_EVENT_TYPES), PostgresKeyRing(pool, TEST_KEK),
                                 dsn=database.app_dsn) for pool in pools]
    workers = [CommandHandler(s, scorer=SCORER) for s in stores]
    sent: list[RecordNote] = []
    refused: list[AllianceError] = []

    async def writer(handler: CommandHandler) -> None:
        for _ in range(per_writer):
            command = w.cmd(RecordNote, w.clinician, note_id=uuid.uuid4(), text="Session note")
            sent.append(command)
            try:  # as the API does: load (to authorize), then decide from that state
                await handler.load_client(w.client_id)
                await handler.handle_client(w.client_id, command, just_loaded=True)
            except AllianceError as exc:
                refused.append(exc)

    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.gather(*(writer(h) for h in workers for _ in range(8)))
    finally:
        elapsed = loop.time() - started
        for s in stores:
            await s.close()
        for pool in pools:
            await pool.close()
    print(f"\ncontention: {len(sent)} commands, 16 writers, 2 workers, one stream: {len(refused)} refused, "
          f"{elapsed:.2f} s, {len(sent) / elapsed:.0f} commands/s")
    assert [e.code for e in refused] == []
    events = await pg_store.read_stream(client_stream(w.client_id))
    recorded = [e.causation_id for e in events if e.type == "note.recorded"]
    assert sorted(recorded) == sorted(c.command_id for c in sent)  # each once, none lost
