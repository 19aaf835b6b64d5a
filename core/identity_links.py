"""Linking an identity provider's account to a client or staff member, through an invitation.

Stream id ``identity-{tenant_id}`` (one per clinic, sealed under the clinic's key). The flow:
an admin (or, for a client, their primary clinician) invites; the person signs in at the IdP
and redeems the code with their IdP token (a *pending* link, showing the inviter what the IdP
says of the account: its email claim, a sealed field); the link takes effect only when the
inviter confirms. A forwarded invitation therefore cannot hand a client's record to a stranger:
the inviter sees a stranger's address and rejects. Codes are stored as hashes, are single-use
and expire (at most 72 h). The account is known only by a hash of (iss, sub); Alliance's own
ids stay Alliance's. Unlinking and re-linking are events like the rest.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import assert_never
from uuid import UUID

import msgspec
from msgspec.structs import replace

from alliance.core.authority import Command, require_not_auditor
from alliance.core.errors import DomainRuleViolation, Forbidden, NotFound
from alliance.core.events.base import EventPayload, OptionalPersonalStr
from alliance.core.identity import Role

MAX_INVITATION_HOURS = 72.0
LINKABLE_ROLES = frozenset({Role.CLIENT, Role.CLINICIAN, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN})


def identity_stream(tenant_id: UUID) -> str:
    return f"identity-{tenant_id}"


# --- events -------------------------------------------------------------------------------

class IdentityInvited(EventPayload, tag="identity.invited", kw_only=True, frozen=True):
    tenant_id: UUID
    invitation_id: UUID
    #: sha256 of the code, hex: the code itself is shown once and never stored.
    code_hash: str
    principal_id: UUID
    role: Role
    by: UUID
    by_role: Role
    expires_at: datetime


class InvitationRedeemed(EventPayload, tag="identity.invitation_redeemed", kw_only=True, frozen=True):
    invitation_id: UUID
    #: sha256 of (iss, sub), hex.
    subject_hash: str
    #: What the IdP says of the account, for the inviter to recognise it (sealed).
    account_email: OptionalPersonalStr = None


class IdentityLinked(EventPayload, tag="identity.linked", kw_only=True, frozen=True):
    invitation_id: UUID
    subject_hash: str
    principal_id: UUID
    role: Role
    by: UUID
    by_role: Role


class IdentityLinkRejected(EventPayload, tag="identity.link_rejected", kw_only=True, frozen=True):
    invitation_id: UUID
    by: UUID


class IdentityUnlinked(EventPayload, tag="identity.unlinked", kw_only=True, frozen=True):
    subject_hash: str
    principal_id: UUID
    by: UUID
    by_role: Role


IDENTITY_EVENT_TYPES: tuple[type[EventPayload], ...] = (
    IdentityInvited, InvitationRedeemed, IdentityLinked, IdentityLinkRejected, IdentityUnlinked)


# --- commands -----------------------------------------------------------------------------

class Invite(Command, tag="identity.invite", kw_only=True, frozen=True):
    invitation_id: UUID
    code_hash: str
    principal_id: UUID
    role: Role
    hours: float = MAX_INVITATION_HOURS
    #: Who may invite for this principal (the route works it out: admin, or the client's
    #: primary clinician); the decider only checks the actor is among them.
    allowed_inviters: frozenset[UUID] = frozenset()


class Redeem(Command, tag="identity.redeem", kw_only=True, frozen=True):
    invitation_id: UUID
    code_hash: str
    subject_hash: str
    account_email: str | None = None


class Confirm(Command, tag="identity.confirm", kw_only=True, frozen=True):
    invitation_id: UUID
    accept: bool


class Unlink(Command, tag="identity.unlink", kw_only=True, frozen=True):
    principal_id: UUID
    allowed: frozenset[UUID] = frozenset()


IdentityCommand = Invite | Redeem | Confirm | Unlink


# --- state --------------------------------------------------------------------------------

class Invitation(msgspec.Struct, frozen=True, kw_only=True):
    code_hash: str
    principal_id: UUID
    role: Role
    by: UUID
    expires_at: datetime
    #: "open", "pending" (redeemed, awaiting the inviter), "linked", "rejected".
    status: str = "open"
    subject_hash: str | None = None
    account_email: str | None = None


class IdentityState(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: UUID
    invitations: dict[UUID, Invitation] = msgspec.field(default_factory=dict)
    #: subject hash -> (principal id, role)
    links: dict[str, tuple[UUID, Role]] = msgspec.field(default_factory=dict)


def initial_identity_state(tenant_id: UUID) -> IdentityState:
    return IdentityState(tenant_id=tenant_id)


def evolve_identity(state: IdentityState, event: EventPayload) -> IdentityState:
    match event:
        case IdentityInvited():
            invitation = Invitation(code_hash=event.code_hash, principal_id=event.principal_id, role=event.role,
                                    by=event.by, expires_at=event.expires_at)
            return replace(state, invitations={**state.invitations, event.invitation_id: invitation})
        case InvitationRedeemed():
            old = state.invitations.get(event.invitation_id)
            if old is None:
                return state
            new = replace(old, status="pending", subject_hash=event.subject_hash, account_email=event.account_email)
            return replace(state, invitations={**state.invitations, event.invitation_id: new})
        case IdentityLinked():
            invitations = dict(state.invitations)
            if (old := invitations.get(event.invitation_id)) is not None:
                invitations[event.invitation_id] = replace(old, status="linked")
            # One account per principal: a re-link replaces the previous account.
            links = {h: p for h, p in state.links.items() if p[0] != event.principal_id}
            links[event.subject_hash] = (event.principal_id, event.role)
            return replace(state, invitations=invitations, links=links)
        case IdentityLinkRejected():
            old = state.invitations.get(event.invitation_id)
            if old is None:
                return state
            return replace(state, invitations={**state.invitations, event.invitation_id: replace(old,
                                                                                                 status="rejected")})
        case IdentityUnlinked():
            return replace(state, links={h: p for h, p in state.links.items() if h != event.subject_hash})
        case _:
            return state


def linked_subject(state: IdentityState, principal_id: UUID) -> str | None:
    return next((h for h, (pid, _role) in state.links.items() if pid == principal_id), None)


def decide_identity(command: IdentityCommand, state: IdentityState) -> list[EventPayload]:
    match command:
        case Invite():
            require_not_auditor(command.actor)
            if command.role not in LINKABLE_ROLES:
                raise DomainRuleViolation(f"a {command.role} cannot be invited", code="role_not_linkable",
                                          field="role")
            if command.actor.id not in command.allowed_inviters:
                raise Forbidden("only an admin, or a client's primary clinician, invites",
                                code="not_allowed_to_invite")
            hours = min(max(command.hours, 0.1), MAX_INVITATION_HOURS)
            return [IdentityInvited(tenant_id=command.tenant_id, invitation_id=command.invitation_id,
                                    code_hash=command.code_hash, principal_id=command.principal_id,
                                    role=command.role, by=command.actor.id, by_role=command.actor.role,
                                    expires_at=command.at + timedelta(hours=hours))]
        case Redeem():
            invitation = state.invitations.get(command.invitation_id)
            # An unknown invitation and a wrong code answer alike: the code is the secret.
            if invitation is None or invitation.code_hash != command.code_hash:
                raise NotFound("no such invitation code", code="invitation_not_found", field="code")
            if invitation.status != "open":
                raise DomainRuleViolation("this invitation was already used", code="invitation_used", field="code")
            if command.at >= invitation.expires_at:
                raise DomainRuleViolation("this invitation has expired: ask for a new one",
                                          code="invitation_expired", field="code")
            if command.subject_hash in state.links:
                raise DomainRuleViolation("this account is already linked in this clinic",
                                          code="account_already_linked")
            return [InvitationRedeemed(invitation_id=command.invitation_id, subject_hash=command.subject_hash,
                                       account_email=command.account_email)]
        case Confirm():
            require_not_auditor(command.actor)
            invitation = state.invitations.get(command.invitation_id)
            if invitation is None:
                raise NotFound("no such invitation", code="invitation_not_found")
            if invitation.by != command.actor.id:
                raise Forbidden("only the person who invited confirms the account", code="not_the_inviter")
            if invitation.status != "pending" or invitation.subject_hash is None:
                raise DomainRuleViolation(f"the invitation is {invitation.status}, not awaiting confirmation",
                                          code="invitation_not_pending")
            if not command.accept:
                return [IdentityLinkRejected(invitation_id=command.invitation_id, by=command.actor.id)]
            events: list[EventPayload] = []
            if (previous := linked_subject(state, invitation.principal_id)) is not None:
                events.append(IdentityUnlinked(subject_hash=previous, principal_id=invitation.principal_id,
                                               by=command.actor.id, by_role=command.actor.role))
            events.append(IdentityLinked(invitation_id=command.invitation_id, subject_hash=invitation.subject_hash,
                                         principal_id=invitation.principal_id, role=invitation.role,
                                         by=command.actor.id, by_role=command.actor.role))
            return events
        case Unlink():
            require_not_auditor(command.actor)
            if command.actor.id not in command.allowed:
                raise Forbidden("only an admin, or a client's primary clinician, unlinks", code="not_allowed_to_unlink")
            subject = linked_subject(state, command.principal_id)
            if subject is None:
                raise NotFound("no account is linked to this person", code="not_linked")
            return [IdentityUnlinked(subject_hash=subject, principal_id=command.principal_id, by=command.actor.id,
                                     by_role=command.actor.role)]
        case _:
            assert_never(command)
