"""Observed failure 3 of issue 13: "nothing notifies or escalates an open flag". A PHQ-9 with
item 9 > 0 recorded over HTTP must reach the care team by email (a real local SMTP server),
each attempt recorded as an event, surviving crashes and an SMTP outage, and escalate when
left unacknowledged. Time is a settable clock: nothing here sleeps through an interval."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

from alliance.core.clock import SettableClock
from alliance.core.notifications.dispatcher import NotificationDispatcher
from alliance.core.notifications.events import RISK_FLAG_ESCALATED, RISK_FLAG_RAISED, notification_id_for
from alliance.core.notifications.policy import RetryPolicy
from alliance.plugins.channels.base import OutgoingMessage
from alliance.plugins.channels.smtp import SmtpChannel
from tests.notifications.support import (
    SmtpServer,
    Team,
    answer_phq9,
    care_team,
    decisions_of,
    events_of,
    eventually,
    failed_of,
    flag_of,
    sent_of,
)

SENDER = "alliance@notify.example"
#: Words that would make a message clinical content: the instrument, the item, scores, risk words.
CLINICAL = re.compile(r"phq|item|score|suicid|self-harm|harm|answer|question|\b\d{1,2}\b/27|band|severe",
                      re.IGNORECASE)


def email_channel(smtp: SmtpServer) -> SmtpChannel:
    return SmtpChannel(host="127.0.0.1", port=smtp.port, sender=SENDER, tls="none", timeout=5)


def dispatcher(api: Any, channels: list[Any], clock: SettableClock, **kw: Any) -> NotificationDispatcher:
    return NotificationDispatcher(api.services.store, channels, dsn=api.services.runtime.target.app_dsn,
                                  clock=clock, public_url="https://alliance.clinic.example",
                                  retry=kw.pop("retry", RetryPolicy(base=timedelta(seconds=60))),
                                  poll_interval=0.05, standby_interval=0.05, **kw)


def body_of(mail: Any) -> str:
    return str(mail.get_payload(decode=True).decode())


async def test_a_raised_flag_emails_the_care_team_with_no_clinical_content(notify_api, smtp) -> None:
    # Given a client whose care team is a primary clinician and a second clinician, with addresses
    team = await care_team(notify_api)
    clock = SettableClock()
    d = dispatcher(notify_api, [email_channel(smtp)], clock)
    d.start()
    try:
        # When the client answers PHQ-9 item 9 above 0 over HTTP
        await answer_phq9(notify_api, team, item9=2)
        flag = await flag_of(notify_api, team)
        # Then the primary clinician (and the team member) get one email each
        primary = await eventually(lambda: smtp.inbox.to(team.email(team.primary)), what="primary's email")
        member = await eventually(lambda: smtp.inbox.to(team.email(team.member)), what="member's email")
    finally:
        await d.stop()
    assert len(primary) == 1 and len(member) == 1
    mail = primary[0]
    body = body_of(mail)
    assert "a risk flag needs attention" in body.lower()
    assert str(flag) in body and f"https://alliance.clinic.example/clients/{team.client}/plan" in body
    assert not CLINICAL.search(body + mail["Subject"]), body
    # the message id is derived from the notification id, which derives from (flag, recipient, channel)
    nid = notification_id_for(RISK_FLAG_RAISED, flag, team.primary, "email")
    assert mail["Message-ID"] == f"<{nid}@notify.example>"
    assert smtp.inbox.to(team.email(team.duty)) == []  # the duty clinician only on escalation
    # and each attempt is recorded as an event on the notification's own stream
    # the mail is accepted a moment before the attempt is recorded
    sent = await eventually(lambda: sent_of(notify_api, nid),
                            what="the sent event")
    assert [(e.stream_id, e.payload.attempt, e.payload.message_id, str(e.actor_role)) for e in sent] == [
        (f"notification-{nid}", 1, str(nid), "system")]
    requested = await events_of(notify_api, "notification.requested", reference_id=flag)
    assert {(e.payload.recipient_id, e.payload.reason) for e in requested} == {
        (team.primary, "primary_clinician"), (team.member, "care_team")}


class HangingChannel:
    """Stands in for a process that dies while sending: ``send`` never returns."""

    name = "email"
    address_kind = "email"

    def __init__(self, then_send: SmtpChannel | None = None) -> None:
        self.then_send = then_send
        self.entered = asyncio.Event()
        self.message: OutgoingMessage | None = None

    async def send(self, message: OutgoingMessage) -> None:
        if self.then_send is not None:  # the mail leaves, the process dies before recording it
            await self.then_send.send(message)
        self.message = message
        self.entered.set()
        await asyncio.Event().wait()


async def _crash_and_restart(api: Any, smtp: SmtpServer, team: Team, hanging: HangingChannel) -> tuple[Any, str]:
    """The first dispatcher dies inside its first send; a second one starts. The notification
    that was being sent, and its recipient's address."""
    clock = SettableClock()
    first = dispatcher(api, [hanging], clock)
    first.start()
    try:
        await answer_phq9(api, team, item9=1)
        await asyncio.wait_for(hanging.entered.wait(), 30)  # the request is committed, the send under way
    finally:
        await first.stop()  # the crash: nothing after this point of the first process happens
    assert hanging.message is not None
    nid = hanging.message.notification_id
    address = team.email(hanging.message.recipient_id)
    assert await sent_of(api, nid) == []
    second = dispatcher(api, [email_channel(smtp)], clock)
    second.start()
    try:
        await eventually(lambda: sent_of(api, nid), what="sent event")
        await second.wait_rounds(3)
    finally:
        await second.stop()
    return nid, address


async def test_a_crash_after_commit_before_send_still_delivers_once(notify_api, smtp) -> None:
    team = await care_team(notify_api)
    nid, address = await _crash_and_restart(notify_api, smtp, team, HangingChannel())
    mails = smtp.inbox.to(address)
    assert [m["Message-ID"] for m in mails] == [f"<{nid}@notify.example>"]
    assert len(await sent_of(notify_api, nid)) == 1


async def test_a_crash_after_send_before_recording_sends_again_with_the_same_message_id(notify_api, smtp) -> None:
    team = await care_team(notify_api)
    nid, address = await _crash_and_restart(notify_api, smtp, team, HangingChannel(then_send=email_channel(smtp)))
    mails = smtp.inbox.to(address)
    # at least once: the receiver sees the same Message-ID twice and can show it once
    assert [m["Message-ID"] for m in mails] == [f"<{nid}@notify.example>"] * 2
    sent = await sent_of(notify_api, nid)
    assert [e.payload.attempt for e in sent] == [1]  # recorded once


async def test_smtp_down_records_the_failure_retries_with_backoff_and_delivers_when_back(notify_api) -> None:
    team = await care_team(notify_api)
    down = SmtpServer()  # its port is chosen, nothing listens there yet
    clock = SettableClock()
    d = dispatcher(notify_api, [email_channel(down)], clock)
    d.start()
    try:
        await answer_phq9(notify_api, team, item9=3)
        flag = await flag_of(notify_api, team)
        nid = notification_id_for(RISK_FLAG_RAISED, flag, team.primary, "email")
        failed = await eventually(lambda: failed_of(notify_api, nid),
                                  what="failed attempt")
        first = failed[0].payload
        assert (first.attempt, first.final) == (1, False)
        assert first.error in {"SMTPConnectError", "SMTPConnectTimeoutError", "ConnectionRefusedError", "OSError"}
        assert first.retry_at == first.failed_at + timedelta(seconds=60)
        # The server comes back; nothing is retried before the backoff has passed
        down.start()
        await d.wait_rounds(5)
        assert len(await failed_of(notify_api, nid)) == 1
        assert down.inbox.to(team.email(team.primary)) == []
        clock.advance(timedelta(seconds=61))
        d.kick()
        mails = await eventually(lambda: down.inbox.to(team.email(team.primary)), what="delivery after outage")
    finally:
        await d.stop()
        down.stop()
    assert len(mails) == 1 and mails[0]["Message-ID"] == f"<{nid}@notify.example>"
    sent = await eventually(lambda: sent_of(notify_api, nid),
                            what="the sent event")
    assert [e.payload.attempt for e in sent] == [2]


async def test_backoff_doubles_up_to_its_cap_then_gives_up() -> None:
    retry = RetryPolicy(base=timedelta(seconds=30), cap=timedelta(minutes=5), max_attempts=5)
    assert [retry.delay(n).total_seconds() for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]
    assert [retry.gives_up(n) for n in (4, 5)] == [False, True]


async def _escalation(api: Any, smtp: SmtpServer, team: Team, *, before: Any = None) -> tuple[Any, Any]:
    """Raise a flag, let the first notifications go, run ``before``, then move the clock 24 h on."""
    clock = SettableClock()
    d = dispatcher(api, [email_channel(smtp)], clock)
    d.start()
    try:
        await answer_phq9(api, team, item9=1)
        flag = await flag_of(api, team)
        await eventually(lambda: smtp.inbox.to(team.email(team.primary)), what="first email")
        if before is not None:
            await before(flag)
        clock.advance(timedelta(hours=23, minutes=59))
        await d.wait_rounds(3)
        assert await decisions_of(api, flag) == []  # not yet
        clock.advance(timedelta(minutes=2))
        await d.wait_rounds(3)
        decided = await decisions_of(api, flag)
        if decided:
            await eventually(lambda: all_sent(api, flag), what="escalation emails")
    finally:
        await d.stop()
    return flag, decided


async def all_sent(api: Any, flag: Any) -> bool:
    requested = await events_of(api, "notification.requested", reference_id=flag, kind=RISK_FLAG_ESCALATED)
    for e in requested:
        if not await sent_of(api, e.payload.notification_id):
            return False
    return bool(requested)


def escalation_mails(smtp: SmtpServer, address: str) -> list[Any]:
    return [m for m in smtp.inbox.to(address) if "escalated" in m["Subject"]]


async def test_an_unacknowledged_flag_escalates_after_the_interval_to_primary_and_duty(notify_api, smtp) -> None:
    team = await care_team(notify_api)
    flag, decided = await _escalation(notify_api, smtp, team)
    assert [(d.payload.reason, set(d.payload.recipients), d.payload.interval_hours) for d in decided] == [
        ("unacknowledged", {team.primary, team.duty}, 24.0)]
    assert len(escalation_mails(smtp, team.email(team.primary))) == 1
    assert len(escalation_mails(smtp, team.email(team.duty))) == 1
    assert escalation_mails(smtp, team.email(team.member)) == []
    body = body_of(escalation_mails(smtp, team.email(team.duty))[0])
    assert str(flag) in body and not CLINICAL.search(body)


async def test_after_discharge_the_flag_escalates_to_the_duty_clinician_only(notify_api, smtp) -> None:
    team = await care_team(notify_api)

    async def discharge(_flag: Any) -> None:
        r = await notify_api.http.post(f"/clients/{team.client}/discharge", json={},
                                       headers=notify_api.token(team.tenant, "clinician", team.primary))
        assert r.status_code == 201, r.text

    _flag, decided = await _escalation(notify_api, smtp, team, before=discharge)
    assert [(d.payload.reason, d.payload.recipients) for d in decided] == [("discharged", (team.duty,))]
    assert len(escalation_mails(smtp, team.email(team.duty))) == 1
    assert escalation_mails(smtp, team.email(team.primary)) == []


async def test_an_acknowledged_flag_does_not_escalate(notify_api, smtp) -> None:
    team = await care_team(notify_api)

    async def acknowledge(flag: Any) -> None:
        r = await notify_api.http.post(f"/clients/{team.client}/risk-flags/{flag}/acknowledgement",
                                       json={"action_taken": "called the client"},
                                       headers=notify_api.token(team.tenant, "clinician", team.primary))
        assert r.status_code == 201, r.text

    _flag, decided = await _escalation(notify_api, smtp, team, before=acknowledge)
    assert decided == []
    assert escalation_mails(smtp, team.email(team.duty)) == []
    assert escalation_mails(smtp, team.email(team.primary)) == []


async def test_two_dispatchers_one_leader_one_email(notify_api, smtp) -> None:
    team = await care_team(notify_api)
    clock = SettableClock()
    a = dispatcher(notify_api, [email_channel(smtp)], clock)
    b = dispatcher(notify_api, [email_channel(smtp)], clock)
    a.start()
    b.start()
    try:
        await eventually(lambda: a.leading or b.leading, what="a leader")
        await answer_phq9(notify_api, team, item9=1)
        await eventually(lambda: smtp.inbox.to(team.email(team.primary)), what="email")
        leader = a if a.leading else b
        await leader.wait_rounds(3)
        assert not (a.leading and b.leading)
    finally:
        await a.stop()
        await b.stop()
    assert len(smtp.inbox.to(team.email(team.primary))) == 1


async def test_logs_carry_ids_never_the_address_or_the_message(notify_api, monkeypatch) -> None:
    import io

    import structlog

    from alliance.core.notifications import dispatcher as module

    written = io.StringIO()  # every log line of the dispatcher, rendered as in production (JSON)
    monkeypatch.setattr(module, "log", structlog.wrap_logger(
        structlog.PrintLogger(file=written),
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()]))
    team = await care_team(notify_api)
    down = SmtpServer()  # nothing listens: every attempt fails and is logged as a warning
    d = dispatcher(notify_api, [email_channel(down)], SettableClock())
    d.start()
    try:
        await answer_phq9(notify_api, team, item9=1)
        flag = await flag_of(notify_api, team)
        nid = notification_id_for(RISK_FLAG_RAISED, flag, team.primary, "email")
        await eventually(lambda: failed_of(notify_api, nid),
                         what="failed attempt")
        await d.wait_rounds(2)
    finally:
        await d.stop()
    err = written.getvalue()
    assert "notification_failed" in err and str(nid) in err  # the log is there, by id
    for secret in (team.email(team.primary), team.email(team.member), "needs attention", "risk flag"):
        assert secret not in err


async def test_any_process_may_request_a_notification_of_its_own_kind(notify_api, smtp) -> None:
    """What the reminders will do: record a ``notification.requested`` of their own kind for a
    client, and pass the dispatcher a composer for that kind and an address lookup for clients."""
    import uuid
    from datetime import UTC, datetime

    from alliance.core.events.envelope import NewEvent
    from alliance.core.identity import Role
    from alliance.core.notifications.events import NotificationRequested, notification_stream, request_event_id
    from alliance.core.notifications.messages import COMPOSERS, Text

    team = await care_team(notify_api)
    reminder_id = uuid.uuid4()
    nid = notification_id_for("reminder.due", reminder_id, team.client, "email")
    request = NotificationRequested(notification_id=nid, kind="reminder.due", channel="email",
                                    recipient_kind="client", recipient_id=team.client, client_id=team.client,
                                    reference_id=reminder_id, reason="schedule", requested_at=datetime.now(UTC))
    await notify_api.services.store.append(notification_stream(nid), [NewEvent(
        event_id=request_event_id(nid), payload=request, tenant_id=team.tenant, subject_id=team.client,
        actor_id=uuid.uuid4(), actor_role=Role.SYSTEM, occurred_at=datetime.now(UTC))], 0)

    async def client_address(tenant_id: uuid.UUID, client_id: uuid.UUID, kind: str) -> str | None:
        return "client-reminder@home.example" if (tenant_id, client_id, kind) == (team.tenant, team.client,
                                                                                  "email") else None

    composers = {**COMPOSERS, "reminder.due": lambda r, url: Text("A questionnaire is ready", "It is ready.")}
    d = dispatcher(notify_api, [email_channel(smtp)], SettableClock(), composers=composers,
                   addresses={"client": client_address})
    d.start()
    try:
        mails = await eventually(lambda: smtp.inbox.to("client-reminder@home.example"), what="the reminder")
        sent = await eventually(lambda: sent_of(notify_api, nid), what="its sent event")
    finally:
        await d.stop()
    assert [m["Subject"] for m in mails] == ["A questionnaire is ready"]
    assert [e.payload.attempt for e in sent] == [1]


async def test_the_standby_takes_over_when_the_leaders_session_dies(notify_api, smtp, database) -> None:
    import asyncpg

    from alliance.core.notifications.dispatcher import lock_key

    team = await care_team(notify_api)
    clock = SettableClock()
    a = dispatcher(notify_api, [email_channel(smtp)], clock)
    a.start()
    b: NotificationDispatcher | None = None
    owner = await asyncpg.connect(database.owner_dsn)
    try:
        await eventually(lambda: a.leading, what="a leading")
        b = dispatcher(notify_api, [email_channel(smtp)], clock)
        b.start()
        await asyncio.sleep(0.3)
        assert not b.leading  # standby while a holds the lock
        # the leader's database session dies (its lock with it)
        key = lock_key("notifications")
        killed = await owner.fetchval(  # a bigint advisory key is held as (classid, objid) = (high, low) halves
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1 "
            # this database's leader only: other test databases' dispatchers hold the same key
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)
        assert killed
        await answer_phq9(notify_api, team, item9=1)
        mails = await eventually(lambda: smtp.inbox.to(team.email(team.primary)), what="delivery after failover")
        assert len(mails) == 1
        assert b.leading or a.leading
    finally:
        await owner.close()
        await a.stop()
        if b is not None:
            await b.stop()
