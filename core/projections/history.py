"""The decision history of a client: every recorded fact about them and their goals, in order.

Each entry says what happened (the event type and its recorded content), who (id and
role), when (occurred and recorded), on which goal and goal version, and which
consents were in force at that moment — "who agreed to what, when" without reading
raw events. Entries are in the order the store recorded them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from msgspec.structs import replace

from alliance.core.client import CLIENT_EVENT_TYPES, ClientErased
from alliance.core.consent import ConsentGranted, ConsentWithdrawn
from alliance.core.events.envelope import RecordedEvent
from alliance.core.goal import GOAL_EVENT_TYPES, ChangeAccepted, GoalProposed, GoalRestated, GoalRevised
from alliance.core.projections.base import FoldContext, Projection, to_builtins
from alliance.core.projections.parts import Part
from alliance.core.projections.plan import goal_id_of

NAME = "history"
VERSION = 1


class ConsentInForce(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    scope: str
    text_version: str
    effective_at: datetime


class Entry(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    event_id: UUID
    type: str
    stream_version: int
    goal_id: UUID | None = None
    #: The goal's content version after this event (None for client-stream events).
    goal_version: int | None = None
    actor_id: UUID
    actor_role: str
    occurred_at: datetime
    recorded_at: datetime
    consents_in_force: tuple[ConsentInForce, ...] = ()
    details: dict[str, Any] = {}


class HistoryDoc(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    client_id: UUID
    tenant_id: UUID
    entries: tuple[Entry, ...] = ()
    #: Consent events seen so far (to say what was in force at each entry).
    consents: tuple[ConsentGranted | ConsentWithdrawn, ...] = ()
    goal_versions: dict[UUID, int] = {}
    erased: bool = False


def initial_history(client_id: UUID, tenant_id: UUID) -> HistoryDoc:
    return HistoryDoc(client_id=client_id, tenant_id=tenant_id)


Consents = tuple[ConsentGranted | ConsentWithdrawn, ...]

#: ``id(consents)`` → (consents, the latest effective-at among them, what is in force from then on).
_SETTLED: dict[int, tuple[Consents, datetime, tuple[ConsentInForce, ...]]] = {}
_SETTLED_MAX = 4096


def _in_force(consents: Consents, at: datetime) -> tuple[ConsentInForce, ...]:
    """What was in force at ``at``.

    Nearly every entry comes after all the consents seen so far took effect, and the fold
    hands the same tuple on until the next consent event: that answer is computed once per
    tuple (remembered by identity, the tuple kept alive with it), not once per entry.
    """
    if not consents:
        return ()
    settled = _SETTLED.get(id(consents))
    if settled is None or settled[0] is not consents:
        latest = max(c.effective_at for c in consents)
        if len(_SETTLED) >= _SETTLED_MAX:
            _SETTLED.clear()
        settled = _SETTLED[id(consents)] = (consents, latest, _in_force_at(consents, latest))
    return settled[2] if at >= settled[1] else _in_force_at(consents, at)


def _in_force_at(consents: Consents, at: datetime) -> tuple[ConsentInForce, ...]:
    current: dict[str, ConsentGranted | None] = {}
    for c in consents:
        if c.effective_at <= at:
            current[str(c.scope)] = c if isinstance(c, ConsentGranted) else None
    return tuple(ConsentInForce(scope=s, text_version=g.text_version, effective_at=g.effective_at)
                 for s, g in sorted(current.items()) if g is not None)


_ENCODER = msgspec.json.Encoder()
_DETAILS = msgspec.json.Decoder(dict[str, Any])


def _version_after(payload: object, version: int) -> int:
    """The goal's content version after an event (as the goal domain counts versions)."""
    match payload:
        case GoalProposed() | GoalRestated() | GoalRevised():
            return payload.version
        case ChangeAccepted():
            return payload.new_version
    return version


def apply_history(doc: HistoryDoc, event: RecordedEvent, context: FoldContext) -> HistoryDoc:
    """Append one entry. Pure; never raises."""
    p = event.payload
    goal_id = goal_id_of(event)
    goal_version = None
    goal_versions = doc.goal_versions
    if goal_id is not None:
        goal_version = _version_after(p, goal_versions.get(goal_id, 0))
        if goal_version != goal_versions.get(goal_id):
            goal_versions = {**goal_versions, goal_id: goal_version}
    consents = doc.consents
    if isinstance(p, ConsentGranted | ConsentWithdrawn):
        consents = (*consents, p)
    # Canonical JSON values (lists, not tuples), so a stored entry equals a replayed one.
    details = _DETAILS.decode(_ENCODER.encode(p))
    details.pop("type", None)
    entry = Entry(event_id=event.event_id, type=event.type, stream_version=event.version, goal_id=goal_id,
                  goal_version=goal_version, actor_id=event.actor_id, actor_role=str(event.actor_role),
                  occurred_at=event.occurred_at, recorded_at=event.recorded_at,
                  consents_in_force=_in_force(consents, event.occurred_at), details=details)
    return replace(doc, entries=(*doc.entries, entry), consents=consents, goal_versions=goal_versions,
                   erased=doc.erased or isinstance(p, ClientErased))


HISTORY = Projection(name=NAME, version=VERSION,
                     handles=frozenset(t.type_name() for t in (*CLIENT_EVENT_TYPES, *GOAL_EVENT_TYPES)),
                     doc_type=HistoryDoc, initial=initial_history, apply=apply_history, feed_kind=None,
                     # Entries are only ever appended: one row per event, never a rewrite.
                     parts=(Part("entries", "seq", Entry),))


def render_history(doc: HistoryDoc, *, goal_id: UUID | None = None) -> dict[str, Any]:
    entries = [e for e in doc.entries if goal_id is None or e.goal_id == goal_id
               or (e.goal_id is None and e.type.startswith("consent."))]
    return {"client_id": str(doc.client_id), "tenant_id": str(doc.tenant_id), "erased": doc.erased,
            "entries": [to_builtins(e) for e in entries]}
