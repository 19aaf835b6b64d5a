"""The process that runs the alert policy: one leader among the app's processes.

Like the notification dispatcher (``core/notifications/dispatcher.py``) it is a ``Leader``
(``core/leader.py``): a session advisory lock on a dedicated connection while it leads, woken
by the store's NOTIFY. It keeps no table: on taking the lead it folds the store from the start
(the fold is in memory, see ``policy.py``; ``bench/bench_alerts.py`` measures its rate against
``read_all`` alone), then follows. Once caught up, each decision is recorded through the command
handler as a ``RaiseAlert`` by role ``system`` with a command id derived from the alert id, so a
decision recorded before (by a deposed leader, or before a crash) answers as a duplicate and is
never recorded twice. Logs carry ids and rule names only.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from msgspec.structs import replace

from alliance.core.alerts.events import ALERT_NAMESPACE, ALERT_POLICY_ACTOR_ID
from alliance.core.alerts.policy import AlertPolicy, Decision, Definitions
from alliance.core.alerts.rules import BandLookup
from alliance.core.client import RaiseAlert
from alliance.core.clock import SYSTEM_CLOCK, Clock
from alliance.core.errors import AllianceError, ConcurrencyConflict, DatabaseUnavailable, OutcomeUnknown
from alliance.core.events.envelope import RecordedEvent
from alliance.core.events.store import START, EventStore
from alliance.core.handling import CommandHandler
from alliance.core.identity import Actor, Role
from alliance.core.leader import Leader
from alliance.core.logging import get_logger
from alliance.plugins.instruments import InstrumentDefinition

log = get_logger("alliance.alerts")

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


class AlertFollower(Leader):
    """Follows the store and records the alert policy's decisions; ``start()`` it, ``await stop()`` it."""

    kind = "alerts"
    name_field = "follower"
    _log = log
    #: Not caught up: decisions wait (a later event may show them recorded).
    work_while_behind = False

    def __init__(self, store: EventStore, definitions: Definitions, *, dsn: str, band: BandLookup | None = None,
                 clock: Clock = SYSTEM_CLOCK, name: str = "alerts", batch_size: int = 1000,
                 poll_interval: float = 1.0, standby_interval: float = 1.0) -> None:
        super().__init__(store, dsn=dsn, name=name, batch_size=batch_size, poll_interval=poll_interval,
                         standby_interval=standby_interval)
        self.definitions = definitions
        self.band = band
        self.clock = clock
        self.handler = CommandHandler(store)
        self.policy: AlertPolicy | None = None

    # -- the leader's round (core/leader.py) ---------------------------------
    def _lock_keys(self) -> list[int]:
        return [lock_key(self.name)]

    async def _lead(self, conn: asyncpg.Connection) -> str:
        # A new lead folds from the start: the fold lives in memory only.
        self.policy = AlertPolicy(self.definitions, band=self.band)
        log.info("alerts_leading", follower=self.name)
        return START

    async def _follow(self, conn: asyncpg.Connection, after: str, events: Sequence[RecordedEvent]) -> str:
        assert self.policy is not None
        self.policy.observe_all(events)
        return self.policy.checkpoint or after

    async def _work(self, conn: asyncpg.Connection) -> None:
        assert self.policy is not None
        await self._record(self.policy)

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
