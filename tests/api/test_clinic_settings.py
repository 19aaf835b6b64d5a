"""GET /clinic/settings: each setting read back as set, with who set it and when; the
defaults where nothing was set; one clinic never sees another's; admins only; staff
addresses never shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alliance.core.reminders.events import DEFAULT_BODY, DEFAULT_SUBJECT
from tests.api.support import assert_problem
from tests.api.test_response_shapes import answer_schema, conform

BUILT_IN_CRISIS = "If you are in danger or might harm yourself, call your local emergency number now."


async def _settings(api: Any, clinic: Any) -> dict[str, Any]:
    r = await api.http.get("/clinic/settings", headers=api.token(clinic.tenant, "admin", clinic.admin))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    doc = (await api.http.get("/schema/openapi.json")).json()
    problems = conform(doc, answer_schema(doc, "getClinicSettings", 200), r.json())
    assert not problems, problems  # strictly the documented shape: nothing undeclared, nothing missing
    return r.json()  # type: ignore[no-any-return]


def _staff(clinic: Any) -> list[str]:
    return sorted(str(s) for s in (clinic.admin, clinic.clinician, clinic.clinician_2, clinic.outsider,
                                   clinic.auditor, clinic.supervisor))


def _assert_defaults(got: dict[str, Any], clinic: Any) -> None:
    assert got["crisis_information"] == {"text": None, "contacts": [], "shown_text": BUILT_IN_CRISIS,
                                         "changed": None}
    assert got["escalation_policy"] == {"escalation_interval_hours": 24.0, "duty_clinician_id": None,
                                        "changed": None}
    assert got["alert_policy"] == {"after_administrations": 8, "after_weeks": None, "changed": None}
    assert got["reminder_text"] == {"subject": DEFAULT_SUBJECT, "body": DEFAULT_BODY, "changed": None}
    assert got["staff_contacts"] == [{"staff_id": s, "has_email": False, "changed": None} for s in _staff(clinic)]


async def test_nothing_set_answers_the_documented_defaults(api, clinic):
    _assert_defaults(await _settings(api, clinic), clinic)


async def test_each_setting_is_read_back_with_who_and_when(api, clinic):
    admin = api.token(clinic.tenant, "admin", clinic.admin)
    before = datetime.now(UTC) - timedelta(seconds=5)
    posts = [("/clinic/crisis-information", {"text": "Call the duty line now.", "contacts": ["Duty: 0100 200"]}),
             ("/clinic/escalation-policy", {"escalation_interval_hours": 6.5,
                                            "duty_clinician_id": str(clinic.supervisor)}),
             ("/clinic/alert-policy", {"after_administrations": 5, "after_weeks": 10}),
             ("/clinic/reminder-text", {"subject": "A note from your clinic", "body": "Time for a check-in."}),
             (f"/staff/{clinic.clinician}/contact", {"email": "sam.clinician@clinic.example"})]
    for path, body in posts:
        r = await api.http.post(path, json=body, headers=admin)
        assert r.status_code == 201, (path, r.text)
    after = datetime.now(UTC) + timedelta(seconds=5)
    got = await _settings(api, clinic)

    def by_admin(change: dict[str, Any] | None) -> None:
        assert change is not None
        assert change["by"] == str(clinic.admin) and change["by_role"] == "admin", change
        assert before <= datetime.fromisoformat(change["at"]) <= after, change

    crisis = got["crisis_information"]
    assert (crisis["text"], crisis["contacts"], crisis["shown_text"]) == (
        "Call the duty line now.", ["Duty: 0100 200"], "Call the duty line now.")
    escalation = got["escalation_policy"]
    assert (escalation["escalation_interval_hours"], escalation["duty_clinician_id"]) == (6.5, str(clinic.supervisor))
    alert = got["alert_policy"]
    assert (alert["after_administrations"], alert["after_weeks"]) == (5, 10.0)
    reminder = got["reminder_text"]
    assert (reminder["subject"], reminder["body"]) == ("A note from your clinic", "Time for a check-in.")
    for setting in (crisis, escalation, alert, reminder):
        by_admin(setting["changed"])
    contacts = {c["staff_id"]: c for c in got["staff_contacts"]}
    assert sorted(contacts) == _staff(clinic)
    assert contacts[str(clinic.clinician)]["has_email"] is True
    by_admin(contacts[str(clinic.clinician)]["changed"])
    assert not any(c["has_email"] or c["changed"] for s, c in contacts.items() if s != str(clinic.clinician))

    # the address is sealed personal data: never answered, only that one is set
    r = await api.http.get("/clinic/settings", headers=admin)
    assert "sam.clinician" not in r.text and "@" not in r.text, r.text

    # a later change replaces the earlier one; a cleared email is "not set", with its change
    r = await api.http.post("/clinic/alert-policy", json={"after_administrations": 12}, headers=admin)
    assert r.status_code == 201, r.text
    r = await api.http.post(f"/staff/{clinic.clinician}/contact", json={"email": None}, headers=admin)
    assert r.status_code == 201, r.text
    again = await _settings(api, clinic)
    assert (again["alert_policy"]["after_administrations"], again["alert_policy"]["after_weeks"]) == (12, None)
    when = datetime.fromisoformat
    assert when(again["alert_policy"]["changed"]["at"]) >= when(alert["changed"]["at"])
    cleared = next(c for c in again["staff_contacts"] if c["staff_id"] == str(clinic.clinician))
    assert cleared["has_email"] is False and cleared["changed"] is not None
    assert again["crisis_information"] == crisis  # untouched settings stay as they were

    # a deactivated staff member is no longer listed (their address is not used either)
    r = await api.http.post(f"/staff/{clinic.outsider}/deactivation", headers=admin)
    assert r.status_code == 201, r.text
    listed = {c["staff_id"] for c in (await _settings(api, clinic))["staff_contacts"]}
    assert str(clinic.outsider) not in listed and str(clinic.clinician) in listed


async def test_another_clinics_admin_sees_only_their_own(api, clinic):
    other = await api.clinic()
    admin = api.token(clinic.tenant, "admin", clinic.admin)
    for path, body in (("/clinic/crisis-information", {"text": "Clinic A's duty line", "contacts": ["A"]}),
                       ("/clinic/escalation-policy", {"escalation_interval_hours": 3}),
                       ("/clinic/alert-policy", {"after_administrations": 4}),
                       ("/clinic/reminder-text", {"subject": "From clinic A", "body": "Clinic A asks."}),
                       (f"/staff/{clinic.clinician}/contact", {"email": "a@clinic-a.example"})):
        r = await api.http.post(path, json=body, headers=admin)
        assert r.status_code == 201, (path, r.text)
    assert (await _settings(api, clinic))["crisis_information"]["text"] == "Clinic A's duty line"
    theirs = await _settings(api, other)
    _assert_defaults(theirs, other)  # none of clinic A's settings, none of its staff
    assert not {str(clinic.clinician), str(clinic.admin)} & {c["staff_id"] for c in theirs["staff_contacts"]}
    # clinic A's admin with a token naming clinic B is no staff of B
    r = await api.http.get("/clinic/settings", headers=api.token(other.tenant, "admin", clinic.admin))
    assert_problem(r, 403, "staff_inactive")


async def test_only_admins_read_the_settings(api, clinic):
    for role, who in (("clinician", clinic.clinician), ("supervisor", clinic.supervisor),
                      ("auditor", clinic.auditor)):
        r = await api.http.get("/clinic/settings", headers=api.token(clinic.tenant, role, who))
        problem = assert_problem(r, 403, "role_not_allowed")  # RFC 9457 problem+json
        assert "admin" in problem["detail"], problem
    assert_problem(await api.http.get("/clinic/settings"), 401)
