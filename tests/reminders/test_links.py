"""One-time questionnaire links handed over in session: opening never spends a link, an answer
spends it once, and every bad use (expired, reused, consent withdrawn, another client's
administration, another link's form) is a clear 4xx naming the field with no measurement
recorded (the refusal itself is recorded on the link's stream). A risk answer shows the
clinic's crisis information at once and raises the flag."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from alliance.core.clock import SettableClock
from tests.api.support import phq9
from tests.reminders.support import a_clock, weekly_phq9


@pytest.fixture
async def clocked(remind_api) -> AsyncIterator[tuple[SettableClock, Any]]:
    clock, day = a_clock()
    before = remind_api.services.clock
    remind_api.services.clock = clock
    try:
        yield clock, day
    finally:
        remind_api.services.clock = before


async def hand_over(api: Any, s: Any, **body: Any) -> Any:
    clin = api.token(s.team.tenant, "clinician", s.team.primary)
    return await api.http.post(f"/clients/{s.client}/questionnaire-links", json={"instrument_id": "phq9", **body},
                               headers=clin)


async def stored(api: Any, s: Any) -> tuple[int, list[Any]]:
    events = await api.services.store.read_stream(f"client-{s.client}")
    return len(events), [e for e in events if e.type == "measurement.recorded"]


async def refusals(api: Any, link_id: str) -> list[str]:
    events = await api.services.store.read_stream(f"questionnaire-link-{link_id}")
    return [e.payload.reason for e in events if e.type == "questionnaire_link.refused"]


def form(answers: dict[str, int], administration: Any) -> dict[str, str]:
    return {"administration_id": str(administration), **{f"answer.{k}": str(v) for k, v in answers.items()}}


async def test_a_link_handed_over_in_session_opens_without_an_account_and_answers_once(remind_api, clocked):
    api = remind_api
    clock, day = clocked
    s = await weekly_phq9(api, day)
    r = await hand_over(api, s)
    assert r.status_code == 201, r.text
    link = r.json()
    assert link["administration_id"] == str(s.administration())  # the one due today
    assert len(link["token"]) >= 64 and link["url"].endswith("/q/" + link["token"])
    # only the token's hash is stored
    [issued] = await api.services.store.read_stream(f"questionnaire-link-{link['link_id']}")
    assert link["token"] not in str(issued.payload) and len(issued.payload.token_hash) == 64

    before_opening = await stored(api, s)
    page = await api.http.get(f"/q/{link['token']}")
    assert page.status_code == 200
    html = page.text
    assert str(s.client) not in html and "Walk the dog" not in html  # no id, no goal words, no past answers
    assert page.headers["referrer-policy"] == "no-referrer"
    assert await stored(api, s) == before_opening  # reading changed nothing
    assert before_opening[1] == []

    done = await api.http.post(f"/q/{link['token']}", data=form(phq9(4), link["administration_id"]))
    assert done.status_code == 201, done.text
    _, after = await stored(api, s)
    assert [(m.payload.reported_by.informant, m.payload.reported_by.channel) for m in after] == [("self", "link")]
    assert after[0].payload.observed_at == clock.now()

    reused = await api.http.post(f"/q/{link['token']}", data=form(phq9(4), link["administration_id"]))
    assert reused.status_code == 409 and "already used" in reused.text
    assert len((await stored(api, s))[1]) == 1
    assert await refusals(api, link["link_id"]) == ["used"]


async def test_an_expired_link_is_refused_naming_the_token_and_records_nothing_else(remind_api, clocked):
    api = remind_api
    clock, day = clocked
    s = await weekly_phq9(api, day)
    link = (await hand_over(api, s)).json()
    clock.advance(timedelta(hours=api.settings.questionnaire_link_hours, seconds=1))
    page = await api.http.get(f"/q/{link['token']}")
    assert page.status_code == 410 and "expired" in page.text
    assert await refusals(api, link["link_id"]) == []  # opening records nothing
    count, _ = await stored(api, s)
    r = await api.http.post(f"/q/{link['token']}", json={"answers": phq9(4)})
    assert r.status_code == 410
    assert (r.json()["code"], r.json()["field"]) == ("link_expired", "token")
    assert await stored(api, s) == (count, [])
    assert await refusals(api, link["link_id"]) == ["expired"]


async def test_after_consent_is_withdrawn_the_link_is_refused(remind_api, clocked):
    api = remind_api
    _, day = clocked
    s = await weekly_phq9(api, day)
    link = (await hand_over(api, s)).json()
    me = api.token(s.team.tenant, "client", s.client)
    r = await api.http.post(f"/clients/{s.client}/consents/measurement/withdrawal", json={"mode": "self"}, headers=me)
    assert r.status_code == 201, r.text
    page = await api.http.get(f"/q/{link['token']}")
    assert page.status_code == 409
    count, _ = await stored(api, s)
    r = await api.http.post(f"/q/{link['token']}", json={"answers": phq9(4)})
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (409, "consent_not_in_force", "token")
    assert await stored(api, s) == (count, [])
    assert await refusals(api, link["link_id"]) == ["consent_not_in_force"]
    # and no new link is handed over while consent is not in force
    again = await hand_over(api, s)
    assert again.status_code == 409 and again.json()["code"] == "consent_not_in_force"


async def test_a_link_for_another_clients_administration_or_another_links_form_is_refused(remind_api, clocked):
    api = remind_api
    _, day = clocked
    a, b = await weekly_phq9(api, day), await weekly_phq9(api, day)
    # staff of a's care team cannot bind a's link to b's administration
    r = await hand_over(api, a, administration_id=str(b.administration()))
    assert r.status_code == 422
    assert (r.json()["code"], r.json()["field"]) == ("unknown_administration", "administration_id")
    assert await api.services.store.read_stream(f"client-{a.client}") == \
        await api.services.store.read_stream(f"client-{a.client}")
    # a's form (with a's administration) posted to b's link
    link_a, link_b = (await hand_over(api, a)).json(), (await hand_over(api, b)).json()
    count_b, _ = await stored(api, b)
    r = await api.http.post(f"/q/{link_b['token']}", json={"answers": phq9(4),
                                                           "administration_id": link_a["administration_id"]})
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "wrong_administration", "administration_id")
    assert await stored(api, b) == (count_b, [])
    # a token that opens nothing: 404 naming the token, recorded nowhere
    forged = link_b["token"][:-4] + ("AAAA" if not link_b["token"].endswith("AAAA") else "BBBB")
    r = await api.http.post(f"/q/{forged}", json={"answers": phq9(4)})
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (404, "link_not_found", "token")
    assert (await api.http.get("/q/not-a-link")).status_code == 404
    # an unknown instrument for a new link
    r = await hand_over(api, a, instrument_id="no_such_measure")
    assert (r.status_code, r.json()["field"]) == (422, "instrument_id")


async def test_a_risk_answer_shows_the_crisis_information_at_once_and_raises_the_flag(remind_api, clocked):
    api = remind_api
    _, day = clocked
    s = await weekly_phq9(api, day)
    admin = api.token(s.team.tenant, "admin", s.team.admin)
    r = await api.http.post("/clinic/crisis-information", headers=admin,
                            json={"text": "Call the clinic's crisis line now.", "contacts": ["0800 000 000"]})
    assert r.status_code == 201, r.text
    link = (await hand_over(api, s)).json()
    done = await api.http.post(f"/q/{link['token']}", data=form(phq9(12, item9=2), link["administration_id"]))
    assert done.status_code == 201
    html = done.text
    assert html.index("If you need help now") < html.index("<h1>Thank you")  # the crisis information comes first
    assert "Call the clinic&#x27;s crisis line now." in html and "0800 000 000" in html
    events = await api.services.store.read_stream(f"client-{s.client}")
    [flag] = [e for e in events if e.type == "risk.flag_raised"]
    assert (flag.payload.reason, str(flag.actor_role), flag.payload.items) == ("risk_answer", "client",
                                                                               ("item9",))


async def test_a_bad_answer_shows_the_form_again_and_keeps_the_link(remind_api, clocked):
    api = remind_api
    _, day = clocked
    s = await weekly_phq9(api, day)
    link = (await hand_over(api, s)).json()
    bad = form(phq9(4), link["administration_id"]) | {"answer.item1": "7"}  # outside 0-3
    r = await api.http.post(f"/q/{link['token']}", data=bad)
    assert r.status_code == 422 and '<form method="post"' in r.text and 'role="alert"' in r.text
    assert (await stored(api, s))[1] == []
    ok = await api.http.post(f"/q/{link['token']}", data=form(phq9(4), link["administration_id"]))
    assert ok.status_code == 201


async def test_reminder_settings_are_the_clients_and_the_text_never_names_an_instrument(remind_api, clocked):
    api = remind_api
    _, day = clocked
    s = await weekly_phq9(api, day)
    admin = api.token(s.team.tenant, "admin", s.team.admin)
    for subject in ("Your PHQ-9 is ready", "Patient Health Questionnaire (PHQ-9) time"):
        r = await api.http.post("/clinic/reminder-text", headers=admin, json={"subject": subject, "body": "Hello."})
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "names_instrument", "subject")
    r = await api.http.post("/clinic/reminder-text", headers=admin,
                            json={"subject": "A note from Riverside", "body": "A short check-in is ready."})
    assert r.status_code == 201, r.text
    clin = api.token(s.team.tenant, "clinician", s.team.primary)
    r = await api.http.post(f"/clients/{s.client}/reminder-self-monitoring", json={"after_discharge": True},
                            headers=clin)
    assert r.status_code == 403  # the client's own call
    r = await api.http.post(f"/clients/{s.client}/reminder-contact", json={"email": "not an address"}, headers=clin)
    assert (r.status_code, r.json()["field"]) == (422, "email")
    # the address is sealed at rest: the stored payload bytes do not hold it
    rows = await api.services.pool.fetch("SELECT payload FROM events WHERE stream_id = $1", f"reminders-{s.client}")
    assert rows and all(s.email.encode() not in bytes(row[0]) for row in rows)
    view = await api.http.get(f"/clients/{s.client}/reminders", headers=clin)
    assert view.status_code == 200 and view.json()["has_email"] is True and s.email not in view.text
    assert uuid.UUID(str(s.client))
