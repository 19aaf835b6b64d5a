"""One-time questionnaire links: one instrument, for one client, for one administration,
answered without an account.

Stream id ``questionnaire-link-{link_id}`` (subject: the client, so an erasure covers it). A
link is issued (by a clinician in session, or by the reminder process), then used once by the
answer that records the measurement, in the same append as the measurement on the client's
stream; every refusal of a real link (expired, used, consent withdrawn…) is recorded too.

The token is ``base64url(link_id ‖ secret)``: 16 bytes naming the link's stream and a 256-bit
secret, ``HMAC-SHA256(link key, link id)`` with a key derived from the service's KEK. Only
``sha256(token)`` is stored, so the database (or a backup) never holds a usable link; the
reminder process re-derives a link's token when it composes the message (a resend after a
crash carries the same link), and nobody without the key can make one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec
from msgspec.structs import replace

from alliance.core.authority import Command, require_care_team_clinician, require_not_auditor
from alliance.core.client import ClientState
from alliance.core.consent import ConsentScope
from alliance.core.errors import AllianceError, DomainRuleViolation, NotFound, ValidationError
from alliance.core.events.base import EventPayload
from alliance.core.identity import Role

LINK_NAMESPACE = UUID("0b9f6f64-6a4e-4d53-9a1d-5b2f7c3e81a0")
#: Hours a link may be valid at most (the setting ``ALLIANCE_QUESTIONNAIRE_LINK_HOURS`` is capped here).
MAX_LINK_HOURS = 336.0
SECRET_BYTES = 32

LinkVia = Literal["session", "reminder"]
#: Why a real link was refused. Discharge is not a reason: self-monitoring continues after it.
RefusalReason = Literal["expired", "used", "consent_not_in_force", "client_erased", "wrong_administration"]


def link_stream(link_id: UUID) -> str:
    return f"questionnaire-link-{link_id}"


def link_key(mac_key: bytes) -> bytes:
    """The key links are derived with (from the service's KEK-derived key, for this use only)."""
    return hmac.new(mac_key, b"alliance questionnaire links v1", hashlib.sha256).digest()


def token_for(key: bytes, link_id: UUID) -> str:
    secret = hmac.new(key, link_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(link_id.bytes + secret).decode().rstrip("=")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_token(token: str) -> UUID:
    """The link id a token names; ``NotFound`` (field ``token``) when it is not a link's shape."""
    raw = b""
    if 0 < len(token) <= 100 and token.isascii():
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raw = b""
    if len(raw) != 16 + SECRET_BYTES:
        raise link_not_found()
    return UUID(bytes=raw[:16])


def link_not_found() -> NotFound:
    return NotFound("This questionnaire link is not known. Ask your clinician for a new one.",
                    code="link_not_found", field="token")


def link_id_for_reminder(reminder_id: UUID) -> UUID:
    return uuid.uuid5(LINK_NAMESPACE, f"{reminder_id}:link")


def unscheduled_administration(link_id: UUID) -> UUID:
    """The administration a link answers when the clinician asked for a questionnaire that no
    schedule made due now (in session, say): its own, named by the link."""
    return uuid.uuid5(LINK_NAMESPACE, f"{link_id}:unscheduled")


def measurement_id_for(link_id: UUID) -> UUID:
    """The measurement a link's answer records (one per link, stable across retries)."""
    return uuid.uuid5(LINK_NAMESPACE, f"{link_id}:measurement")


def event_id_for(link_id: UUID, what: str) -> UUID:
    return uuid.uuid5(LINK_NAMESPACE, f"{link_id}:{what}")


# --- events -------------------------------------------------------------------------------

class QuestionnaireLinkIssued(EventPayload, tag="questionnaire_link.issued", kw_only=True, frozen=True):
    """A link for one administration of one instrument. The token is not stored, its hash is."""

    link_id: UUID
    client_id: UUID
    instrument_id: str
    administration_id: UUID
    goal_ids: tuple[UUID, ...] = ()
    #: sha256 of the token, hex.
    token_hash: str
    expires_at: datetime
    via: LinkVia
    reminder_id: UUID | None = None
    by: UUID
    by_role: Role


class QuestionnaireLinkUsed(EventPayload, tag="questionnaire_link.used", kw_only=True, frozen=True):
    link_id: UUID
    administration_id: UUID
    measurement_id: UUID
    used_at: datetime


class QuestionnaireLinkRefused(EventPayload, tag="questionnaire_link.refused", kw_only=True, frozen=True):
    link_id: UUID
    reason: RefusalReason
    refused_at: datetime


LINK_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    QuestionnaireLinkIssued, QuestionnaireLinkUsed, QuestionnaireLinkRefused)


# --- state --------------------------------------------------------------------------------

class LinkState(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    link_id: UUID
    issued: QuestionnaireLinkIssued | None = None
    used: QuestionnaireLinkUsed | None = None
    refusals: int = 0


def initial_link_state(link_id: UUID) -> LinkState:
    return LinkState(link_id=link_id)


def evolve_link(state: LinkState, event: EventPayload) -> LinkState:
    match event:
        case QuestionnaireLinkIssued():
            return replace(state, issued=event)
        case QuestionnaireLinkUsed():
            return replace(state, used=state.used or event)
        case QuestionnaireLinkRefused():
            return replace(state, refusals=state.refusals + 1)
        case _:
            return state


# --- commands and decisions ---------------------------------------------------------------

class IssueLink(Command, tag="questionnaire_link.issue", kw_only=True, frozen=True):
    link_id: UUID
    client_id: UUID
    instrument_id: str
    administration_id: UUID
    goal_ids: tuple[UUID, ...] = ()
    token_hash: str
    expires_at: datetime
    via: LinkVia = "session"
    reminder_id: UUID | None = None


def decide_issue(command: IssueLink, link: LinkState, client: ClientState) -> list[EventPayload]:
    """A clinician on the care team hands a link over in session (the reminder process, role
    ``system``, issues its own); only while consent for measurement is in force."""
    require_not_auditor(command.actor)
    if command.actor.role is not Role.SYSTEM:
        require_care_team_clinician(command.actor, client)
    if client.erased or not client.enrolled or client.client_id != command.client_id:
        raise NotFound("This client is not enrolled in a clinic.", code="client_not_enrolled")
    if not client.consent_in_force(ConsentScope.MEASUREMENT, command.at):
        raise DomainRuleViolation("The client's consent for measurement is not in force.",
                                  code="consent_not_in_force", field="scope", scope="measurement")
    if command.expires_at <= command.at:
        raise ValidationError("A link must expire after it is issued.", code="invalid", field="expires_at")
    if link.issued is not None:
        raise DomainRuleViolation("This link was already issued.", code="duplicate_id", field="link_id")
    return [QuestionnaireLinkIssued(
        link_id=command.link_id, client_id=command.client_id, instrument_id=command.instrument_id,
        administration_id=command.administration_id, goal_ids=command.goal_ids, token_hash=command.token_hash,
        expires_at=command.expires_at, via=command.via, reminder_id=command.reminder_id,
        by=command.actor.id, by_role=command.actor.role)]


class LinkRefused(AllianceError):
    """A real link that cannot be used (now or any more). ``reason`` is what is recorded."""

    def __init__(self, message: str, *, code: str, status: int, reason: RefusalReason,
                 field: str = "token") -> None:
        super().__init__(message, code=code, field=field)
        self.status = status
        self.reason = reason


def matching(link: LinkState, token: str) -> QuestionnaireLinkIssued:
    """The issued link this token opens; ``NotFound`` for any other token (nothing said about why)."""
    issued = link.issued
    if issued is None or not hmac.compare_digest(issued.token_hash, token_hash(token)):
        raise link_not_found()
    return issued


def check_usable(link: LinkState, client: ClientState, now: datetime, *,
                 administration_id: UUID | None = None) -> QuestionnaireLinkIssued:
    """The link's issue if it can be answered at ``now``, else ``LinkRefused`` (why, and the
    status: 410 for a link that is over, 409 for one the client's record no longer allows).
    ``administration_id``: what the submitted form says it answers (a form of another link)."""
    issued = link.issued
    assert issued is not None
    if link.used is not None:
        raise LinkRefused("This questionnaire link was already used; each link answers once.",
                          code="link_used", status=409, reason="used")
    if client.erased:
        raise LinkRefused("This questionnaire link can no longer be used.", code="link_unusable",
                          status=410, reason="client_erased")
    if now >= issued.expires_at:
        raise LinkRefused("This questionnaire link has expired. Ask your clinician for a new one.",
                          code="link_expired", status=410, reason="expired")
    if not client.consent_in_force(ConsentScope.MEASUREMENT, now):
        raise LinkRefused("Consent for measurement is not in force, so this link cannot be used.",
                          code="consent_not_in_force", status=409, reason="consent_not_in_force")
    if administration_id is not None and administration_id != issued.administration_id:
        raise LinkRefused("This answer is for another questionnaire than this link opens.",
                          code="wrong_administration", status=422, reason="wrong_administration",
                          field="administration_id")
    return issued


def used(issued: QuestionnaireLinkIssued, measurement_id: UUID, now: datetime) -> QuestionnaireLinkUsed:
    return QuestionnaireLinkUsed(link_id=issued.link_id, administration_id=issued.administration_id,
                                 measurement_id=measurement_id, used_at=now)
