"""The clinic's escalation policy and its staff's email addresses: set by an administrator over
HTTP, refused with a stable code and field when wrong, and the address sealed at rest."""

from __future__ import annotations

import uuid

import asyncpg

from alliance.core.clinic import DEFAULT_ESCALATION_HOURS
from tests.notifications.support import care_team


async def test_the_escalation_interval_defaults_to_24_hours_and_is_bounded(notify_api) -> None:
    c = await notify_api.clinic()
    admin = notify_api.token(c.tenant, "admin", c.admin)
    assert (await notify_api.services.clinic(c.tenant)).escalation_interval_hours == DEFAULT_ESCALATION_HOURS == 24
    for hours in (0, -1, 72.5, 1000):
        r = await notify_api.http.post("/clinic/escalation-policy", json={"escalation_interval_hours": hours},
                                       headers=admin)
        assert r.status_code == 422, r.text
        assert (r.json()["code"], r.json()["field"]) == ("escalation_interval_out_of_range",
                                                         "escalation_interval_hours")
    r = await notify_api.http.post("/clinic/escalation-policy", json={
        "escalation_interval_hours": 72, "duty_clinician_id": str(c.supervisor)}, headers=admin)
    assert r.status_code == 201, r.text
    state = await notify_api.services.clinic(c.tenant)
    assert (state.escalation_interval_hours, state.duty_clinician) == (72, c.supervisor)


async def test_the_duty_clinician_must_be_active_clinical_staff(notify_api) -> None:
    c = await notify_api.clinic()
    admin = notify_api.token(c.tenant, "admin", c.admin)
    for who in (uuid.uuid4(), c.auditor):
        r = await notify_api.http.post("/clinic/escalation-policy", json={"duty_clinician_id": str(who)},
                                       headers=admin)
        assert r.status_code == 409, r.text
        assert (r.json()["code"], r.json()["field"]) == ("duty_clinician_not_active", "duty_clinician_id")


async def test_only_an_admin_sets_the_policy_or_an_address(notify_api) -> None:
    c = await notify_api.clinic()
    clin = notify_api.token(c.tenant, "clinician", c.clinician)
    r = await notify_api.http.post("/clinic/escalation-policy", json={"escalation_interval_hours": 1}, headers=clin)
    assert r.status_code == 403
    r = await notify_api.http.post(f"/staff/{c.clinician}/contact", json={"email": "me@x.example"}, headers=clin)
    assert r.status_code == 403


async def test_a_staff_address_is_validated_and_sealed_at_rest(notify_api, database) -> None:
    team = await care_team(notify_api)
    admin = notify_api.token(team.tenant, "admin", team.admin)
    r = await notify_api.http.post(f"/staff/{team.primary}/contact", json={"email": "not an address"},
                                   headers=admin)
    assert r.status_code == 422 and (r.json()["code"], r.json()["field"]) == ("invalid_email", "email")
    r = await notify_api.http.post(f"/staff/{uuid.uuid4()}/contact", json={"email": "a@b.example"}, headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "staff_not_active"
    address = team.email(team.primary)
    assert (await notify_api.services.clinic(team.tenant)).email_of(team.primary) == address
    conn = await asyncpg.connect(database.owner_dsn)
    try:
        rows = await conn.fetch("SELECT payload, secret FROM events WHERE type = 'clinic.staff_contact_set' "
                                "AND tenant_id = $1", team.tenant)
    finally:
        await conn.close()
    assert len(rows) == 4
    for row in rows:
        assert address.encode() not in bytes(row["payload"]) and b"@clinic.example" not in bytes(row["payload"])
        assert row["secret"] is not None and address.encode() not in bytes(row["secret"])
    # cleared with null: nobody is emailed at the old address
    r = await notify_api.http.post(f"/staff/{team.primary}/contact", json={"email": None}, headers=admin)
    assert r.status_code == 201, r.text
    assert (await notify_api.services.clinic(team.tenant)).email_of(team.primary) is None
