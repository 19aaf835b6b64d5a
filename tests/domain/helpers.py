"""Given / when / then helpers for decider tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import pytest

from alliance.core.client import ClientEnrolled, ClientState, evolve_client, initial_client_state
from alliance.core.consent import ConsentGranted, ConsentScope
from alliance.core.errors import AllianceError
from alliance.core.events.base import EventPayload
from alliance.core.goal import GoalState, evolve_goal, initial_goal_state
from alliance.core.identity import Actor, Role

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
TENANT = UUID("00000000-0000-0000-0000-0000000000a1")
OTHER_TENANT = UUID("00000000-0000-0000-0000-0000000000a2")
CLIENT_ID = UUID("00000000-0000-0000-0000-00000000c001")
GOAL_ID = UUID("00000000-0000-0000-0000-000000006001")
EPISODE = UUID("00000000-0000-0000-0000-00000000e001")

CLIENT = Actor(id=CLIENT_ID, role=Role.CLIENT)
OTHER_CLIENT = Actor(id=UUID("00000000-0000-0000-0000-00000000c002"), role=Role.CLIENT)
PROXY = Actor(id=UUID("00000000-0000-0000-0000-00000000b001"), role=Role.PROXY)
CLINICIAN = Actor(id=UUID("00000000-0000-0000-0000-00000000d001"), role=Role.CLINICIAN)
CLINICIAN_2 = Actor(id=UUID("00000000-0000-0000-0000-00000000d002"), role=Role.CLINICIAN)
OUTSIDER = Actor(id=UUID("00000000-0000-0000-0000-00000000d003"), role=Role.CLINICIAN)
SUPERVISOR = Actor(id=UUID("00000000-0000-0000-0000-00000000d004"), role=Role.SUPERVISOR)
AUDITOR = Actor(id=UUID("00000000-0000-0000-0000-00000000a001"), role=Role.AUDITOR)
ADMIN = Actor(id=UUID("00000000-0000-0000-0000-00000000a002"), role=Role.ADMIN)
SYSTEM = Actor(id=UUID("00000000-0000-0000-0000-00000000a003"), role=Role.SYSTEM)

ALL_SCOPES = (ConsentScope.GOAL_SETTING, ConsentScope.MEASUREMENT, ConsentScope.CARE_TEAM_SHARING)

C = TypeVar("C")


def new_id() -> UUID:
    return uuid.uuid4()


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def cmd(cls: type[C], actor: Actor, *, when: datetime = T0, tenant: UUID = TENANT,
        **fields: Any) -> C:
    """Build a command with the envelope fields filled in."""
    return cls(command_id=new_id(), actor=actor, at=when, tenant_id=tenant, **fields)  # type: ignore[call-arg]


def goal_cmd(cls: type[C], actor: Actor, **fields: Any) -> C:
    fields.setdefault("goal_id", GOAL_ID)
    fields.setdefault("client_id", CLIENT_ID)
    return cmd(cls, actor, **fields)


def enrolled(*scopes: ConsentScope, team: Iterable[Actor] = ()) -> list[EventPayload]:
    """Events of a client enrolled with CLINICIAN as primary, given consents (self, at T0-1d)."""
    from alliance.core.client import CareTeamMemberAdded

    events: list[EventPayload] = [ClientEnrolled(
        client_id=CLIENT_ID, tenant_id=TENANT, episode_id=EPISODE,
        primary_clinician_id=CLINICIAN.id, by=ADMIN.id, by_role=ADMIN.role)]
    for scope in scopes:
        events.append(ConsentGranted(scope=scope, text_version="v1", mode="self",
                                     effective_at=T0 - timedelta(days=1), by=CLIENT_ID,
                                     by_role=Role.CLIENT))
    for member in team:
        events.append(CareTeamMemberAdded(member_id=member.id, member_role=member.role,
                                          by=CLINICIAN.id, by_role=Role.CLINICIAN))
    return events


def fold_client(events: Iterable[EventPayload], client_id: UUID = CLIENT_ID) -> ClientState:
    state = initial_client_state(client_id)
    for event in events:
        state = evolve_client(state, event)
    return state


def fold_goal(events: Iterable[EventPayload], goal_id: UUID = GOAL_ID) -> GoalState:
    state = initial_goal_state(goal_id)
    for event in events:
        state = evolve_goal(state, event)
    return state


def raises(code: str, fn: Callable[..., object], *args: Any, **kwargs: Any) -> AllianceError:
    """Then: the call raises a domain error with this stable code."""
    with pytest.raises(AllianceError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, f"expected {code!r}, got {info.value.code!r}: {info.value}"
    return info.value
