"""The decision history (``GET /clients/{id}/history``): one entry per event, who did what, when."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from alliance.api.schemas.shared import CrisisInformation


class ConsentAtEntry(msgspec.Struct, kw_only=True):
    """A consent in force when the entry's event happened."""

    scope: Annotated[str, Meta(description="What it covers")]
    text_version: Annotated[str, Meta(description="The consent text's version")]
    effective_at: Annotated[datetime, Meta(description="From when")]


class HistoryEntry(msgspec.Struct, kw_only=True):
    """One event: who proposed, revised, agreed or consented to what, and when."""

    event_id: Annotated[UUID, Meta(description="The event")]
    type: Annotated[str, Meta(description="Its stable type name", examples=["goal.agreed"])]
    stream_version: Annotated[int, Meta(description="Its version in its stream")]
    goal_id: Annotated[UUID | None, Meta(description="The goal, for goal events")]
    goal_version: Annotated[int | None, Meta(description="The goal's content version after this event")]
    actor_id: Annotated[UUID, Meta(description="Who acted")]
    actor_role: Annotated[str, Meta(description="Their role")]
    occurred_at: Annotated[datetime, Meta(description="When it happened")]
    recorded_at: Annotated[datetime, Meta(description="When it was recorded")]
    consents_in_force: Annotated[list[ConsentAtEntry], Meta(description="Consents in force then")]
    details: Annotated[dict[str, Any], Meta(
        description="The event's own fields (open-ended: each event type has its own, see docs/events)")]


class HistoryView(msgspec.Struct, kw_only=True):
    """Decision history, in recording order."""

    client_id: Annotated[UUID, Meta(description="The client")]
    tenant_id: Annotated[UUID, Meta(description="The clinic")]
    erased: Annotated[bool, Meta(description="Whether the client's data was erased")]
    entries: Annotated[list[HistoryEntry], Meta(description="The entries")]
    crisis_information: Annotated[CrisisInformation | UnsetType, Meta(
        description="While a risk flag is open: the clinic's crisis information")] = UNSET
