"""Linking an identity provider's account to a client or staff member: invite, redeem with the IdP
token, the inviter confirms; the decider's rules given/when/then, then the flow over HTTP on the real
app (development mode with an OIDC issuer: Alliance's own tokens keep working beside the IdP's)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from alliance.api.app import create_app
from alliance.api.auth import subject_hash
from alliance.core import identity_links as il
from alliance.core.errors import DomainRuleViolation, Forbidden, NotFound
from alliance.core.identity import Actor, Role
from tests.api.conftest import JWT_SECRET, Api, running
from tests.api.oidc_issuer import Issuer, running_issuer
from tests.api.support import assert_problem
from tests.api.test_oidc import oidc_settings

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TENANT, CLINICIAN, CLIENT = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def _cmd(cls: type[Any], at: datetime, actor: Actor, **fields: Any) -> Any:
    return cls(command_id=uuid.uuid4(), actor=actor, at=at, tenant_id=TENANT, **fields)


def _given(*events: Any) -> il.IdentityState:
    state = il.initial_identity_state(TENANT)
    for event in events:
        state = il.evolve_identity(state, event)
    return state


CLIN = Actor(id=CLINICIAN, role=Role.CLINICIAN)
SYSTEM = Actor(id=uuid.UUID(int=0), role=Role.SYSTEM)
INVITATION = uuid.uuid4()
INVITED = il.IdentityInvited(tenant_id=TENANT, invitation_id=INVITATION, code_hash="c0de", principal_id=CLIENT,
                             role=Role.CLIENT, by=CLINICIAN, by_role=Role.CLINICIAN,
                             expires_at=T0 + timedelta(hours=72))


def test_an_invitation_lasts_at_most_72_hours_and_only_the_responsible_invite():
    [event] = il.decide_identity(_cmd(il.Invite, T0, CLIN, invitation_id=INVITATION, code_hash="c0de",
                                      principal_id=CLIENT, role=Role.CLIENT, hours=500,
                                      allowed_inviters=frozenset({CLINICIAN})), _given())
    assert event.expires_at == T0 + timedelta(hours=72)
    with pytest.raises(Forbidden):
        il.decide_identity(_cmd(il.Invite, T0, CLIN, invitation_id=INVITATION, code_hash="c0de",
                                principal_id=CLIENT, role=Role.CLIENT, allowed_inviters=frozenset()), _given())
    with pytest.raises(Forbidden) as auditor:
        il.decide_identity(_cmd(il.Invite, T0, Actor(id=CLINICIAN, role=Role.AUDITOR), invitation_id=INVITATION,
                                code_hash="c0de", principal_id=CLIENT, role=Role.CLIENT,
                                allowed_inviters=frozenset({CLINICIAN})), _given())
    assert auditor.value.code == "auditor_read_only"


def test_a_code_is_single_use_and_expires():
    redeem = {"invitation_id": INVITATION, "code_hash": "c0de", "subject_hash": "aa"}
    [pending] = il.decide_identity(_cmd(il.Redeem, T0 + timedelta(hours=71), SYSTEM, **redeem), _given(INVITED))
    assert isinstance(pending, il.InvitationRedeemed)
    with pytest.raises(DomainRuleViolation) as used:
        il.decide_identity(_cmd(il.Redeem, T0, SYSTEM, **redeem), _given(INVITED, pending))
    assert used.value.code == "invitation_used"
    with pytest.raises(DomainRuleViolation) as expired:
        il.decide_identity(_cmd(il.Redeem, T0 + timedelta(hours=72), SYSTEM, **redeem), _given(INVITED))
    assert expired.value.code == "invitation_expired"
    with pytest.raises(NotFound):
        il.decide_identity(_cmd(il.Redeem, T0, SYSTEM, **{**redeem, "code_hash": "wrong"}), _given(INVITED))


def test_only_the_inviter_confirms_and_a_confirmation_links():
    pending = il.InvitationRedeemed(invitation_id=INVITATION, subject_hash="aa", account_email="jo@idp.example")
    with pytest.raises(Forbidden):
        il.decide_identity(_cmd(il.Confirm, T0, Actor(id=uuid.uuid4(), role=Role.CLINICIAN),
                                invitation_id=INVITATION, accept=True), _given(INVITED, pending))
    with pytest.raises(DomainRuleViolation):  # nobody redeemed yet: nothing to confirm
        il.decide_identity(_cmd(il.Confirm, T0, CLIN, invitation_id=INVITATION, accept=True), _given(INVITED))
    [linked] = il.decide_identity(_cmd(il.Confirm, T0, CLIN, invitation_id=INVITATION, accept=True),
                                  _given(INVITED, pending))
    assert isinstance(linked, il.IdentityLinked) and linked.principal_id == CLIENT and linked.subject_hash == "aa"
    assert _given(INVITED, pending, linked).links == {"aa": (CLIENT, Role.CLIENT)}
    [rejected] = il.decide_identity(_cmd(il.Confirm, T0, CLIN, invitation_id=INVITATION, accept=False),
                                    _given(INVITED, pending))
    assert isinstance(rejected, il.IdentityLinkRejected)
    assert _given(INVITED, pending, rejected).links == {}


# --- over HTTP ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with running_issuer() as issuer:
        yield issuer


@pytest.fixture(scope="module")
async def dev_api(database, issuer, tmp_path_factory) -> AsyncIterator[Api]:
    settings = oidc_settings(database, tmp_path_factory.mktemp("alliance-links"), issuer, env="development",
                             jwt_secret=JWT_SECRET)
    app = create_app(settings)
    async with running(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                               base_url="http://alliance.test") as http:
        yield Api(http, settings, app)


async def _invite(api: Api, headers: dict[str, str], principal: uuid.UUID, role: str = "client") -> dict[str, Any]:
    r = await api.http.post("/identity/invitations", json={"principal_id": str(principal), "role": role},
                            headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_an_invited_client_signs_in_with_their_idp_subject(dev_api, issuer, database):
    api = dev_api
    clinic = await api.clinic()
    client_id = await api.enrolled_client(clinic, consents=())
    primary = api.token(clinic.tenant, "clinician", clinic.clinician)
    invitation = await _invite(api, primary, client_id)
    expires = datetime.fromisoformat(invitation["expires_at"])
    assert timedelta(hours=71) < expires - datetime.now(UTC) <= timedelta(hours=72)
    sub = f"idp-{uuid.uuid4().hex}"
    mine = issuer.bearer(sub, email="jo@idp.example")
    # Before the link the IdP token is nobody in Alliance.
    consent = {"scope": "goal_setting", "text_version": "v1", "mode": "self"}
    assert_problem(await api.http.post(f"/clients/{client_id}/consents", json=consent, headers=mine), 401)
    r = await api.http.post("/identity/invitations/redemption", json={"code": invitation["code"]}, headers=mine)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    # Pending: still nobody, until the inviter confirms the account the IdP describes.
    assert_problem(await api.http.post(f"/clients/{client_id}/consents", json=consent, headers=mine), 401)
    r = await api.http.get(f"/identity/invitations/{invitation['invitation_id']}", headers=primary)
    assert r.status_code == 200 and r.json()["account_email"] == "jo@idp.example", r.text
    r = await api.http.post(f"/identity/invitations/{invitation['invitation_id']}/confirmation",
                            json={"accept": True}, headers=primary)
    assert r.status_code == 200 and r.json()["status"] == "linked", r.text
    r = await api.http.post(f"/clients/{client_id}/consents", json=consent, headers=issuer.bearer(sub))
    assert r.status_code == 201, r.text
    # The token carries the IdP's subject; the record keeps Alliance's id for the client.
    events = await api.services.store.read_stream(f"client-{client_id}")
    assert events[-1].actor_id == client_id and events[-1].actor_role is Role.CLIENT
    # The code is single-use, and it is stored only as its hash.
    again = await api.http.post("/identity/invitations/redemption", json={"code": invitation["code"]},
                                headers=issuer.bearer(f"idp-{uuid.uuid4().hex}"))
    assert_problem(again, 409, "invitation_used")
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        stored = await conn.fetch("SELECT payload, secret FROM events WHERE stream_id = $1",
                                  f"identity-{clinic.tenant}")
        table = await conn.fetch("SELECT * FROM identity_links WHERE principal_id = $1", client_id)
    finally:
        await conn.close()
    blob = b"".join(bytes(row["payload"]) + bytes(row["secret"] or b"") for row in stored)
    assert invitation["code"].encode() not in blob and sub.encode() not in blob
    assert hashlib.sha256(invitation["code"].encode()).hexdigest().encode() in blob
    assert b"jo@idp.example" not in blob  # the IdP's email claim is sealed
    assert [(r["tenant_id"], r["role"], bytes(r["subject_hash"])) for r in table] == [
        (clinic.tenant, "client", subject_hash(issuer.url, sub))]


async def test_a_forwarded_invitation_does_not_hand_over_the_record(dev_api, issuer):
    api = dev_api
    clinic = await api.clinic()
    client_id = await api.enrolled_client(clinic, consents=())
    admin = api.token(clinic.tenant, "admin", clinic.admin)
    invitation = await _invite(api, admin, client_id)
    stranger = f"idp-{uuid.uuid4().hex}"
    r = await api.http.post("/identity/invitations/redemption", json={"code": invitation["code"]},
                            headers=issuer.bearer(stranger, email="someone.else@idp.example"))
    assert r.status_code == 202, r.text
    view = await api.http.get(f"/identity/invitations/{invitation['invitation_id']}", headers=admin)
    assert view.json()["account_email"] == "someone.else@idp.example"  # not the client the admin knows
    r = await api.http.post(f"/identity/invitations/{invitation['invitation_id']}/confirmation",
                            json={"accept": False}, headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
    r = await api.http.get(f"/clients/{client_id}/plan", headers=issuer.bearer(stranger))
    assert_problem(r, 401)


async def test_who_may_invite_and_bad_codes(dev_api, issuer):
    api = dev_api
    clinic = await api.clinic()
    client_id = await api.enrolled_client(clinic, consents=())
    on_other_team = api.token(clinic.tenant, "clinician", clinic.clinician_2)
    r = await api.http.post("/identity/invitations", json={"principal_id": str(client_id), "role": "client"},
                            headers=on_other_team)
    assert_problem(r, 403, "not_allowed_to_invite")
    r = await api.http.post("/identity/invitations", json={"principal_id": str(client_id), "role": "client"},
                            headers=api.token(clinic.tenant, "client", client_id))
    assert_problem(r, 403, "not_allowed_to_invite")
    r = await api.http.post("/identity/invitations", json={"principal_id": str(client_id), "role": "client",
                                                           "hours": 73},
                            headers=api.token(clinic.tenant, "admin", clinic.admin))
    assert assert_problem(r, 422)["field"] == "hours"
    # a staff member is invited by an admin, for the role they hold
    staff = await _invite(api, api.token(clinic.tenant, "admin", clinic.admin), clinic.clinician_2, "clinician")
    assert staff["code"]
    r = await api.http.post("/identity/invitations", json={"principal_id": str(clinic.clinician_2),
                                                           "role": "admin"},
                            headers=api.token(clinic.tenant, "admin", clinic.admin))
    assert_problem(r, 422, "staff_not_found")
    for code in ("nonsense", staff["code"][:-4] + "AAAA"):
        r = await api.http.post("/identity/invitations/redemption", json={"code": code},
                                headers=issuer.bearer(f"idp-{uuid.uuid4().hex}"))
        assert_problem(r, 404, "invitation_not_found")
    # an Alliance token cannot redeem: the link is for an identity provider's account
    r = await api.http.post("/identity/invitations/redemption", json={"code": staff["code"]},
                            headers=api.token(clinic.tenant, "admin", clinic.admin))
    assert_problem(r, 401)
