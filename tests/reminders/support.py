"""A client on a weekly PHQ-9 (over HTTP), and the reminder runner and dispatcher a test starts."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alliance.core.clock import SettableClock
from alliance.core.notifications.dispatcher import NotificationDispatcher
from alliance.core.notifications.messages import COMPOSERS
from alliance.core.notifications.policy import RetryPolicy
from alliance.core.questionnaire_links import link_key
from alliance.core.reminders.decide import ChannelInfo
from alliance.core.reminders.delivery import ReminderDelivery
from alliance.core.reminders.events import reminder_id_for
from alliance.core.reminders.runner import ReminderRunner
from alliance.core.schedules import administration_id
from alliance.plugins.channels.smtp import SmtpChannel
from tests.api.conftest import Api
from tests.api.support import active_goal
from tests.notifications.support import SmtpServer, Team, care_team

LONDON = ZoneInfo("Europe/London")
PUBLIC_URL = "https://alliance.clinic.example"
SENDER = "alliance@remind.example"
LINK = re.compile(re.escape(PUBLIC_URL) + r"/q/([A-Za-z0-9_-]+)")


@dataclass
class Scheduled:
    team: Team
    goal_id: uuid.UUID
    start: date
    email: str

    @property
    def client(self) -> uuid.UUID:
        return self.team.client

    def administration(self, due_on: date | None = None) -> uuid.UUID:
        return administration_id(self.goal_id, "phq9", due_on or self.start)

    def reminder(self, due_on: date | None = None) -> uuid.UUID:
        return reminder_id_for(self.administration(due_on))


def morning_of(day: date, hour: int = 9, minute: int = 5) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=LONDON).astimezone(UTC)


def a_clock() -> tuple[SettableClock, date]:
    """A clock on a London morning after now (so every command recorded earlier lies before it),
    and that day: the schedule starts then."""
    day = datetime.now(LONDON).date() + timedelta(days=1)
    return SettableClock(morning_of(day)), day


async def weekly_phq9(api: Api, start: date, *, email: bool = True) -> Scheduled:
    """A client (measurement consent given) with an agreed goal and a weekly PHQ-9 from ``start``
    in London, and (``email``) an address for reminders set by the client."""
    team = await care_team(api)
    clinic = type("C", (), {"tenant": team.tenant, "clinician": team.primary})()
    goal_id, _ = await active_goal(api, clinic, team.client)
    clin = api.token(team.tenant, "clinician", team.primary)
    r = await api.http.post(f"/goals/{goal_id}/measures", headers=clin, json={
        "instrument_id": "phq9", "schedule": {"kind": "every", "interval": 1, "unit": "weeks",
                                              "start": start.isoformat(), "timezone": "Europe/London"}})
    assert r.status_code == 201, r.text
    address = f"client-{uuid.uuid4().hex[:8]}@home.example"
    if email:
        me = api.token(team.tenant, "client", team.client)
        r = await api.http.post(f"/clients/{team.client}/reminder-contact", headers=me, json={"email": address})
        assert r.status_code == 201, r.text
    return Scheduled(team, goal_id, start, address)


def email_channel(smtp: SmtpServer) -> SmtpChannel:
    return SmtpChannel(host="127.0.0.1", port=smtp.port, sender=SENDER, tls="none", timeout=5)


def runner(api: Api, clock: SettableClock, channels: list[Any] | None = None) -> ReminderRunner:
    infos = [ChannelInfo(c.name, c.address_kind) for c in (channels or [])] or [ChannelInfo("email", "email")]
    return ReminderRunner(api.services.store, dsn=api.services.runtime.target.app_dsn, channels=infos,
                          key=link_key(api.services.mac_key), clock=clock, poll_interval=0.05,
                          standby_interval=0.05)


def dispatcher(api: Api, channels: list[Any], clock: SettableClock) -> NotificationDispatcher:
    delivery = ReminderDelivery(api.services.store, link_key(api.services.mac_key))
    return NotificationDispatcher(api.services.store, channels, dsn=api.services.runtime.target.app_dsn, clock=clock,
                                  public_url=PUBLIC_URL, retry=RetryPolicy(base=timedelta(seconds=60)),
                                  composers={**COMPOSERS, **delivery.composers()},
                                  addresses={"client": delivery.address}, poll_interval=0.05, standby_interval=0.05)


async def reminder_events(api: Api, client: uuid.UUID, type_name: str | None = None) -> list[Any]:
    events = await api.services.store.read_stream(f"reminders-{client}")
    return [e for e in events if type_name is None or e.type == type_name]


def body_of(mail: Any) -> str:
    return str(mail.get_payload(decode=True).decode())
