"""The notification dispatcher: follows the store, asks who must be told, and tells them.

One object with ``start()``/``stop()`` (the app's lifespan runs it beside the projection
runner; a separate projector process can run it the same way). Many may run; one leads
(``core/leader.py``: a session advisory lock on its own dedicated connection, a standby
taking over when the holder's session ends), and the checkpoint update is fenced, so a
deposed leader's late commit changes nothing.

Each round of the leader:

1. **Follow.** Read the store after the stored checkpoint. For every ``risk.flag_raised``,
   the policy (``policy.py``) names the care team and one ``notification.requested`` per
   recipient and channel is appended, all of a flag's at once, with ids derived from
   (kind, flag, recipient, channel): appended *before* the checkpoint passes the flag, so a
   crash in between only appends them again, which the store answers as a duplicate. Then
   the page is folded into the queue and flag-watch rows, with the checkpoint, in one
   transaction (``queue.py``).
2. **Escalate.** Every open flag whose clinic interval has passed (read from the injected
   clock) gets one ``notification.escalation_decided`` and its requests, in one append.
3. **Deliver.** Every due request of any kind is sent through its channel; the attempt is
   recorded on the notification's stream (attempt n is ``notification.sent`` or
   ``notification.failed`` with an id derived from (notification, n), at version n + 1),
   a failure is retried with backoff. The notification's own stream is read before each
   attempt, so an attempt recorded but not yet folded is never repeated; a crash between
   sending and recording sends again, with the same message id (at least once).

Logs carry ids, channel names and failure classes only: never an address or a message.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from alliance.core.client import ClientState, client_stream, evolve_client, initial_client_state
from alliance.core.clinic import ClinicState, clinic_stream, evolve_clinic, initial_clinic_state
from alliance.core.clock import SYSTEM_CLOCK, Clock
from alliance.core.errors import ConcurrencyConflict, ValidationError
from alliance.core.events.envelope import NewEvent, RecordedEvent
from alliance.core.events.store import EventStore, StreamAppend
from alliance.core.handling import StateCache, load
from alliance.core.leader import Leader
from alliance.core.logging import get_logger
from alliance.core.notifications import queue
from alliance.core.notifications.events import (
    DISPATCHER_ACTOR_ID,
    DISPATCHER_ROLE,
    RISK_FLAG_ESCALATED,
    RISK_FLAG_RAISED,
    EscalationDecided,
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    attempt_event_id,
    escalation_event_id,
    escalation_stream,
    notification_id_for,
    notification_stream,
    request_event_id,
)
from alliance.core.notifications.messages import COMPOSERS, Composer
from alliance.core.notifications.policy import (
    Recipient,
    RetryPolicy,
    decide_escalation,
    escalation_due_at,
    raised_recipients,
)
from alliance.plugins.channels.base import DeliveryFailed, NotificationChannel, OutgoingMessage

log = get_logger("alliance.notifications")

#: How long one channel may take to send one message before the attempt counts as failed.
SEND_TIMEOUT = 60.0

#: (tenant id, recipient id, address kind) → the recipient's address, or None. One per
#: ``recipient_kind``: staff addresses come from the clinic stream; a process that notifies
#: clients (reminders) passes its own lookup for ``"client"``.
AddressLookup = Callable[[UUID, UUID, str], Awaitable[str | None]]


def lock_key(name: str) -> int:
    digest = hashlib.blake2b(f"alliance.notifications.run.{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class NotificationStatus:
    """One notification's stream, folded: the request and what its attempts did."""

    request: NotificationRequested | None
    tenant_id: UUID | None
    version: int
    attempts: int
    sent: bool
    given_up: bool


def notification_status(events: Sequence[RecordedEvent]) -> NotificationStatus:
    request: NotificationRequested | None = None
    tenant_id: UUID | None = None
    attempts, sent, given_up = 0, False, False
    for e in events:
        p = e.payload
        if isinstance(p, NotificationRequested):
            request, tenant_id = p, e.tenant_id
        elif isinstance(p, NotificationSent):
            attempts, sent = max(attempts, p.attempt), True
        elif isinstance(p, NotificationFailed):
            attempts, given_up = max(attempts, p.attempt), given_up or p.final
    return NotificationStatus(request, tenant_id, events[-1].version if events else 0, attempts, sent, given_up)


class NotificationDispatcher(Leader):
    """Follows the store and delivers notifications; ``start()`` it, ``await stop()`` it."""

    kind = "notifications"
    name_field = "dispatcher"
    _log = log

    def __init__(self, store: EventStore, channels: Sequence[NotificationChannel], *, dsn: str,
                 clock: Clock = SYSTEM_CLOCK, public_url: str = "http://127.0.0.1:8000",
                 retry: RetryPolicy | None = None, composers: Mapping[str, Composer] | None = None,
                 addresses: Mapping[str, AddressLookup] | None = None,
                 name: str = "notifications", batch_size: int = 500, poll_interval: float = 1.0,
                 standby_interval: float = 1.0) -> None:
        super().__init__(store, dsn=dsn, name=name, batch_size=batch_size, poll_interval=poll_interval,
                         standby_interval=standby_interval)
        self.channels = {c.name: c for c in channels}
        self.clock = clock
        self.public_url = public_url
        self.retry = retry or RetryPolicy()
        self.composers: dict[str, Composer] = dict(COMPOSERS if composers is None else composers)
        self.addresses: dict[str, AddressLookup] = {"staff": self._staff_address, **(addresses or {})}
        # Fresh enough: a stream's cached state is topped up with its newer events on each read.
        self._states = StateCache(size=5_000)

    def start(self) -> asyncio.Task[None]:
        if not self.is_running and not self.channels:
            log.warning("notifications_without_channel")  # flags are watched, nobody can be told
        return super().start()

    # -- the leader's round (core/leader.py) ---------------------------------
    def _lock_keys(self) -> list[int]:
        return [lock_key(self.name)]

    async def _lead(self, conn: asyncpg.Connection) -> str:
        # The lock lives on this connection, and every write of the tables goes through it.
        checkpoint = await queue.load_checkpoint(conn, self.name)
        log.info("notifications_leading", dispatcher=self.name, checkpoint=checkpoint)
        return checkpoint

    async def _follow(self, conn: asyncpg.Connection, after: str, events: Sequence[RecordedEvent]) -> str:
        await self._request_raised(events)
        return await queue.fold(conn, self.name, after=after, events=events)

    async def _work(self, conn: asyncpg.Connection) -> None:
        await self._escalate(conn)
        await self._deliver(conn)

    # -- reading the states the policy decides on ----------------------------
    async def _client(self, client_id: UUID) -> ClientState:
        loaded = await load(self.store, client_stream(client_id), initial_client_state(client_id), evolve_client,
                            cache=self._states)
        return loaded.state  # type: ignore[no-any-return]

    async def _clinic(self, tenant_id: UUID) -> ClinicState:
        loaded = await load(self.store, clinic_stream(tenant_id), initial_clinic_state(tenant_id), evolve_clinic,
                            cache=self._states)
        return loaded.state  # type: ignore[no-any-return]

    def _reachable(self, recipient: Recipient, clinic: ClinicState) -> list[str]:
        """The channels that can reach ``recipient`` now; with none, the first channel anyway,
        so the failed attempt ("no_address") is recorded and retried, not silently skipped."""
        names = [c.name for c in self.channels.values()
                 if c.address_kind is None or (c.address_kind == "email" and clinic.email_of(recipient.staff_id))]
        return names or list(self.channels)[:1]

    def _requests(self, *, kind: str, tenant_id: UUID, client_id: UUID, reference_id: UUID,
                  recipients: Sequence[Recipient], clinic: ClinicState, now: datetime,
                  causation: UUID | None) -> list[StreamAppend]:
        appends = []
        for recipient in recipients:
            for channel in self._reachable(recipient, clinic):
                nid = notification_id_for(kind, reference_id, recipient.staff_id, channel)
                payload = NotificationRequested(
                    notification_id=nid, kind=kind, channel=channel, recipient_kind="staff",
                    recipient_id=recipient.staff_id, client_id=client_id, reference_id=reference_id,
                    reason=recipient.reason, requested_at=now)
                appends.append(StreamAppend(stream_id=notification_stream(nid), expected_version=0, events=[
                    self._event(request_event_id(nid), payload, tenant_id, client_id, now, causation)]))
        return appends

    @staticmethod
    def _event(event_id: UUID, payload: Any, tenant_id: UUID, subject_id: UUID, now: datetime,
               causation: UUID | None) -> NewEvent:
        return NewEvent(event_id=event_id, payload=payload, tenant_id=tenant_id, subject_id=subject_id,
                        actor_id=DISPATCHER_ACTOR_ID, actor_role=DISPATCHER_ROLE, occurred_at=now,
                        correlation_id=causation, causation_id=causation)

    async def _append(self, appends: list[StreamAppend]) -> bool:
        """Append all or nothing; False when it was recorded before (a restart's second try)."""
        if not appends:
            return False
        try:
            results = await self.store.append_many(appends)
        except ConcurrencyConflict:
            return False  # these streams exist with other ids: decided before with other recipients
        except ValidationError as exc:
            if exc.code == "event_id_reused":
                return False
            raise
        return not all(r.duplicate for r in results)

    # -- 1. follow -----------------------------------------------------------
    async def _request_raised(self, events: Sequence[RecordedEvent]) -> None:
        for event in events:
            if event.type != queue.RISK_FLAG_RAISED_EVENT or not self.channels:
                continue
            flag: Any = event.payload
            client = await self._client(event.subject_id)
            clinic = await self._clinic(event.tenant_id)
            recipients = raised_recipients(client, clinic)
            if not recipients:
                log.warning("risk_flag_nobody_to_notify", flag_id=str(flag.flag_id), tenant_id=str(event.tenant_id))
                continue
            appended = await self._append(self._requests(
                kind=RISK_FLAG_RAISED, tenant_id=event.tenant_id, client_id=event.subject_id,
                reference_id=flag.flag_id, recipients=recipients, clinic=clinic, now=self.clock.now(),
                causation=event.event_id))
            if appended:
                log.info("risk_flag_notifications_requested", flag_id=str(flag.flag_id), recipients=len(recipients))

    # -- 2. escalate ---------------------------------------------------------
    async def _escalate(self, conn: asyncpg.Connection) -> None:
        if not self.channels:
            return
        now = self.clock.now()
        clinics: dict[UUID, ClinicState] = {}  # one read per clinic per round, however many flags are open
        for row in await queue.open_flags(conn, limit=1000):
            flag_id, tenant_id, client_id, raised_at = row[0], row[1], row[2], row[3]
            clinic = clinics.get(tenant_id) or clinics.setdefault(tenant_id, await self._clinic(tenant_id))
            if now < escalation_due_at(raised_at, clinic):
                continue
            client = await self._client(client_id)
            decision = decide_escalation(flag_id=flag_id, raised_at=raised_at, client=client, clinic=clinic, now=now)
            if decision is None:
                await queue.mark_closed(conn, flag_id)
                continue
            decided = EscalationDecided(
                flag_id=flag_id, client_id=client_id, recipients=tuple(r.staff_id for r in decision.recipients),
                reason=decision.reason, interval_hours=decision.interval_hours, raised_at=raised_at, decided_at=now)
            decision_event = self._event(escalation_event_id(flag_id), decided, tenant_id, client_id, now, None)
            appends = [StreamAppend(stream_id=escalation_stream(flag_id), expected_version=0,
                                    events=[decision_event]),
                       *self._requests(kind=RISK_FLAG_ESCALATED, tenant_id=tenant_id, client_id=client_id,
                                       reference_id=flag_id, recipients=decision.recipients, clinic=clinic,
                                       now=now, causation=decision_event.event_id)]
            if await self._append(appends):
                log.info("risk_flag_escalated", flag_id=str(flag_id), reason=decision.reason,
                         recipients=len(decision.recipients))
            if not decision.recipients:
                log.warning("risk_flag_escalation_without_recipient", flag_id=str(flag_id))
            await queue.mark_escalated(conn, [flag_id])

    # -- 3. deliver ----------------------------------------------------------
    async def _deliver(self, conn: asyncpg.Connection) -> None:
        for nid in await queue.due_notifications(conn, self.clock.now(), limit=200):
            status = notification_status(await self.store.read_stream(notification_stream(nid)))
            request = status.request
            if request is None or status.tenant_id is None:
                continue
            if status.sent:
                await queue.record_sent(conn, nid, status.attempts)
                continue
            if status.given_up:
                await queue.record_failure(conn, nid, status.attempts, None, final=True)
                continue
            await self._attempt(conn, request, status)

    async def _attempt(self, conn: asyncpg.Connection, request: NotificationRequested,
                       status: NotificationStatus) -> None:
        attempt = status.attempts + 1
        nid = request.notification_id
        assert status.tenant_id is not None
        tenant_id = status.tenant_id
        error, permanent = await self._send(request, tenant_id)
        now = self.clock.now()
        subject = request.client_id or tenant_id
        payload: NotificationSent | NotificationFailed
        if error is None:
            payload = NotificationSent(notification_id=nid, attempt=attempt, channel=request.channel,
                                       message_id=str(nid), sent_at=now)
        else:
            final = permanent or self.retry.gives_up(attempt)
            payload = NotificationFailed(notification_id=nid, attempt=attempt, channel=request.channel, error=error,
                                         failed_at=now, retry_at=None if final else now + self.retry.delay(attempt),
                                         final=final)
        event = self._event(attempt_event_id(nid, attempt), payload, tenant_id, subject, now, request_event_id(nid))
        try:
            await self.store.append(notification_stream(nid), [event], status.version)
        except ConcurrencyConflict:
            return  # another writer recorded this attempt: the next round reads what it was
        except ValidationError as exc:
            if exc.code != "event_id_reused":
                raise
            return
        if isinstance(payload, NotificationSent):
            await queue.record_sent(conn, nid, attempt)
            log.info("notification_sent", notification_id=str(nid), kind=request.kind, channel=request.channel,
                     attempt=attempt)
        else:
            await queue.record_failure(conn, nid, attempt, payload.retry_at, final=payload.final)
            log.warning("notification_failed", notification_id=str(nid), kind=request.kind,
                        channel=request.channel, attempt=attempt, error=payload.error, final=payload.final)

    async def _send(self, request: NotificationRequested, tenant_id: UUID) -> tuple[str | None, bool]:
        """Send once: (None, _) when sent, else (failure code, permanent)."""
        channel = self.channels.get(request.channel)
        if channel is None:
            return "no_channel", False  # the channel may be configured again before the retries end
        composer = self.composers.get(request.kind)
        if composer is None:
            return "unknown_kind", True
        to = None
        if channel.address_kind is not None:
            to = await self._address(request, tenant_id, channel.address_kind)
            if to is None:
                return "no_address", False  # an address may be added before the retries end
        text = composer(request, self.public_url)
        if inspect.isawaitable(text):  # a composer that reads the store (reminders: the clinic's own text)
            text = await text
        message = OutgoingMessage(message_id=str(request.notification_id), notification_id=request.notification_id,
                                  tenant_id=tenant_id, kind=request.kind, recipient_id=request.recipient_id, to=to,
                                  subject=text.subject, body=text.body, link=text.link)
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await channel.send(message)
        except DeliveryFailed as exc:
            return exc.code, exc.permanent
        except TimeoutError:
            return "timeout", False
        except Exception as exc:  # a channel's own bug or outage: the class only (its text may hold an address)
            return type(exc).__name__, False
        return None, False

    async def _address(self, request: NotificationRequested, tenant_id: UUID, address_kind: str) -> str | None:
        lookup = self.addresses.get(request.recipient_kind)
        return None if lookup is None else await lookup(tenant_id, request.recipient_id, address_kind)

    async def _staff_address(self, tenant_id: UUID, staff_id: UUID, address_kind: str) -> str | None:
        """A staff member's work email, read when sending (an address changed since the request
        is the one used; a deactivated member has none)."""
        if address_kind != "email":
            return None
        return (await self._clinic(tenant_id)).email_of(staff_id)
