"""A real SMTP server (aiosmtpd) for the tests, a care team over HTTP, and store look-ups."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.api.conftest import Api
from tests.api.support import phq9


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    to: list[str]
    mail: Message


class Inbox:
    """What the local SMTP server accepted (its own thread appends; tests read)."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages.append(Received(list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        with self._lock:
            return [m.mail for m in self.messages if address in m.to]


class SmtpServer:
    """An aiosmtpd server on a fixed loopback port that a test can stop and start again."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


async def eventually(check: Any, *, within: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; bounded."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Team:
    """One clinic: an admin, a primary clinician, a second clinician on the team, a duty clinician,
    each with a unique email address; and one enrolled client."""

    tenant: uuid.UUID
    admin: uuid.UUID
    primary: uuid.UUID
    member: uuid.UUID
    duty: uuid.UUID
    client: uuid.UUID
    emails: dict[uuid.UUID, str] = field(default_factory=dict)

    def email(self, who: uuid.UUID) -> str:
        return self.emails[who]


async def care_team(api: Api, *, duty: bool = True, interval_hours: float | None = None) -> Team:
    c = await api.clinic()
    admin = api.token(c.tenant, "admin", c.admin)
    team = Team(c.tenant, c.admin, c.clinician, c.clinician_2, c.supervisor, uuid.uuid4())
    tag = uuid.uuid4().hex[:8]
    for who, name in ((c.clinician, "primary"), (c.clinician_2, "member"), (c.supervisor, "duty"),
                      (c.admin, "admin")):
        team.emails[who] = f"{name}-{tag}@clinic.example"
        r = await api.http.post(f"/staff/{who}/contact", json={"email": team.emails[who]}, headers=admin)
        assert r.status_code == 201, r.text
    if duty or interval_hours is not None:
        body: dict[str, Any] = {"duty_clinician_id": str(c.supervisor) if duty else None}
        if interval_hours is not None:
            body["escalation_interval_hours"] = interval_hours
        r = await api.http.post("/clinic/escalation-policy", json=body, headers=admin)
        assert r.status_code == 201, r.text
    team.client = await api.enrolled_client(c)
    clin = api.token(c.tenant, "clinician", c.clinician)
    r = await api.http.post(f"/clients/{team.client}/care-team", json={"member_id": str(c.clinician_2)},
                            headers=clin)
    assert r.status_code == 201, r.text
    return team


async def answer_phq9(api: Api, team: Team, *, item9: int) -> None:
    """The client records a PHQ-9 over HTTP (item 9 > 0 raises a risk flag)."""
    me = api.token(team.tenant, "client", team.client)
    r = await api.http.post(f"/clients/{team.client}/measurements", headers=me, json={
        "instrument_id": "phq9", "answers": phq9(12, item9=item9),
        "observed_at": datetime.now(UTC).isoformat()})
    assert r.status_code == 201, r.text


async def flag_of(api: Api, team: Team) -> uuid.UUID:
    events = await api.services.store.read_stream(f"client-{team.client}")
    flags = [e.payload.flag_id for e in events if e.type == "risk.flag_raised"]
    assert len(flags) == 1, flags
    return flags[0]


async def events_of(api: Api, type_name: str, **match: Any) -> list[Any]:
    """Every payload of ``type_name`` in the store whose fields equal ``match``."""
    out = []
    after = "0.0"
    store = api.services.store
    while True:
        page = await store.read_all(after=after, limit=1000)
        if not page:
            return out
        after = page[-1].checkpoint
        for e in page:
            if e.type == type_name and all(getattr(e.payload, k) == v for k, v in match.items()):
                out.append(e)


async def stream_of(api: Api, stream_id: str, type_name: str | None = None) -> list[Any]:
    """A stream's events as committed now (``read_stream`` does not wait for the read horizon,
    which other databases' transactions on a shared server can hold back for a while)."""
    events = await api.services.store.read_stream(stream_id)
    return [e for e in events if type_name is None or e.type == type_name]


async def sent_of(api: Api, notification_id: uuid.UUID) -> list[Any]:
    return await stream_of(api, f"notification-{notification_id}", "notification.sent")


async def failed_of(api: Api, notification_id: uuid.UUID) -> list[Any]:
    return await stream_of(api, f"notification-{notification_id}", "notification.failed")


async def decisions_of(api: Api, flag_id: uuid.UUID) -> list[Any]:
    return await stream_of(api, f"escalation-{flag_id}", "notification.escalation_decided")
