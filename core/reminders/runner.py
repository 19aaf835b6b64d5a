"""The reminder process manager at the edge: follows the store, wakes on the clock, decides
(``decide.py``) and records each decision once.

One object with ``start()``/``stop()`` (the app's lifespan runs it beside the dispatcher). Many
may run; one leads (``core/leader.py``: a session advisory lock, keyed as the projection
runner's are, on the connection that writes its tables), so a leader killed with ``kill -9``
loses its lock with its session and a standby takes over.

Each round of the leader:

1. **Follow.** Read the store after the checkpoint. A measure attached to a goal (or to the
   episode) adds the client (and goal) to ``reminder_watch``; anything about a watched client that can change a
   decision (schedule, checkpoint, goal status, consent, discharge, measurement, reminder
   settings, erasure) marks them to be decided now. A reminder's notification sent, or given
   up, is recorded as ``reminder.sent`` / ``reminder.failed`` on the client's reminder stream
   (ids derived from the reminder and channel) *before* the checkpoint passes it. The rows and
   the checkpoint are written in one fenced transaction.
2. **Decide.** Every watched client whose ``next_at`` has come (read from the injected clock)
   is decided; the decision's events are appended at once: the reminder stream at the version
   decided on, plus each link's and each notification request's new stream (version 0), for
   many clients of one clinic in one transaction. A crash after that commit and before
   ``next_at`` moves decides the same client again and finds nothing new to record; a stream
   that moved meanwhile is re-read and re-decided.

Delivery is the notification dispatcher's (``core/notifications/dispatcher.py``): a reminder's
requests are ordinary ``notification.requested`` work items of kind ``reminder``, sent at
least once with a message id derived from the reminder id. Logs carry ids and counts only.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from alliance.core.clock import SYSTEM_CLOCK, Clock
from alliance.core.errors import ConcurrencyConflict, ValidationError
from alliance.core.events.envelope import NewEvent, RecordedEvent
from alliance.core.events.store import START, EventStore, StreamAppend
from alliance.core.handling import Loaded, StateCache
from alliance.core.leader import Leader
from alliance.core.logging import get_logger
from alliance.core.notifications.dispatcher import notification_status
from alliance.core.notifications.events import (
    NotificationFailed,
    NotificationRequested,
    NotificationSent,
    notification_stream,
    request_event_id,
)
from alliance.core.projections.runner import lock_key
from alliance.core.questionnaire_links import QuestionnaireLinkIssued, event_id_for, link_stream
from alliance.core.reminders.decide import ChannelInfo, Decision, decide
from alliance.core.reminders.events import (
    REMINDER_ACTOR_ID,
    REMINDER_KIND,
    REMINDER_ROLE,
    ReminderFailed,
    ReminderScheduled,
    ReminderSent,
    ReminderSuppressed,
    decision_event_id,
    evolve_reminders,
    outcome_event_id,
    reminders_stream,
)
from alliance.core.reminders.sources import (
    attached_measures,
    client_view,
    episode_measures,
    observations_of,
    reminder_settings,
)

log = get_logger("alliance.reminders")

#: Events of the process's own making: they never wake a client (nothing in them changes a decision).
_OWN = frozenset({"reminder.scheduled", "reminder.suppressed", "reminder.sent", "reminder.failed",
                  "questionnaire_link.issued", "questionnaire_link.refused", "notification.requested",
                  "notification.sent", "notification.failed", "notification.escalation_decided"})
_ATTACHED = "goal.measure_attached"
_EPISODE_ATTACHED = "episode.measure_attached"
#: The streams a decision reads (their versions are kept as followed).
_FOLLOWED = ("client-", "goal-", "reminders-")


async def load_checkpoint(conn: asyncpg.Connection, name: str) -> str:
    await conn.execute("INSERT INTO reminder_checkpoints (name, checkpoint) VALUES ($1, $2) "
                       "ON CONFLICT (name) DO NOTHING", name, START)
    return str(await conn.fetchval("SELECT checkpoint FROM reminder_checkpoints WHERE name = $1", name))


class CheckpointMoved(Exception):
    """The stored checkpoint is not the one this runner wrote last (another writer)."""


class ReminderRunner(Leader):
    """Decides and records reminders; ``start()`` it, ``await stop()`` it."""

    kind = "reminders"
    name_field = "runner"
    _log = log

    def __init__(self, store: EventStore, *, dsn: str, channels: Sequence[ChannelInfo], key: bytes,
                 clock: Clock = SYSTEM_CLOCK, link_hours: float = 72.0, name: str = "reminders",
                 batch_size: int = 500, decide_batch: int = 1000, group_size: int = 50, concurrency: int = 6,
                 poll_interval: float = 1.0, standby_interval: float = 1.0) -> None:
        super().__init__(store, dsn=dsn, name=name, batch_size=batch_size, poll_interval=poll_interval,
                         standby_interval=standby_interval)
        self.channels = list(channels)
        self.key = key
        self.clock = clock
        self.link_hours = link_hours
        self.decide_batch = decide_batch
        self.group_size = group_size
        #: Groups decided at once (each holds one pooled connection at a time).
        self.concurrency = concurrency
        #: Totals since start (tests, benchmarks): clients decided, events recorded.
        self.decided = 0
        self.recorded = 0
        self._states = StateCache(size=50_000)
        #: The version of each watched client's streams as last followed (or appended by this
        #: runner): a cached state at that version is current, and is decided on without a read.
        self._seen: dict[str, int] = {}
        # Cached states hold decrypted reminder addresses: an erasure (any process) drops them all,
        # as does a gap in the store's notifications (one may have been missed).
        for hook in ("on_key_destroyed", "on_notification_gap"):
            register = getattr(store, hook, None)
            if register is not None:
                register(lambda *_: self.forget())

    def forget(self) -> None:
        """Drop every cached state (they are read again, with the keys as they are now)."""
        self._states.clear()
        self._seen.clear()

    # -- the leader's round (core/leader.py) ---------------------------------
    def _lock_keys(self) -> list[int]:
        return [lock_key("run", self.name)]

    async def _lead(self, conn: asyncpg.Connection) -> str:
        self.forget()  # another leader may have recorded since this one last led
        checkpoint = await load_checkpoint(conn, self.name)
        log.info("reminders_leading", runner=self.name, checkpoint=checkpoint)
        return checkpoint

    async def _work(self, conn: asyncpg.Connection) -> None:
        await self.decide_due(conn)

    # -- 1. follow -----------------------------------------------------------
    async def _follow(self, conn: asyncpg.Connection, after: str, events: Sequence[RecordedEvent]) -> str:
        attached: dict[UUID, tuple[UUID, set[UUID]]] = {}
        touched: set[UUID] = set()
        for e in events:
            if e.type == _ATTACHED and e.stream_id.startswith("goal-"):
                entry = attached.setdefault(e.subject_id, (e.tenant_id, set()))
                entry[1].add(UUID(e.stream_id[len("goal-"):]))
            elif e.type == _EPISODE_ATTACHED:
                attached.setdefault(e.subject_id, (e.tenant_id, set()))
            elif isinstance(e.payload, NotificationSent | NotificationFailed):
                await self._outcome(e)
            if e.type not in _OWN:
                touched.add(e.subject_id)
            if e.stream_id.startswith(_FOLLOWED):
                self._seen[e.stream_id] = max(self._seen.get(e.stream_id, 0), e.version)
        now = self.clock.now()
        new = events[-1].checkpoint
        async with conn.transaction():
            moved = await conn.fetchval(
                "UPDATE reminder_checkpoints SET checkpoint = $3, updated_at = now() "
                "WHERE name = $1 AND checkpoint = $2 RETURNING name", self.name, after, new)
            if moved is None:
                raise CheckpointMoved(self.name)
            if attached:
                await conn.executemany(
                    "INSERT INTO reminder_watch (client_id, tenant_id, goal_ids, next_at) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (client_id) DO UPDATE SET goal_ids = ARRAY(SELECT DISTINCT g FROM "
                    "unnest(reminder_watch.goal_ids || EXCLUDED.goal_ids) AS g ORDER BY g), next_at = $4, "
                    "updated_at = now()",
                    [(c, t, sorted(goals), now) for c, (t, goals) in attached.items()])
            rest = list(touched - set(attached))
            if rest:
                await conn.execute("UPDATE reminder_watch SET next_at = $2, updated_at = now() "
                                   "WHERE client_id = ANY($1::uuid[])", rest, now)
        return new

    async def _outcome(self, event: RecordedEvent) -> None:
        """A reminder's notification was sent (or given up): say so on the reminder stream."""
        payload: Any = event.payload
        if isinstance(payload, NotificationFailed) and not payload.final:
            return  # retried by the dispatcher: not an outcome yet
        request = notification_status(await self.store.read_stream(notification_stream(payload.notification_id)))
        req: NotificationRequested | None = request.request
        if req is None or req.kind != REMINDER_KIND or req.client_id is None:
            return
        rid, channel = req.reference_id, payload.channel
        outcome: ReminderSent | ReminderFailed
        if isinstance(payload, NotificationSent):
            outcome = ReminderSent(reminder_id=rid, notification_id=payload.notification_id, channel=channel,
                                   message_id=payload.message_id, sent_at=payload.sent_at)
        else:
            outcome = ReminderFailed(reminder_id=rid, notification_id=payload.notification_id, channel=channel,
                                     error=payload.error, failed_at=payload.failed_at)
        new = self._event(outcome_event_id(rid, channel), outcome, event.tenant_id, req.client_id,
                          self.clock.now(), event.event_id)
        for _ in range(10):
            stream = reminders_stream(req.client_id)
            version = await self.store.stream_version(stream)
            try:
                await self.store.append(stream, [new], version)
                self.recorded += 1
                return
            except ConcurrencyConflict:
                continue
            except ValidationError as exc:
                if exc.code == "event_id_reused":
                    return
                raise
        raise ConcurrencyConflict("the reminder stream kept moving", stream_id=reminders_stream(req.client_id),
                                  expected=-1, actual=-1)

    # -- 2. decide -----------------------------------------------------------
    async def decide_due(self, conn: asyncpg.Connection) -> int:
        """Decide every client whose time has come; how many were decided."""
        total = 0
        while True:
            now = self.clock.now()
            rows = await conn.fetch("SELECT client_id, tenant_id, goal_ids FROM reminder_watch "
                                    "WHERE next_at <= $1 ORDER BY next_at LIMIT $2", now, self.decide_batch)
            if not rows:
                return total
            by_tenant: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
            for row in rows:
                by_tenant[row[1]].append(row)
            # Groups of one clinic's clients, several at once: each is mostly waiting on the
            # database (reads, then one append transaction), so they overlap on the pool.
            groups = [(tenant, clients[i:i + self.group_size]) for tenant, clients in by_tenant.items()
                      for i in range(0, len(clients), self.group_size)]
            gate = asyncio.Semaphore(self.concurrency)
            next_at = [item for done in await asyncio.gather(*(self._gated(gate, t, g, now) for t, g in groups))
                       for item in done]
            await conn.executemany("UPDATE reminder_watch SET next_at = $2, updated_at = now() WHERE client_id = $1",
                                   next_at)
            total += len(rows)
            self.decided += len(rows)
            if len(rows) < self.decide_batch:
                return total

    async def _gated(self, gate: asyncio.Semaphore, tenant: UUID, rows: Sequence[asyncpg.Record], now: datetime
                     ) -> list[tuple[UUID, datetime | None]]:
        async with gate:
            return await self._decide_group(tenant, rows, now)

    async def _decided(self, client_id: UUID, goal_ids: Sequence[UUID], now: datetime, *, fresh: bool = False
                       ) -> tuple[Decision, list[StreamAppend], Loaded]:
        """Decide one client; ``fresh``: read every stream (after a conflict), not only what is
        known to have changed. The third item is the reminder stream as decided on."""
        known = None if fresh else self._seen
        (view, _), (prefs, version), on_goals = await asyncio.gather(
            client_view(self.store, client_id, self._states, known),
            reminder_settings(self.store, client_id, self._states, known),
            attached_measures(self.store, client_id, goal_ids, self._states, known))
        attached = [*episode_measures(view.state), *on_goals]
        decision = decide(client=view.state, prefs=prefs, attached=attached, observations=observations_of(view),
                          channels=self.channels, now=now, key=self.key, link_hours=self.link_hours)
        return (decision, self._appends(view.state.tenant_id, client_id, version, decision, now),
                Loaded(reminders_stream(client_id), prefs, version))

    def _recorded_all(self, decision: Decision, appends: list[StreamAppend], read: Loaded) -> None:
        """After an append: the reminder stream's state as this runner wrote it (no read next time)."""
        self.recorded += sum(len(a.events) for a in appends)
        if decision.reminders:
            state = read.state
            for payload in decision.reminders:
                state = evolve_reminders(state, payload)
            self._states.put(Loaded(read.stream_id, state, read.version + len(decision.reminders)))

    async def _decide_group(self, tenant: UUID, rows: Sequence[asyncpg.Record], now: datetime
                            ) -> list[tuple[UUID, datetime | None]]:
        results = await asyncio.gather(*(self._decided(row[0], list(row[2]), now) for row in rows))
        decided = [(row[0], list(row[2]), *result) for row, result in zip(rows, results, strict=True)]
        appends = [a for _, _, _, client_appends, _ in decided for a in client_appends]
        if appends:
            try:
                await self.store.append_many(appends)
                for _, _, d, client_appends, read in decided:
                    self._recorded_all(d, client_appends, read)
                return [(client, d.next_at) for client, _, d, _, _ in decided]
            except (ConcurrencyConflict, ValidationError) as exc:
                if isinstance(exc, ValidationError) and exc.code != "event_id_reused":
                    raise
                # one client's stream moved (a command landed meanwhile): each on its own, re-read
        out = []
        for client, goals, decision, client_appends, read in decided:
            out.append((client, await self._record_one(client, goals, decision, client_appends, read, now)))
        return out

    async def _record_one(self, client: UUID, goals: list[UUID], decision: Decision,
                          appends: list[StreamAppend], read: Loaded, now: datetime) -> datetime | None:
        for _ in range(5):
            if not appends:
                return decision.next_at
            try:
                await self.store.append_many(appends)
                self._recorded_all(decision, appends, read)
                return decision.next_at
            except ConcurrencyConflict:
                pass
            except ValidationError as exc:
                if exc.code != "event_id_reused":
                    raise
            decision, appends, read = await self._decided(client, goals, now, fresh=True)  # re-read
        log.warning("reminder_decision_deferred", client_id=str(client))
        return now  # still contended: the next round tries again

    def _appends(self, tenant: UUID | None, client_id: UUID, version: int, decision: Decision,
                 now: datetime) -> list[StreamAppend]:
        if tenant is None or not decision.reminders:
            return []
        out: list[StreamAppend] = []
        events = []
        for payload in decision.reminders:
            assert isinstance(payload, ReminderScheduled | ReminderSuppressed)
            events.append(self._event(decision_event_id(payload.reminder_id), payload, tenant, client_id, now, None))
        out.append(StreamAppend(stream_id=reminders_stream(client_id), expected_version=version, events=events))
        causes = {e.payload.reminder_id: e.event_id for e in events}  # type: ignore[attr-defined]
        link: QuestionnaireLinkIssued
        for link in decision.links:
            cause = causes.get(link.reminder_id) if link.reminder_id else None
            out.append(StreamAppend(stream_id=link_stream(link.link_id), expected_version=0, events=[
                self._event(event_id_for(link.link_id, "issued"), link, tenant, client_id, now, cause)]))
        for request in decision.requests:
            out.append(StreamAppend(stream_id=notification_stream(request.notification_id), expected_version=0,
                                    events=[self._event(request_event_id(request.notification_id), request, tenant,
                                                        client_id, now, causes.get(request.reference_id))]))
        return out

    @staticmethod
    def _event(event_id: UUID, payload: Any, tenant_id: UUID, subject_id: UUID, now: datetime,
               causation: UUID | None) -> NewEvent:
        return NewEvent(event_id=event_id, payload=payload, tenant_id=tenant_id, subject_id=subject_id,
                        actor_id=REMINDER_ACTOR_ID, actor_role=REMINDER_ROLE, occurred_at=now,
                        correlation_id=causation, causation_id=causation)
