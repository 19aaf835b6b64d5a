"""What a reminder decision reads about one client: their record and recent observations,
the measures attached to their goals, their reminder settings, the clinic's reminder text.

Each is a fold of one stream through ``core.handling.load`` with a cache, so a client looked
at again reads only the events appended since; with ``known`` (stream → the version the caller
knows it is at), a cached state at that version is used without reading at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from uuid import UUID

import msgspec
from msgspec.structs import replace

from alliance.core.client import (
    ClientState,
    MeasurementEnteredInError,
    MeasurementRecorded,
    client_stream,
    evolve_client,
    initial_client_state,
)
from alliance.core.events.base import EventPayload
from alliance.core.events.store import EventStore
from alliance.core.goal import GoalState, GoalStatus, evolve_goal, goal_stream, initial_goal_state
from alliance.core.handling import Loaded, StateCache, load
from alliance.core.projections.schedule_view import Observations, forget, remember
from alliance.core.reminders.decide import Attached
from alliance.core.reminders.events import (
    ClinicReminderState,
    ReminderState,
    clinic_reminders_stream,
    evolve_clinic_reminders,
    evolve_reminders,
    initial_clinic_reminder_state,
    initial_reminder_state,
    reminders_stream,
)
from alliance.core.schedules import Observation

#: Goal statuses in which attached measures fall due (as the plan shows them): a paused,
#: declined or closed goal's measures make nothing due, so nothing is reminded of.
MEASURED = frozenset({GoalStatus.PROPOSED, GoalStatus.ACTIVE, GoalStatus.MAINTENANCE})


class ClientView(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    state: ClientState
    observations: Observations = {}


def evolve_view(view: ClientView, event: EventPayload) -> ClientView:
    view = replace(view, state=evolve_client(view.state, event))
    if isinstance(event, MeasurementRecorded):
        return replace(view, observations=remember(view.observations, Observation(
            measurement_id=event.measurement_id, instrument_id=event.instrument_id,
            observed_at=event.observed_at)))
    if isinstance(event, MeasurementEnteredInError):
        return replace(view, observations=forget(view.observations, event.measurement_id))
    return view


async def client_view(store: EventStore, client_id: UUID, cache: StateCache,
                      known: Mapping[str, int] | None = None) -> tuple[ClientView, int]:
    stream = client_stream(client_id)
    loaded: Loaded = await load(store, stream, ClientView(state=initial_client_state(client_id)),
                                evolve_view, cache=cache, known_version=(known or {}).get(stream))
    return loaded.state, loaded.version


async def reminder_settings(store: EventStore, client_id: UUID, cache: StateCache,
                            known: Mapping[str, int] | None = None) -> tuple[ReminderState, int]:
    stream = reminders_stream(client_id)
    loaded = await load(store, stream, initial_reminder_state(client_id), evolve_reminders, cache=cache,
                        known_version=(known or {}).get(stream))
    return loaded.state, loaded.version


async def clinic_text(store: EventStore, tenant_id: UUID, cache: StateCache) -> ClinicReminderState:
    loaded = await load(store, clinic_reminders_stream(tenant_id), initial_clinic_reminder_state(tenant_id),
                        evolve_clinic_reminders, cache=cache)
    return loaded.state  # type: ignore[no-any-return]


def attached_of(goal: GoalState) -> list[Attached]:
    if goal.status not in MEASURED:
        return []
    checkpoints = tuple(sorted(c.provisional_date for c in goal.checkpoints.values() if not c.cancelled))
    return [Attached(goal.goal_id, goal.goal_id, instrument, schedule, checkpoints)
            for instrument, schedule in sorted(goal.schedules.items()) if schedule.kind != "legacy"]


def episode_measures(client: ClientState) -> list[Attached]:
    """Measures attached to the episode (owned by the client, no goal, no checkpoints)."""
    return [Attached(client.client_id, None, instrument, schedule)
            for instrument, schedule in sorted(client.episode_measures.items()) if schedule.kind != "legacy"]


async def attached_measures(store: EventStore, client_id: UUID, goal_ids: Iterable[UUID],
                            cache: StateCache, known: Mapping[str, int] | None = None) -> list[Attached]:
    out: list[Attached] = []
    for goal_id in goal_ids:
        stream = goal_stream(goal_id)
        loaded = await load(store, stream, initial_goal_state(goal_id), evolve_goal, cache=cache,
                            known_version=(known or {}).get(stream))
        goal: GoalState = loaded.state
        if goal.client_id == client_id:  # a goal names its client; anything else is not theirs
            out.extend(attached_of(goal))
    return out


def observations_of(view: ClientView) -> list[Observation]:
    return [o for kept in view.observations.values() for o in kept]
