"""The alert policy's fold: follows every event in the store's order and decides which
not-on-track alerts to raise. No I/O: the follower (``follower.py``) reads and records.

What it keeps per client: each instrument's valid administrations (totals and observed-at,
nothing personal), which rules hold now, and the alerts already raised and still open; per
clinic, its alert setting. A rule that *starts* to hold (after an administration or a
correction) decides one alert, its id derived from the event that made it hold
(:func:`~core.alerts.events.alert_id_for`), unless an alert of that rule on that instrument
is still open (unacknowledged): one open alert per rule and instrument, never a storm.

Decisions are *pending* until the fold has caught up with the store's end: on a replay from
the start (every restart, and the benchmark's "rebuild"), an alert recorded before is seen
again further on and its pending decision is dropped, and a rule that held once but no longer
holds at the end raises nothing. So a restart records nothing twice, and old history never
floods a care team with alerts about the past.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from alliance.core.alerts.events import (
    ALERT_POLICY_ACTOR_ID,
    AlertRaised,
    AlertRule,
    alert_id_for,
)
from alliance.core.alerts.rules import BandLookup, SeriesFacts, evaluate
from alliance.core.clinic import DEFAULT_ALERT_AFTER_ADMINISTRATIONS
from alliance.core.events.envelope import RecordedEvent
from alliance.core.identity import Role
from alliance.plugins.instruments import InstrumentDefinition

#: (observed-at, recording order, total, measurement id, instrument version)
_Point = tuple[datetime, int, float, UUID, str]

Definitions = Callable[[str, str], InstrumentDefinition | None]


@dataclass(slots=True)
class _Series:
    points: list[_Point] = field(default_factory=list)
    by_id: dict[UUID, _Point] = field(default_factory=dict)
    holding: frozenset[AlertRule] = frozenset()


@dataclass(slots=True)
class _Client:
    tenant_id: UUID
    discharged: bool = False
    erased: bool = False
    order: int = 0
    series: dict[str, _Series] = field(default_factory=dict)
    #: (instrument id, rule) → the open alert's id
    open_alerts: dict[tuple[str, str], UUID] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """An alert to record on ``client_id``'s stream (``raised_at`` is set again when recorded)."""

    client_id: UUID
    tenant_id: UUID
    payload: AlertRaised

    @property
    def key(self) -> tuple[UUID, str, str]:
        return (self.client_id, self.payload.instrument_id, self.payload.rule)


_MEASURED = "measurement.recorded"
_IN_ERROR = "measurement.entered_in_error"
_RAISED = "alert.raised"
_ACKED = "alert.acknowledged"
_HANDLED = frozenset({_MEASURED, _IN_ERROR, _RAISED, _ACKED, "client.enrolled", "client.discharged",
                      "erasure.completed", "clinic.alert_policy_set"})


class AlertPolicy:
    """Fold events with :meth:`observe`; take the decisions with :meth:`take_pending` once caught up."""

    def __init__(self, definitions: Definitions, *, band: BandLookup | None = None) -> None:
        self._definitions = definitions
        self._band = band
        self._known: dict[tuple[str, str], InstrumentDefinition | None] = {}
        self.clients: dict[UUID, _Client] = {}
        #: tenant → (after administrations, after weeks)
        self.settings: dict[UUID, tuple[int, float | None]] = {}
        self.pending: dict[tuple[UUID, str, str], Decision] = {}
        self.checkpoint: str | None = None
        self.events_seen = 0

    # -- the fold ------------------------------------------------------------
    def observe_all(self, events: Iterable[RecordedEvent]) -> None:
        for event in events:
            self.observe(event)

    def observe(self, event: RecordedEvent) -> None:
        self.events_seen += 1
        self.checkpoint = event.checkpoint or self.checkpoint
        kind = event.type
        if kind not in _HANDLED:
            return
        p: Any = event.payload
        if kind == "clinic.alert_policy_set":
            self.settings[p.tenant_id] = (p.after_administrations, p.after_weeks)
            return
        client = self.clients.get(event.subject_id)
        if client is None:
            client = self.clients[event.subject_id] = _Client(tenant_id=event.tenant_id)
        if kind == _MEASURED:
            self._measured(event, client, p)
        elif kind == _IN_ERROR:
            self._in_error(event, client, p.measurement_id)
        elif kind == _RAISED:
            client.open_alerts[(p.instrument_id, p.rule)] = p.alert_id
            self.pending.pop((event.subject_id, p.instrument_id, p.rule), None)
        elif kind == _ACKED:
            client.open_alerts = {k: a for k, a in client.open_alerts.items() if a != p.alert_id}
        elif kind == "client.enrolled":
            client.discharged = False
        elif kind == "client.discharged":
            client.discharged = True
            self._drop_pending(event.subject_id)
        else:  # erasure.completed
            client.erased = True
            client.series.clear()
            self._drop_pending(event.subject_id)

    def _definition(self, instrument_id: str, version: str) -> InstrumentDefinition | None:
        key = (instrument_id, version)
        if key not in self._known:
            definition = self._definitions(instrument_id, version)
            # A rating of one goal (GAS, confidence) pooled across goals means nothing; and an
            # instrument no rule can read is not worth keeping a series of.
            usable = definition is not None and not definition.per_goal and (
                definition.reliable_change is not None or self._band is not None)
            self._known[key] = definition if usable else None
        return self._known[key]

    def _measured(self, event: RecordedEvent, client: _Client, p: Any) -> None:
        total = p.scores.get("total")
        if total is None or client.erased or self._definition(p.instrument_id, p.instrument_version) is None:
            return
        series = client.series.get(p.instrument_id)
        if series is None:
            series = client.series[p.instrument_id] = _Series()
        client.order += 1
        point: _Point = (p.observed_at, client.order, float(total), p.measurement_id, p.instrument_version)
        bisect.insort(series.points, point)
        series.by_id[p.measurement_id] = point
        self._evaluate(event, client, p.instrument_id, series)

    def _in_error(self, event: RecordedEvent, client: _Client, measurement_id: UUID) -> None:
        for instrument_id, series in client.series.items():
            point = series.by_id.pop(measurement_id, None)
            if point is not None:
                series.points.remove(point)
                self._evaluate(event, client, instrument_id, series)
                return

    def _evaluate(self, event: RecordedEvent, client: _Client, instrument_id: str, series: _Series) -> None:
        client_id = event.subject_id
        if not series.points or client.discharged:
            held: dict[AlertRule, Any] = {}
        else:
            first, last = series.points[0], series.points[-1]
            definition = self._definition(instrument_id, last[4])
            after_n, after_weeks = self.settings.get(client.tenant_id, (DEFAULT_ALERT_AFTER_ADMINISTRATIONS, None))
            facts = SeriesFacts(instrument_id=instrument_id, instrument_version=last[4],
                                baseline_measurement_id=first[3], measurement_id=last[3], baseline=first[2],
                                latest=last[2], baseline_observed_at=first[0], latest_observed_at=last[0],
                                administrations=len(series.points))
            held = {} if definition is None else evaluate(facts, definition, after_administrations=after_n,
                                                          after_weeks=after_weeks, band=self._band)
        before = series.holding
        series.holding = frozenset(held)
        for rule in before - series.holding:
            self.pending.pop((client_id, instrument_id, rule), None)
        for rule in series.holding - before:
            if (instrument_id, rule) in client.open_alerts:
                continue
            finding = held[rule]
            payload = AlertRaised(
                alert_id=alert_id_for(client_id, instrument_id, rule, event.event_id), rule=rule,
                instrument_id=instrument_id, instrument_version=facts.instrument_version,
                baseline_measurement_id=facts.baseline_measurement_id, measurement_id=facts.measurement_id,
                baseline=facts.baseline, latest=facts.latest, baseline_observed_at=facts.baseline_observed_at,
                latest_observed_at=facts.latest_observed_at, administrations=facts.administrations,
                weeks=round(facts.weeks, 2), criterion=finding.criterion, method=finding.method,
                threshold=finding.threshold, rci=finding.rci, after_administrations=finding.after_administrations,
                after_weeks=finding.after_weeks, band_lower=finding.band_lower, band_upper=finding.band_upper,
                source=finding.source, raised_at=event.recorded_at, by=ALERT_POLICY_ACTOR_ID, by_role=Role.SYSTEM)
            decision = Decision(client_id=client_id, tenant_id=client.tenant_id, payload=payload)
            self.pending[decision.key] = decision

    def _drop_pending(self, client_id: UUID) -> None:
        for key in [k for k in self.pending if k[0] == client_id]:
            del self.pending[key]

    # -- decisions -----------------------------------------------------------
    def take_pending(self) -> list[Decision]:
        """The decisions to record now (call once caught up); each is taken once. The caller
        gives back (:meth:`give_back`) any it could not record, to try at the next round."""
        taken = list(self.pending.values())
        self.pending.clear()
        for d in taken:
            self.clients[d.client_id].open_alerts[(d.payload.instrument_id, d.payload.rule)] = d.payload.alert_id
        return taken

    def give_back(self, decision: Decision) -> None:
        """Not recorded this time (an outage, a conflict): decide it again at the next round."""
        self.forget(decision)
        self.pending.setdefault(decision.key, decision)

    def forget(self, decision: Decision) -> None:
        """Refused for good (the client was discharged or erased meanwhile): it is not open."""
        client = self.clients[decision.client_id]
        key = (decision.payload.instrument_id, decision.payload.rule)
        if client.open_alerts.get(key) == decision.payload.alert_id:
            del client.open_alerts[key]
