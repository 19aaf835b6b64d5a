"""Consent: scopes, the grant/withdraw events and "is consent for S in force at T".

Consent events live in the client stream (so a withdrawal and a measurement are
ordered by the same stream version). ``consent_in_force`` is a pure function of
that history: the last grant or withdrawal for the scope effective at or before T
decides. Withdrawal stops new actions in the scope; it never erases history.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from typing import Literal, Protocol
from uuid import UUID

from alliance.core.events.base import EventPayload
from alliance.core.identity import Role


class ConsentScope(enum.StrEnum):
    GOAL_SETTING = "goal_setting"
    MEASUREMENT = "measurement"
    CARE_TEAM_SHARING = "care_team_sharing"


#: ``self``: the client; ``verbal_attested``: staff record what the client said, with an
#: attestation; ``proxy``: a guardian acting for a minor or a client lacking capacity.
ConsentMode = Literal["self", "verbal_attested", "proxy"]


class ConsentGranted(EventPayload, tag="consent.granted", kw_only=True, frozen=True):
    scope: ConsentScope
    text_version: str
    mode: ConsentMode
    effective_at: datetime
    by: UUID
    by_role: Role
    #: Set when staff record consent the client gave verbally (mode "verbal_attested").
    attested_by: UUID | None = None
    attested_at: datetime | None = None
    attestation_method: str | None = None  # e.g. "in_session", "phone", "video"
    given_at: datetime | None = None  # when the client said it (verbal), for the record


class ConsentWithdrawn(EventPayload, tag="consent.withdrawn", kw_only=True, frozen=True):
    scope: ConsentScope
    mode: ConsentMode
    effective_at: datetime
    by: UUID
    by_role: Role
    attested_by: UUID | None = None
    attested_at: datetime | None = None
    attestation_method: str | None = None
    given_at: datetime | None = None


ConsentEvent = ConsentGranted | ConsentWithdrawn


class _HasConsents(Protocol):
    @property
    def consents(self) -> tuple[ConsentEvent, ...]: ...


def consent_in_force(history: Iterable[object] | _HasConsents, scope: ConsentScope | str,
                     at: datetime) -> bool:
    """Whether consent for ``scope`` is in force at ``at``.

    ``history`` is either a client state (its ``consents``) or any iterable of events
    (non-consent events are ignored). Events are taken in stream order; the last one for
    the scope whose ``effective_at`` is not after ``at`` decides.
    """
    events: Iterable[object] = getattr(history, "consents", history)  # type: ignore[arg-type]
    in_force = False
    for event in events:
        if isinstance(event, ConsentGranted | ConsentWithdrawn) and event.scope == scope \
                and event.effective_at <= at:
            in_force = isinstance(event, ConsentGranted)
    return in_force


def current_text_version(history: Iterable[object] | _HasConsents,
                         scope: ConsentScope | str, at: datetime) -> str | None:
    """The consent text version in force for ``scope`` at ``at`` (None when not in force)."""
    events: Iterable[object] = getattr(history, "consents", history)  # type: ignore[arg-type]
    version: str | None = None
    for event in events:
        if isinstance(event, ConsentGranted | ConsentWithdrawn) and event.scope == scope \
                and event.effective_at <= at:
            version = event.text_version if isinstance(event, ConsentGranted) else None
    return version
