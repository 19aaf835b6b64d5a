"""``alliance identity``: the operator links a clinic's first admin to their identity-provider
account (on a deployment that accepts only the IdP's tokens there is nobody yet to invite them).

The same invitation flow as over HTTP, with the operator (the system actor, on the server's
command line) as inviter: ``invite`` prints a code, the admin redeems it at
``POST /identity/invitations/redemption`` with their IdP token, ``show`` prints the account the
IdP described, and ``confirm`` (or ``confirm --reject``) decides.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import click

from alliance.core.errors import AllianceError


class _Services:
    """What the identity functions use of the app's services, on a runtime of the command line."""

    def __init__(self, runtime: Any) -> None:
        from alliance.core.handling import CommandHandler

        self.store = runtime.store
        self.pool = runtime.pool
        self.handler = CommandHandler(runtime.store)

    async def clinic(self, tenant_id: uuid.UUID) -> Any:
        return (await self.handler.load_clinic(tenant_id)).state


def _run(settings: Any, work: Callable[[Any], Awaitable[str]]) -> None:
    from alliance.core.runtime import open_runtime

    async def go() -> str:
        async with open_runtime(settings) as runtime:
            return await work(_Services(runtime))

    try:
        click.echo(asyncio.run(go()))
    except AllianceError as exc:
        click.echo(f"alliance: {exc.message} ({exc.code})", err=True)
        sys.exit(2)


def _id(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.BadParameter(f"{name} must be a UUID") from None


def _system(tenant: uuid.UUID) -> Any:
    from alliance.api.auth import Principal
    from alliance.api.routes.identity import SYSTEM_ID
    from alliance.core.identity import Role

    return Principal(id=SYSTEM_ID, tenant_id=tenant, role=Role.SYSTEM)


@click.group()
def identity() -> None:
    """Link identity-provider accounts to staff and clients (the first admin, from here)."""


@identity.command("invite")
@click.option("--tenant", required=True, help="The clinic's id (a UUID).")
@click.option("--principal", required=True, help="The staff member's or client's Alliance id (a UUID).")
@click.option("--role", default="admin", show_default=True,
              type=click.Choice(["admin", "clinician", "supervisor", "auditor", "client"]))
@click.option("--hours", default=72.0, show_default=True, type=click.FloatRange(0.1, 72), help="Validity.")
@click.pass_obj
def invite(settings: Any, tenant: str, principal: str, role: str, hours: float) -> None:
    """Print an invitation code (shown once; valid at most 72 h)."""
    from alliance.api.routes.identity import invite_person
    from alliance.core.identity import Role

    async def work(svc: Any) -> str:
        issued = await invite_person(svc, _system(_id(tenant, "--tenant")), _id(principal, "--principal"),
                                     Role(role), hours)
        return (f"invitation {issued.invitation_id} (valid until {issued.expires_at.isoformat()})\n"
                f"code: {issued.code}")

    _run(settings, work)


@identity.command("show")
@click.option("--tenant", required=True, help="The clinic's id (a UUID).")
@click.option("--invitation", required=True, help="The invitation's id.")
@click.pass_obj
def show(settings: Any, tenant: str, invitation: str) -> None:
    """The invitation's status and the account that redeemed it (what the IdP says of it)."""
    from alliance.api.routes.identity import read_invitation

    async def work(svc: Any) -> str:
        view = await read_invitation(svc, _id(tenant, "--tenant"), _id(invitation, "--invitation"))
        return f"{view.status}: {view.role} {view.principal_id}; account email: {view.account_email or '-'}"

    _run(settings, work)


@identity.command("confirm")
@click.option("--tenant", required=True, help="The clinic's id (a UUID).")
@click.option("--invitation", required=True, help="The invitation's id.")
@click.option("--reject", is_flag=True, help="Reject the account instead (a forwarded invitation).")
@click.pass_obj
def confirm(settings: Any, tenant: str, invitation: str, reject: bool) -> None:
    """Link the account that redeemed the invitation (after checking it with ``show``)."""
    from alliance.api.routes.identity import confirm_invitation

    async def work(svc: Any) -> str:
        view = await confirm_invitation(svc, _system(_id(tenant, "--tenant")), _id(invitation, "--invitation"),
                                        not reject)
        return f"{view.status}: {view.role} {view.principal_id}"

    _run(settings, work)
