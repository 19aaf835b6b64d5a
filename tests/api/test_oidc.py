"""Tokens from an OpenID Connect provider: a local issuer (discovery + JWKS over HTTP, RS256) and
the real app configured with ALLIANCE_OIDC_ISSUER / ALLIANCE_OIDC_AUDIENCE and no shared secret."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.exceptions import NotAuthorizedException

from alliance.api.app import create_app
from alliance.api.auth import Principal, TokenVerifier, issue_token
from alliance.api.routes.identity import SYSTEM_ID, confirm_invitation, invite_person
from alliance.core.clinic import ActivateStaff
from alliance.core.identity import Actor, Role
from alliance.core.settings import Settings
from tests.api.conftest import JWT_SECRET, KEK, running
from tests.api.oidc_issuer import AUDIENCE, Issuer, running_issuer
from tests.api.support import assert_problem


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with running_issuer() as issuer:
        yield issuer


def oidc_settings(database: Any, home: Path, issuer: Issuer, **more: Any) -> Settings:
    return Settings(database_url=database.owner_dsn, kek=KEK, home=home, log_level="warning",
                    oidc_issuer=issuer.url, oidc_audience=AUDIENCE, **more)


class OidcApi:
    def __init__(self, http: httpx.AsyncClient, app: Any) -> None:
        self.http = http
        self.app = app

    @property
    def svc(self) -> Any:
        return self.app.state.services

    async def clinic_with_admin(self) -> tuple[uuid.UUID, uuid.UUID]:
        tenant, admin = uuid.uuid4(), uuid.uuid4()
        await self.svc.handler.handle_clinic(ActivateStaff(
            command_id=uuid.uuid4(), actor=Actor(id=SYSTEM_ID, role=Role.SYSTEM), at=datetime.now(UTC),
            tenant_id=tenant, staff_id=admin, role=Role.ADMIN))
        return tenant, admin

    async def link(self, issuer: Issuer, tenant: uuid.UUID, principal: uuid.UUID, role: Role, sub: str) -> None:
        """The whole invitation flow, the operator inviting and confirming (as `alliance identity` does)."""
        system = Principal(id=SYSTEM_ID, tenant_id=tenant, role=Role.SYSTEM)
        invitation = await invite_person(self.svc, system, principal, role)
        r = await self.http.post("/identity/invitations/redemption", json={"code": invitation.code},
                                 headers=issuer.bearer(sub, email=f"{sub}@idp.example"))
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "pending" and r.json()["account_email"] == f"{sub}@idp.example"
        await confirm_invitation(self.svc, system, invitation.invitation_id, True)


@pytest.fixture(scope="module")
async def oidc_api(database, issuer, tmp_path_factory) -> AsyncIterator[OidcApi]:
    app = create_app(oidc_settings(database, tmp_path_factory.mktemp("alliance-oidc"), issuer))
    async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                               base_url="http://alliance.test") as http:
        yield OidcApi(http, app)


async def test_the_right_token_is_accepted_once_linked_and_tenant_and_role_come_from_the_link(oidc_api, issuer):
    tenant, admin = await oidc_api.clinic_with_admin()
    sub = f"idp-{uuid.uuid4().hex}"
    # The IdP's claims are not trusted for tenant or role: these say "admin of another clinic".
    token = issuer.bearer(sub, tenant=str(uuid.uuid4()), role="admin")
    assert_problem(await oidc_api.http.get("/staff", headers=token), 401)
    await oidc_api.link(issuer, tenant, admin, Role.ADMIN, sub)
    r = await oidc_api.http.get("/staff", headers=token)
    assert r.status_code == 200, r.text
    assert r.json()["staff"] == [{"staff_id": str(admin), "role": "admin"}]  # the link's clinic, not the claim's


async def test_wrong_audience_issuer_expired_and_not_yet_valid_tokens_are_refused(oidc_api, issuer):
    tenant, admin = await oidc_api.clinic_with_admin()
    sub = f"idp-{uuid.uuid4().hex}"
    await oidc_api.link(issuer, tenant, admin, Role.ADMIN, sub)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "wrong audience": issuer.token(sub, aud="another-app"),
        "no audience": issuer.token(sub, aud=None),
        "wrong issuer": issuer.token(sub, iss="https://evil.example"),
        "expired beyond the leeway": issuer.token(sub, ttl=-120),
        "not yet valid beyond the leeway": issuer.token(sub, nbf=time.time() + 120),
        "signed by another key under the same kid": issuer.token(sub, key=stranger),
        "HS256 with the test secret": issue_token(Settings(jwt_secret=JWT_SECRET), tenant=tenant, role=Role.ADMIN,
                                                  sub=admin),
        "HS256 claiming the IdP subject": jwt.encode({"sub": sub, "iss": issuer.url, "aud": AUDIENCE,
                                                      "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256"),
    }
    for what, token in refused.items():
        r = await oidc_api.http.get("/staff", headers={"Authorization": f"Bearer {token}"})
        assert_problem(r, 401, "not_authenticated")
        assert r.status_code == 401, what
    # within the 30 s leeway: accepted
    for what, token in {"expired 10 s ago": issuer.token(sub, ttl=-10),
                        "valid from 10 s ahead": issuer.token(sub, nbf=time.time() + 10)}.items():
        r = await oidc_api.http.get("/staff", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, (what, r.text)


@pytest.fixture
def own_issuer() -> Iterator[Issuer]:
    """An issuer of the test's own: it rotates keys, which the module's app must not see."""
    with running_issuer() as issuer:
        yield issuer


async def test_an_unknown_kid_fetches_the_keys_again(database, own_issuer, tmp_path):
    issuer = own_issuer
    verifier = TokenVerifier(oidc_settings(database, tmp_path, issuer), key_refresh_cooldown=0)
    sub = f"idp-{uuid.uuid4().hex}"
    fetches = issuer.jwks_fetches
    await verifier.subject(issuer.token(sub))
    await verifier.subject(issuer.token(sub, jti="again"))
    assert issuer.jwks_fetches == fetches + 1, "keys are cached between tokens"
    issuer.rotate()  # the provider rotates: the next token names a kid the service never saw
    hashed, claims = await verifier.subject(issuer.token(sub))
    assert claims["sub"] == sub and len(hashed) == 32
    assert issuer.jwks_fetches == fetches + 2


async def test_made_up_kids_do_not_flood_the_provider(database, issuer, tmp_path):
    verifier = TokenVerifier(oidc_settings(database, tmp_path, issuer))  # the default 30 s cooldown
    sub = f"idp-{uuid.uuid4().hex}"
    await verifier.subject(issuer.token(sub))
    fetches = issuer.jwks_fetches
    for n in range(5):
        with pytest.raises(NotAuthorizedException):
            await verifier.subject(issuer.token(sub, kid=f"made-up-{n}"))
    assert issuer.jwks_fetches <= fetches + 1


async def test_unlinking_stops_the_idp_token_at_once_and_relinking_is_recorded(oidc_api, issuer):
    tenant, admin = await oidc_api.clinic_with_admin()
    first, second = f"idp-{uuid.uuid4().hex}", f"idp-{uuid.uuid4().hex}"
    await oidc_api.link(issuer, tenant, admin, Role.ADMIN, first)
    assert (await oidc_api.http.get("/staff", headers=issuer.bearer(first))).status_code == 200
    # a re-link (a new account for the same admin) replaces the first one
    await oidc_api.link(issuer, tenant, admin, Role.ADMIN, second)
    assert_problem(await oidc_api.http.get("/staff", headers=issuer.bearer(first)), 401)
    assert (await oidc_api.http.get("/staff", headers=issuer.bearer(second))).status_code == 200
    r = await oidc_api.http.post(f"/identity/links/{admin}/unlinking", headers=issuer.bearer(second))
    assert r.status_code == 200, r.text
    assert_problem(await oidc_api.http.get("/staff", headers=issuer.bearer(second)), 401)
    events = await oidc_api.svc.store.read_stream(f"identity-{tenant}")
    names = [type(e.payload).__name__ for e in events]
    assert names == ["IdentityInvited", "InvitationRedeemed", "IdentityLinked",
                     "IdentityInvited", "InvitationRedeemed", "IdentityUnlinked", "IdentityLinked",
                     "IdentityUnlinked"], names


async def test_hs256_is_refused_when_oidc_is_configured_even_with_a_secret(database, issuer, tmp_path):
    verifier = TokenVerifier(oidc_settings(database, tmp_path, issuer, jwt_secret=JWT_SECRET))
    token = issue_token(Settings(jwt_secret=JWT_SECRET), tenant=uuid.uuid4(), role=Role.ADMIN, sub=uuid.uuid4())
    with pytest.raises(NotAuthorizedException):
        await verifier.verify(token)
    # development mode keeps Alliance's own tokens working beside the IdP's
    dev = TokenVerifier(oidc_settings(database, tmp_path, issuer, jwt_secret=JWT_SECRET, env="development"))
    assert (await dev.verify(token)).role is Role.ADMIN


async def test_the_operator_links_the_first_admin_from_the_command_line(oidc_api, issuer, database, tmp_path):
    tenant, admin = await oidc_api.clinic_with_admin()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")},
           "DATABASE_URL": database.owner_dsn, "ALLIANCE_KEK": KEK, "ALLIANCE_HOME": str(tmp_path),
           "ALLIANCE_OIDC_ISSUER": issuer.url, "ALLIANCE_OIDC_AUDIENCE": AUDIENCE, "ALLIANCE_LOG_LEVEL": "warning"}

    def cli(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "alliance.api.cli", "identity", *args], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    printed = cli("invite", "--tenant", str(tenant), "--principal", str(admin))
    invitation = re.search(r"invitation (\S+)", printed)[1]  # type: ignore[index]
    code = re.search(r"code: (\S+)", printed)[1]  # type: ignore[index]
    sub = f"idp-{uuid.uuid4().hex}"
    r = await oidc_api.http.post("/identity/invitations/redemption", json={"code": code},
                                 headers=issuer.bearer(sub, email="first.admin@clinic.example"))
    assert r.status_code == 202, r.text
    assert "first.admin@clinic.example" in cli("show", "--tenant", str(tenant), "--invitation", invitation)
    assert_problem(await oidc_api.http.get("/staff", headers=issuer.bearer(sub)), 401)
    assert cli("confirm", "--tenant", str(tenant), "--invitation", invitation).startswith("linked")
    assert (await oidc_api.http.get("/staff", headers=issuer.bearer(sub))).status_code == 200
