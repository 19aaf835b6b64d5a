"""The process that runs the alert policy: one leader among the app's processes.

Like the notification dispatcher (``core/notifications/dispatcher.py``) it holds
``pg_try_advisory_lock`` on a dedicated connection while it leads and wakes on the store's
NOTIFY. It keeps no table: on taking the lead it folds the store from the start (the fold is
in memory, see ``policy.py``; ``bench/bench_alerts.py`` measures its rate against ``read_all``
alone), then follows. Once caught up, each decision is recorded through the command handler
as a ``RaiseAlert`` by role ``system`` with a command id derived from the alert id, so a
decision recorded before (by a deposed leader, or before a crash) answers as a duplicate and is
never recorded twice. Logs carry ids and rule names only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from typing import Any

import asyncpg
from msgspec.structs import replace

from alliance.core.alerts.events import ALERT_NAMESPACE, ALERT_POLICY_ACTOR_ID
from alliance.core.alerts.policy import AlertPolicy, Decision, Definitions
from alliance.core.alerts.rules import BandLookup
from alliance.core.client import RaiseAlert
from alliance.core.clock import SYSTEM_CLOCK, Clock
from alliance.core.errors import AllianceError, ConcurrencyConflict, DatabaseUnavailable, OutcomeUnknown
from alliance.core.events.postgres import EVENTS_CHANNEL
from alliance.core.events.store import EventStore
from alliance.core.handling import CommandHandler
from alliance.core.identity import Actor, Role
from alliance.core.logging import get_logger
from alliance.core.tasks import cancel_and_wait
from alliance.plugins.instruments import InstrumentDefinition

log = get_logger("alliance.alerts")

#: After a wake-up that found nothing readable: look again after these pauses (the append is
#: below the store's read horizon once older transactions end; see the projection runner).
_RETRY_DELAYS = (0.002, 0.005, *(0.01,) * 5, *(0.05,) * 3)

ACTOR = Actor(id=ALERT_POLICY_ACTOR_ID, role=Role.SYSTEM)


def lock_key(name: str) -> int:
    digest = hashlib.blake2b(f"alliance.alerts.run.{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def registry_definitions(instruments: Any) -> Definitions:
    """Definitions from an ``InstrumentRegistry``: the version recorded, else the latest installed."""

    def get(instrument_id: str, version: str) -> InstrumentDefinition | None:
        for wanted in (version, None):
            try:
                return instruments.get(instrument_id, wanted)  # type: ignore[no-any-return]
            except Exception:  # NotFound: not installed; no rule can read it
                continue
        return None

    return get


def plugin_bands(plugins: Any) -> BandLookup | None:
    """The ``expected_response`` hook as a lookup, or None when no plugin implements it."""
    hook = plugins.hook.expected_response
    if not hook.get_hookimpls():
        return None

    def band(instrument_id: str, version: str, baseline: float, index: int, weeks: float) -> Any:
        return hook(instrument_id=instrument_id, instrument_version=version, baseline=baseline,
                    administration_index=index, weeks_since_baseline=weeks)

    return band


class AlertFollower:
    """Follows the store and records the alert policy's decisions; ``start()`` it, ``await stop()`` it."""

    def __init__(self, store: EventStore, definitions: Definitions, *, dsn: str, band: BandLookup | None = None,
                 clock: Clock = SYSTEM_CLOCK, name: str = "alerts", batch_size: int = 1000,
                 poll_interval: float = 1.0, standby_interval: float = 1.0) -> None:
        self.store = store
        self.definitions = definitions
        self.band = band
        self.dsn = dsn
        self.clock = clock
        self.name = name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.standby_interval = standby_interval
        self.handler = CommandHandler(store)
        self.leading = False
        self.policy: AlertPolicy | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._rounds = 0

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"alerts:{self.name}")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def wait_rounds(self, n: int = 1, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until the leader has completed ``n`` more rounds (tests)."""
        target = self._rounds + n
        async with asyncio.timeout(timeout):
            while self._rounds < target:
                self._wake.set()
                await asyncio.sleep(0.01)

    async def run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn)
                await self._session(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost, server restart: re-elect after a pause
                log.warning("alerts_error", follower=self.name, error=type(exc).__name__)
            finally:
                self.leading = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(self.standby_interval)

    async def _session(self, conn: asyncpg.Connection) -> None:
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(self.name)):  # noqa: ASYNC110
            await asyncio.sleep(self.standby_interval)
        self.leading = True
        await conn.add_listener(EVENTS_CHANNEL, lambda *_: self._wake.set())
        # A new lead folds from the start: the fold lives in memory only.
        policy = self.policy = AlertPolicy(self.definitions, band=self.band)
        log.info("alerts_leading", follower=self.name)
        retry = len(_RETRY_DELAYS)
        while True:
            self._wake.clear()
            events = await self.store.read_all(**({"after": policy.checkpoint} if policy.checkpoint else {}),
                                               limit=self.batch_size)
            policy.observe_all(events)
            if len(events) == self.batch_size:
                continue  # not caught up: decisions wait (a later event may show them recorded)
            await self._record(policy)
            self._rounds += 1
            if not events and retry < len(_RETRY_DELAYS):
                await asyncio.sleep(_RETRY_DELAYS[retry])
                retry += 1
                continue
            try:
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
                retry = 0
            except TimeoutError:
                retry = len(_RETRY_DELAYS)
                await conn.execute("SELECT 1")  # notice a lost session (and lock) while idle

    async def _record(self, policy: AlertPolicy) -> None:
        for decision in policy.take_pending():
            try:
                recorded = await self.record(decision)
            except (ConcurrencyConflict, OutcomeUnknown, DatabaseUnavailable, OSError, asyncpg.PostgresError) as exc:
                policy.give_back(decision)  # try again next round
                log.warning("alert_not_recorded", alert_id=str(decision.payload.alert_id), error=type(exc).__name__)
                continue
            except AllianceError as exc:  # refused: discharged or erased since; nothing to record
                policy.forget(decision)
                log.info("alert_refused", alert_id=str(decision.payload.alert_id), code=exc.code)
                continue
            if recorded:
                log.info("alert_raised", alert_id=str(decision.payload.alert_id), rule=decision.payload.rule,
                         instrument_id=decision.payload.instrument_id)

    async def record(self, decision: Decision) -> bool:
        """Record one decision; False when it was recorded before."""
        now = self.clock.now()
        alert = replace(decision.payload, raised_at=now)
        command = RaiseAlert(command_id=uuid.uuid5(ALERT_NAMESPACE, f"raise:{alert.alert_id}"), actor=ACTOR,
                             at=now, tenant_id=decision.tenant_id, alert=alert)
        outcome = await self.handler.handle_client(decision.client_id, command)
        return not outcome.duplicate
