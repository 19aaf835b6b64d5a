"""Who may do what: the command base and the authority checks every decider uses.

Rules (issue 3, §8):
- an auditor changes nothing (``auditor_read_only``);
- a command for another tenant's client is refused (``wrong_tenant``);
- only the client, or a proxy registered for them, speaks for the client;
- only a clinician (or supervisor) who is ON this client's care team speaks for the
  clinic — a same-clinic clinician who is not on the team is refused (``not_on_care_team``).

The checks are pure functions over the actor and the client state they are given;
they raise :class:`core.errors.Forbidden` with a stable code.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal, TypedDict
from uuid import UUID

import msgspec

from alliance.core.errors import Forbidden
from alliance.core.identity import Actor, Role

if TYPE_CHECKING:
    from alliance.core.client import ClientState

Party = Literal["client", "clinician"]

#: Roles that may act for the clinic when they are on the client's care team.
CLINICAL_ROLES: frozenset[Role] = frozenset({Role.CLINICIAN, Role.SUPERVISOR})


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="command"):
    """What every command carries: its id, who acts, when, and for which clinic.

    Subclasses give a stable ``tag`` (``"goal.propose"``) so the API can decode a
    tagged union of commands.
    """

    command_id: UUID
    actor: Actor
    at: datetime
    tenant_id: UUID


class By(TypedDict):
    """Who did it, as carried by event payloads whose rule depends on it."""

    by: UUID
    by_role: Role


def by_of(actor: Actor) -> By:
    return {"by": actor.id, "by_role": actor.role}


def require_not_auditor(actor: Actor) -> None:
    if actor.role is Role.AUDITOR:
        raise Forbidden("Auditors can read the record but cannot change it.",
                        code="auditor_read_only")


def require_tenant(command_tenant: UUID, state_tenant: UUID | None) -> None:
    if state_tenant is not None and command_tenant != state_tenant:
        raise Forbidden("This client belongs to another clinic.", code="wrong_tenant")


def is_client_voice(actor: Actor, client: ClientState) -> bool:
    """True when the actor is the client themself or a proxy registered for them."""
    if actor.role is Role.CLIENT:
        return actor.id == client.client_id
    if actor.role is Role.PROXY:
        return actor.id in client.proxies
    return False


def require_client_voice(actor: Actor, client: ClientState) -> None:
    """Only the client (or their registered proxy) may do this."""
    require_not_auditor(actor)
    if actor.role is Role.CLIENT:
        if actor.id != client.client_id:
            raise Forbidden("Only this client can do this for themself.", code="not_this_client")
        return
    if actor.role is Role.PROXY:
        if actor.id not in client.proxies:
            raise Forbidden("This person is not a registered proxy for the client.",
                            code="not_a_proxy_for_client")
        return
    raise Forbidden("Only the client or their proxy can do this.", code="client_only")


def is_care_team_clinician(actor: Actor, client: ClientState) -> bool:
    return actor.role in CLINICAL_ROLES and actor.id in client.care_team


def require_care_team_clinician(actor: Actor, client: ClientState) -> None:
    """Only a clinician on this client's care team may do this."""
    require_not_auditor(actor)
    if actor.role not in CLINICAL_ROLES:
        raise Forbidden("Only a clinician on the client's care team can do this.",
                        code="clinician_only")
    if actor.id not in client.care_team:
        raise Forbidden("This clinician is not on the client's care team.",
                        code="not_on_care_team")


def require_admin(actor: Actor) -> None:
    require_not_auditor(actor)
    if actor.role not in (Role.ADMIN, Role.SYSTEM):
        raise Forbidden("Only a clinic administrator can do this.", code="admin_only")


def party_of(actor: Actor, client: ClientState) -> Party:
    """Which party the actor speaks for, or Forbidden when they are neither."""
    require_not_auditor(actor)
    if actor.role in (Role.CLIENT, Role.PROXY):
        require_client_voice(actor, client)
        return "client"
    if actor.role in CLINICAL_ROLES:
        require_care_team_clinician(actor, client)
        return "clinician"
    raise Forbidden("Only the client or a clinician on their care team can do this.",
                    code="not_a_party")


def other_party(party: Party) -> Party:
    return "clinician" if party == "client" else "client"
