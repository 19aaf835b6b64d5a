"""Identity linking over HTTP: invite, redeem with an IdP token, confirm, unlink.

The events live in the clinic's ``identity-{tenant}`` stream (``core/identity_links.py``); the
verifier's global lookup ``identity_links`` (subject hash -> tenant, principal, role) is written
right after a link or unlink is appended. If a process dies between the two, repeating the
confirmation (or the unlinking) writes the row again: the decider then answers from the stream.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, get, post
from litestar.exceptions import NotAuthorizedException

from alliance.api.auth import LinkedAccount, LinkLookup, Principal, bearer_token
from alliance.api.state import AppServices
from alliance.core import identity_links as il
from alliance.core.errors import Forbidden, NotFound, ValidationError
from alliance.core.handling import envelope, load
from alliance.core.identity import Role


def identity_link_lookup(pool: Any) -> LinkLookup:
    async def find(subject_hash: bytes) -> LinkedAccount | None:
        row = await pool.fetchrow("SELECT tenant_id, principal_id, role FROM identity_links WHERE subject_hash = $1",
                                  subject_hash)
        return None if row is None else LinkedAccount(row["tenant_id"], row["principal_id"], Role(row["role"]))

    return find


class InviteBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    principal_id: UUID
    role: Role
    #: How long the code stays valid, in hours (at most 72).
    hours: Annotated[float, msgspec.Meta(gt=0, le=il.MAX_INVITATION_HOURS)] = il.MAX_INVITATION_HOURS


class InvitationIssued(msgspec.Struct, kw_only=True):
    invitation_id: UUID
    #: Give this to the person once; Alliance keeps only its hash.
    code: str
    expires_at: datetime


class RedeemBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: The code the invitation handed out (68 characters).
    code: Annotated[str, msgspec.Meta(max_length=200)]


class InvitationView(msgspec.Struct, kw_only=True):
    invitation_id: UUID
    principal_id: UUID
    role: Role
    #: open, pending (awaiting the inviter's confirmation), linked, rejected
    status: str
    expires_at: datetime
    #: What the identity provider says of the account that redeemed the code.
    account_email: str | None = None


class ConfirmBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    accept: bool


#: The actor of what the operator does from the command line, and of a redemption.
SYSTEM_ID = uuid.UUID(int=0)


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _new_code(tenant: UUID, invitation: UUID) -> str:
    # The code names its clinic and invitation (so redeeming finds the stream) and carries
    # 144 random bits, the part that makes it a secret.
    return base64.urlsafe_b64encode(tenant.bytes + invitation.bytes + secrets.token_bytes(18)).decode()


def _parse_code(code: str) -> tuple[UUID, UUID]:
    try:
        raw = base64.urlsafe_b64decode(code.strip().encode())
    except ValueError:
        raw = b""
    if len(raw) != 50:
        raise NotFound("no such invitation code", code="invitation_not_found", field="code")
    return UUID(bytes=raw[:16]), UUID(bytes=raw[16:32])


async def _handle(svc: AppServices, tenant: UUID, command: il.IdentityCommand) -> tuple[list[Any], il.IdentityState]:
    loaded = await load(svc.store, il.identity_stream(tenant), il.initial_identity_state(tenant), il.evolve_identity)
    events = il.decide_identity(command, loaded.state)
    await svc.store.append(il.identity_stream(tenant), envelope(command, tenant, events),
                           expected_version=loaded.version)
    state = loaded.state
    for event in events:
        state = il.evolve_identity(state, event)
    return events, state


async def _write_lookup(svc: AppServices, tenant: UUID, events: list[Any]) -> None:
    for event in events:
        if isinstance(event, il.IdentityUnlinked):
            await svc.pool.execute("DELETE FROM identity_links WHERE subject_hash = $1",
                                   bytes.fromhex(event.subject_hash))
        elif isinstance(event, il.IdentityLinked):
            await svc.pool.execute(
                "INSERT INTO identity_links (subject_hash, tenant_id, principal_id, role) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (subject_hash) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, "
                "principal_id = EXCLUDED.principal_id, role = EXCLUDED.role, linked_at = now()",
                bytes.fromhex(event.subject_hash), tenant, event.principal_id, str(event.role))


async def _responsible(svc: AppServices, principal: Principal, principal_id: UUID, role: Role) -> frozenset[UUID]:
    """Who may invite (or unlink) this person: the clinic's admins, and a client's primary clinician."""
    clinic = await svc.clinic(principal.tenant_id)
    admins = {sid for sid, r in clinic.staff.items() if r is Role.ADMIN}
    if principal.role is Role.SYSTEM:  # the operator, on the command line of the server
        admins.add(principal.id)
    if role is Role.CLIENT:
        client = (await svc.handler.load_client(principal_id)).state
        if not client.enrolled or client.tenant_id != principal.tenant_id:
            raise NotFound("no such client in this clinic", code="client_not_found", field="principal_id")
        return frozenset(admins | ({client.primary_clinician} if client.primary_clinician else set()))
    if clinic.staff.get(principal_id) is not role:
        raise ValidationError(f"no active {role} with this id in this clinic", code="staff_not_found",
                              field="principal_id")
    return frozenset(admins)


def _actor_command(principal: Principal) -> dict[str, Any]:
    return {"command_id": uuid.uuid4(), "actor": principal.actor, "at": datetime.now(UTC),
            "tenant_id": principal.tenant_id}


async def invite_person(svc: AppServices, inviter: Principal, principal_id: UUID, role: Role,
                        hours: float = il.MAX_INVITATION_HOURS) -> InvitationIssued:
    """Record an invitation and hand back its code (shown once). ``inviter`` is a staff member,
    or the system (``alliance identity invite``: the operator linking a clinic's first admin)."""
    allowed = await _responsible(svc, inviter, principal_id, role)
    invitation_id = uuid.uuid4()
    code = _new_code(inviter.tenant_id, invitation_id)
    events, _ = await _handle(svc, inviter.tenant_id, il.Invite(
        **_actor_command(inviter), invitation_id=invitation_id, code_hash=_hash(code),
        principal_id=principal_id, role=role, hours=hours, allowed_inviters=allowed))
    return InvitationIssued(invitation_id=invitation_id, code=code, expires_at=events[0].expires_at)


@post("/identity/invitations", operation_id="inviteIdentity", tags=["identity"], status_code=201,
      summary="Invite a client or staff member to link their identity-provider account (code valid up to 72 h)")
async def invite(data: InviteBody, principal: Principal, svc: AppServices) -> InvitationIssued:
    return await invite_person(svc, principal, data.principal_id, data.role, data.hours)


@post("/identity/invitations/redemption", operation_id="redeemInvitation", tags=["identity"], status_code=202,
      summary="Redeem an invitation code with your identity provider's token (pending the inviter's confirmation)")
async def redeem(request: Request[Any, Any, Any], data: RedeemBody, svc: AppServices) -> InvitationView:
    address = request.client.host if request.client else "unknown"
    svc.tokens.failures.check(address)
    try:
        subject, claims = await svc.tokens.subject(bearer_token(request))
        return await redeem_code(svc, subject, claims, data.code)
    except (NotAuthorizedException, NotFound):
        svc.tokens.failures.record(address)  # a guessed code counts like a guessed token
        raise


async def redeem_code(svc: AppServices, subject: bytes, claims: dict[str, Any], code: str) -> InvitationView:
    """A pending link of the account (its subject hash) to the invited person."""
    tenant, invitation_id = _parse_code(code)
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    # The person redeeming is nobody in Alliance yet: the event's actor is the system.
    system = Principal(id=SYSTEM_ID, tenant_id=tenant, role=Role.SYSTEM)
    _, state = await _handle(svc, tenant, il.Redeem(
        **_actor_command(system), invitation_id=invitation_id, code_hash=_hash(code),
        subject_hash=subject.hex(), account_email=email))
    return _view(invitation_id, state.invitations[invitation_id])


def _view(invitation_id: UUID, invitation: il.Invitation) -> InvitationView:
    return InvitationView(invitation_id=invitation_id, principal_id=invitation.principal_id, role=invitation.role,
                          status=invitation.status, expires_at=invitation.expires_at,
                          account_email=invitation.account_email)


@get("/identity/invitations/{invitation_id:uuid}", operation_id="getInvitation", tags=["identity"],
     summary="An invitation as its inviter sees it (with the account that redeemed it)")
async def get_invitation(invitation_id: UUID, principal: Principal, svc: AppServices) -> InvitationView:
    tenant = principal.tenant_id
    state = (await load(svc.store, il.identity_stream(tenant), il.initial_identity_state(tenant),
                        il.evolve_identity)).state
    invitation = state.invitations.get(invitation_id)
    if invitation is None:
        raise NotFound("no such invitation", code="invitation_not_found")
    # The account's email is shown to whoever decides on it: the inviter (and the clinic's admins).
    if invitation.by != principal.id and principal.role is not Role.ADMIN:
        raise Forbidden("only the inviter (or an admin) sees an invitation", code="not_the_inviter")
    return _view(invitation_id, invitation)


@post("/identity/invitations/{invitation_id:uuid}/confirmation", operation_id="confirmInvitation",
      tags=["identity"], status_code=200,
      summary="The inviter confirms (or rejects) the account that redeemed the invitation")
async def confirm(invitation_id: UUID, data: ConfirmBody, principal: Principal, svc: AppServices) -> InvitationView:
    return await confirm_invitation(svc, principal, invitation_id, data.accept)


async def confirm_invitation(svc: AppServices, inviter: Principal, invitation_id: UUID,
                             accept: bool) -> InvitationView:
    events, state = await _handle(svc, inviter.tenant_id, il.Confirm(
        **_actor_command(inviter), invitation_id=invitation_id, accept=accept))
    await _write_lookup(svc, inviter.tenant_id, events)
    return _view(invitation_id, state.invitations[invitation_id])


async def read_invitation(svc: AppServices, tenant: UUID, invitation_id: UUID) -> InvitationView:
    state = (await load(svc.store, il.identity_stream(tenant), il.initial_identity_state(tenant),
                        il.evolve_identity)).state
    invitation = state.invitations.get(invitation_id)
    if invitation is None:
        raise NotFound("no such invitation", code="invitation_not_found")
    return _view(invitation_id, invitation)


class Unlinked(msgspec.Struct, kw_only=True):
    principal_id: UUID
    unlinked: bool


@post("/identity/links/{principal_id:uuid}/unlinking", operation_id="unlinkIdentity", tags=["identity"],
      status_code=200,
      summary="Unlink a person's identity-provider account (their IdP tokens stop working at once)")
async def unlink(principal_id: UUID, principal: Principal, svc: AppServices) -> Unlinked:
    tenant = principal.tenant_id
    clinic = await svc.clinic(tenant)
    role = clinic.staff.get(principal_id, Role.CLIENT)
    allowed = await _responsible(svc, principal, principal_id, role)
    events, _ = await _handle(svc, tenant, il.Unlink(**_actor_command(principal), principal_id=principal_id,
                                                     allowed=allowed))
    await _write_lookup(svc, tenant, events)
    return Unlinked(principal_id=principal_id, unlinked=True)


IDENTITY_ROUTES = [invite, redeem, get_invitation, confirm, unlink]
