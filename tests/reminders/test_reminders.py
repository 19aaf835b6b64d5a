"""Reminders end to end: a client on a weekly PHQ-9 gets a reminder email from a real local SMTP
server, answers through the one-time link in it, and the measurement is recorded as theirs
(self, by link). Suppression (consent, discharge, opt-out), a runner stopped after `scheduled`
and started again (exactly one email), and the process deciding nothing twice. Time is a
settable clock shared by the runner, the dispatcher and the link routes: nothing sleeps."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from alliance.core.notifications.events import notification_id_for
from alliance.core.reminders.events import REMINDER_KIND
from tests.notifications.support import eventually
from tests.reminders.support import (
    LINK,
    a_clock,
    body_of,
    dispatcher,
    email_channel,
    reminder_events,
    runner,
    weekly_phq9,
)

pytestmark = pytest.mark.timeout(120)

#: What would make a reminder clinical content: the instrument, scores, risk or mood words.
CLINICAL = re.compile(r"phq|patient health|depress|item|score|suicid|harm|mood|anxiety|gad", re.IGNORECASE)


@pytest.fixture
async def clocked(remind_api) -> AsyncIterator[Any]:
    clock, day = a_clock()
    before = remind_api.services.clock
    remind_api.services.clock = clock
    try:
        yield clock, day
    finally:
        remind_api.services.clock = before


def form(answers: dict[str, int], administration: Any) -> dict[str, str]:
    return {"administration_id": str(administration), **{f"answer.{k}": str(v) for k, v in answers.items()}}


async def measurements(api: Any, client: Any) -> list[Any]:
    events = await api.services.store.read_stream(f"client-{client}")
    return [e for e in events if e.type == "measurement.recorded"]


async def test_a_weekly_phq9_reminder_arrives_by_email_and_its_link_records_the_answer(remind_api, smtp, clocked):
    api = remind_api
    clock, day = clocked
    s = await weekly_phq9(api, day)
    r, d = runner(api, clock), dispatcher(api, [email_channel(smtp)], clock)
    r.start()
    d.start()
    try:
        mails = await eventually(lambda: smtp.inbox.to(s.email), what="the reminder email")
        sent = await eventually(lambda: reminder_events(api, s.client, "reminder.sent"), what="reminder.sent")
    finally:
        await r.stop()
        await d.stop()
    assert len(mails) == 1
    mail = mails[0]
    body = body_of(mail)
    # the clinic's plain text (the default): no instrument in the subject, nothing clinical anywhere
    assert mail["Subject"] == "A questionnaire is ready"
    assert not CLINICAL.search(mail["Subject"] + body), body
    nid = notification_id_for(REMINDER_KIND, s.reminder(), s.client, "email")
    assert mail["Message-ID"] == f"<{nid}@remind.example>"  # derived from the reminder id
    scheduled = await reminder_events(api, s.client, "reminder.scheduled")
    assert [(e.payload.administration_id, e.payload.channels, str(e.actor_role)) for e in scheduled] == [
        (s.administration(), ("email",), "system")]
    assert [(e.payload.channel, e.payload.message_id) for e in sent] == [("email", str(nid))]

    token = LINK.search(body).group(1)
    # Opening the page (twice: a mail scanner, then the client) uses nothing up
    for _ in range(2):
        page = await api.http.get(f"/q/{token}")
        assert page.status_code == 200, page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert '<form method="post"' in html and 'type="radio"' in html and "<script" not in html
    assert "http://" not in html.replace('xmlns="http://', "") and "https://" not in html  # nothing from elsewhere
    assert await measurements(api, s.client) == []

    answers = {f"item{i}": 1 for i in range(1, 9)} | {"item9": 0}
    done = await api.http.post(f"/q/{token}", data=form(answers, s.administration()))
    assert done.status_code == 201, done.text
    assert "Thank you" in done.text and "If you need help now" not in done.text
    [recorded] = await measurements(api, s.client)
    m = recorded.payload
    assert (m.instrument_id, m.scores["total"], m.reported_by.informant, m.reported_by.channel) == ("phq9", 8, "self",
                                                                                                   "link")
    assert (recorded.actor_id, str(recorded.actor_role), m.goal_ids) == (s.client, "client", (s.goal_id,))
    link_events = await api.services.store.read_stream(f"questionnaire-link-{scheduled[0].payload.link_id}")
    assert [e.type for e in link_events] == ["questionnaire_link.issued", "questionnaire_link.used"]
    # the plan now shows the administration done
    plan = await api.http.get(f"/clients/{s.client}/plan", headers=api.token(s.team.tenant, "client", s.client))
    administration = plan.json()["goals"][0]["measures"][0]["administration"]
    assert (administration["administration_id"], administration["state"]) == (str(s.administration()), "done")

    # Used once: a second answer is refused (and the refusal recorded), nothing else is
    again = await api.http.post(f"/q/{token}", json={"answers": answers})
    assert again.status_code == 409 and again.json()["code"] == "link_used" and again.json()["field"] == "token"
    assert len(await measurements(api, s.client)) == 1
    refused = await api.services.store.read_stream(f"questionnaire-link-{scheduled[0].payload.link_id}")
    assert [e.payload.reason for e in refused if e.type == "questionnaire_link.refused"] == ["used"]
    # and its page says so
    page = await api.http.get(f"/q/{token}")
    assert page.status_code == 409 and "already used" in page.text


async def _decided(api: Any, s: Any, clock: Any, **kw: Any) -> list[Any]:
    async def decisions() -> list[Any]:
        return [e for e in await reminder_events(api, s.client)
                if e.type in ("reminder.suppressed", "reminder.scheduled")]

    r = runner(api, clock, **kw)
    r.start()
    try:
        return await eventually(decisions, what="a decision")
    finally:
        await r.stop()


async def test_no_measurement_consent_suppresses_the_reminder(remind_api, clocked):
    api = remind_api
    clock, day = clocked
    s = await weekly_phq9(api, day)
    me = api.token(s.team.tenant, "client", s.client)
    r = await api.http.post(f"/clients/{s.client}/consents/measurement/withdrawal", json={"mode": "self"}, headers=me)
    assert r.status_code == 201, r.text
    [decided] = await _decided(api, s, clock)
    assert (decided.type, decided.payload.reason) == ("reminder.suppressed", "consent_not_in_force")
    assert await api.services.store.stream_version(
        f"notification-{notification_id_for(REMINDER_KIND, s.reminder(), s.client, 'email')}") == 0


async def test_after_discharge_only_if_self_monitoring_continues(remind_api, clocked):
    api = remind_api
    clock, day = clocked
    stopped, continued = await weekly_phq9(api, day), await weekly_phq9(api, day)
    for s in (stopped, continued):
        clin = api.token(s.team.tenant, "clinician", s.team.primary)
        r = await api.http.post(f"/clients/{s.client}/discharge", json={}, headers=clin)
        assert r.status_code == 201, r.text
    me = api.token(continued.team.tenant, "client", continued.client)
    r = await api.http.post(f"/clients/{continued.client}/reminder-self-monitoring", json={"after_discharge": True},
                            headers=me)
    assert r.status_code == 201, r.text
    [a] = await _decided(api, stopped, clock)
    assert (a.type, a.payload.reason) == ("reminder.suppressed", "discharged")
    [b] = await _decided(api, continued, clock)
    assert b.type == "reminder.scheduled"


async def test_an_opted_out_channel_suppresses_and_a_missing_address_waits_for_one(remind_api, clocked):
    api = remind_api
    clock, day = clocked
    s = await weekly_phq9(api, day)
    me = api.token(s.team.tenant, "client", s.client)
    unknown = await api.http.post(f"/clients/{s.client}/reminder-channels/pigeon/opt-out", headers=me)
    assert unknown.status_code == 422 and unknown.json()["field"] == "channel"
    # the app under test has no channel configured: opt out of email through a runner that has one
    api.services.channels = [type("Ch", (), {"name": "email", "address_kind": "email"})()]
    try:
        r = await api.http.post(f"/clients/{s.client}/reminder-channels/email/opt-out", headers=me)
        assert r.status_code == 201, r.text
        view = await api.http.get(f"/clients/{s.client}/reminders", headers=me)
        assert view.json()["opted_out"] == ["email"] and view.json()["has_email"] is True
    finally:
        api.services.channels = ()
    [decided] = await _decided(api, s, clock)
    assert (decided.type, decided.payload.reason) == ("reminder.suppressed", "opted_out")
    # no address yet (and no clinic-wide channel): nothing is decided until the client gives one
    bare = await weekly_phq9(api, day, email=False)
    r = runner(api, clock)
    r.start()
    try:
        await r.wait_rounds(5)
        assert await reminder_events(api, bare.client) == []
        me = api.token(bare.team.tenant, "client", bare.client)
        given = await api.http.post(f"/clients/{bare.client}/reminder-contact", json={"email": bare.email},
                                    headers=me)
        assert given.status_code == 201, given.text
        await eventually(lambda: reminder_events(api, bare.client, "reminder.scheduled"), what="scheduled")
    finally:
        await r.stop()


async def test_a_runner_stopped_after_scheduled_and_started_again_sends_exactly_once(remind_api, smtp, clocked):
    api = remind_api
    clock, day = clocked
    s = await weekly_phq9(api, day)
    first = runner(api, clock)
    first.start()
    try:
        await eventually(lambda: reminder_events(api, s.client, "reminder.scheduled"), what="scheduled")
    finally:
        await first.stop()  # the crash: nothing was sent yet (no dispatcher ran)
    assert smtp.inbox.to(s.email) == []
    again, d = runner(api, clock), dispatcher(api, [email_channel(smtp)], clock)
    again.start()
    d.start()
    try:
        await eventually(lambda: reminder_events(api, s.client, "reminder.sent"), what="sent")
        await again.wait_rounds(3)
        await d.wait_rounds(3)
    finally:
        await again.stop()
        await d.stop()
    assert len(smtp.inbox.to(s.email)) == 1
    types = [e.type for e in await reminder_events(api, s.client)]
    assert types.count("reminder.scheduled") == 1 and types.count("reminder.sent") == 1


async def test_the_next_week_gets_its_own_reminder_and_a_day_later_nothing_new(remind_api, smtp, clocked):
    api = remind_api
    clock, day = clocked
    s = await weekly_phq9(api, day)
    r, d = runner(api, clock), dispatcher(api, [email_channel(smtp)], clock)
    r.start()
    d.start()
    try:
        await eventually(lambda: len(smtp.inbox.to(s.email)) == 1, what="first week's email")
        clock.advance(timedelta(days=1))  # still the first week: nothing more
        await r.wait_rounds(3)
        assert len(await reminder_events(api, s.client, "reminder.scheduled")) == 1
        clock.advance(timedelta(days=6))  # the next week's morning
        r.kick()
        await eventually(lambda: len(smtp.inbox.to(s.email)) == 2, what="second week's email")
    finally:
        await r.stop()
        await d.stop()
    scheduled = await reminder_events(api, s.client, "reminder.scheduled")
    assert [e.payload.due_on for e in scheduled] == [day, day + timedelta(days=7)]
    ids = {m["Message-ID"] for m in smtp.inbox.to(s.email)}
    assert len(ids) == 2


async def test_a_reminder_through_the_signed_webhook_reaches_the_clinics_endpoint_once(remind_api, clocked):
    import base64
    import json

    from alliance.plugins.channels.webhook import WebhookChannel, verify
    from tests.notifications.receiver import Receiver

    api = remind_api
    clock, day = clocked
    s = await weekly_phq9(api, day, email=False)  # no address: the clinic-wide endpoint still reaches them
    secret = "whsec_" + base64.b64encode(b"r" * 32).decode()
    receiver = await Receiver(script=[503]).start()

    async def no_wait(_delay: float) -> None:
        return None

    hook = WebhookChannel(url=receiver.url, secret=secret, attempts=3, sleep=no_wait)
    r, d = runner(api, clock, [hook]), dispatcher(api, [hook], clock)
    r.start()
    d.start()
    try:
        sent = await eventually(lambda: reminder_events(api, s.client, "reminder.sent"), what="reminder.sent")
    finally:
        await r.stop()
        await d.stop()
        await receiver.stop()
    nid = notification_id_for(REMINDER_KIND, s.reminder(), s.client, "webhook")
    assert [(e.payload.channel, e.payload.message_id) for e in sent] == [("webhook", str(nid))]
    mine = [q for q in receiver.requests if q.headers["webhook-id"] == str(nid)]
    assert len(mine) == 2 and all(verify(secret, q.headers, q.body) for q in mine)  # 503, then accepted
    body = json.loads(mine[-1].body)
    assert (body["type"], body["recipient_id"], body["subject"]) == ("reminder", str(s.client),
                                                                    "A questionnaire is ready")
    assert LINK.fullmatch(body["link"]) and not CLINICAL.search(body["subject"] + body["text"])


async def test_a_daily_mood_diary_on_the_episode_is_reminded_each_day(remind_api, clocked):
    from alliance.core.reminders.events import reminder_id_for
    from alliance.core.schedules import administration_id

    api = remind_api
    clock, day = clocked
    s = await weekly_phq9(api, day)
    clin = api.token(s.team.tenant, "clinician", s.team.primary)
    r = await api.http.post(f"/clients/{s.client}/measures", headers=clin, json={
        "instrument_id": "mood_diary", "schedule": {"kind": "every", "interval": 1, "unit": "days",
                                                    "start": day.isoformat(), "timezone": "Europe/London"}})
    assert r.status_code == 201, r.text
    run = runner(api, clock)
    run.start()
    try:
        await eventually(lambda: _count(api, s.client, 2), what="today's two reminders")
        clock.advance(timedelta(days=1))
        run.kick()
        await eventually(lambda: _count(api, s.client, 3), what="tomorrow's diary reminder")
        await run.wait_rounds(3)
    finally:
        await run.stop()
    scheduled = await reminder_events(api, s.client, "reminder.scheduled")
    diary = [e.payload for e in scheduled if e.payload.instrument_id == "mood_diary"]
    assert [(p.due_on, p.goal_id) for p in diary] == [(day, None), (day + timedelta(days=1), None)]
    assert diary[0].reminder_id == reminder_id_for(administration_id(s.client, "mood_diary", day))
    assert len(scheduled) == 3  # the weekly PHQ-9 once, the diary each day


async def _count(api: Any, client: Any, n: int) -> bool:
    return len(await reminder_events(api, client, "reminder.scheduled")) >= n


async def test_a_standby_runner_takes_over_when_the_leader_stops_and_decides_nothing_twice(remind_api, clocked):
    api = remind_api
    clock, day = clocked
    first = await weekly_phq9(api, day)
    a, b = runner(api, clock), runner(api, clock)
    a.start()
    try:
        await eventually(lambda: a.leading, what="a leader")
        b.start()
        await eventually(lambda: reminder_events(api, first.client, "reminder.scheduled"), what="first decided")
        assert not b.leading  # one leader: the other stands by on the advisory lock
        await a.stop()  # the leader's session ends, and its lock with it
        await eventually(lambda: b.leading, what="the standby leading")
        second = await weekly_phq9(api, day)
        await eventually(lambda: reminder_events(api, second.client, "reminder.scheduled"), what="second decided")
        await b.wait_rounds(3)
    finally:
        await a.stop()
        await b.stop()
    for s in (first, second):
        assert len(await reminder_events(api, s.client, "reminder.scheduled")) == 1


async def test_an_erased_client_has_no_reminder_address_and_gets_no_reminder(remind_api, clocked):
    from alliance.core.questionnaire_links import link_key
    from alliance.core.reminders.delivery import ReminderDelivery

    api = remind_api
    clock, day = clocked
    s = await weekly_phq9(api, day)
    delivery = ReminderDelivery(api.services.store, link_key(api.services.mac_key))
    assert await delivery.address(s.team.tenant, s.client, "email") == s.email  # cached from here on
    admin = api.token(s.team.tenant, "admin", s.team.admin)
    r = await api.http.post(f"/clients/{s.client}/erasure", json={"reason": "asked to be forgotten"}, headers=admin)
    assert r.status_code == 201, r.text
    # the key is gone: the cached address is dropped and the stored one reads erased (no address)
    await eventually(lambda: _no_address(delivery, s), what="the address forgotten")
    run = runner(api, clock)
    run.start()
    try:
        await run.wait_rounds(5)
    finally:
        await run.stop()
    assert [e.type for e in await reminder_events(api, s.client)] == ["reminder.contact_set"]


async def _no_address(delivery: Any, s: Any) -> bool:
    return await delivery.address(s.team.tenant, s.client, "email") is None
