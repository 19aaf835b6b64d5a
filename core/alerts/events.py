"""Alert events, recorded on the client's stream (``client-{id}``) so that the plan, progress
and caseload see them through their usual folds and the change feed streams them live.

``alert.raised`` is recorded by the alert policy as role ``system``, its id derived from what
triggered it (:func:`alert_id_for`), so a replay or a restart of the policy records it once.
It carries scores and criteria only, never personal text. ``alert.acknowledged`` is a care-team
clinician's, with the action taken (personal text: sealed with the client's key).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal
from uuid import UUID

from alliance.core.events.base import EventPayload, PersonalStr
from alliance.core.identity import Role

#: Namespace of alert ids and of the policy's command ids.
ALERT_NAMESPACE = UUID("5c1f7a2e-93b4-4d0e-8a61-2f7e4b9c0d13")

#: The alert policy records as this system actor (role ``system``).
ALERT_POLICY_ACTOR_ID = uuid.uuid5(ALERT_NAMESPACE, "alert-policy")

#: ``reliable_deterioration``: the change from baseline is reliable and for the worse.
#: ``no_reliable_improvement``: the clinic's number of administrations (or weeks) has passed
#: with no reliable change. ``outside_expected_response``: the latest total is on the worse
#: side of a band an instrument plugin declared (``expected_response`` hook).
AlertRule = Literal["reliable_deterioration", "no_reliable_improvement", "outside_expected_response"]
ALERT_RULES: tuple[AlertRule, ...] = ("reliable_deterioration", "no_reliable_improvement",
                                      "outside_expected_response")


def alert_id_for(client_id: UUID, instrument_id: str, rule: str, trigger_event_id: UUID) -> UUID:
    """One alert per (client, instrument, rule, event that made the rule hold)."""
    return uuid.uuid5(ALERT_NAMESPACE, f"{client_id}:{instrument_id}:{rule}:{trigger_event_id}")


class AlertRaised(EventPayload, tag="alert.raised", kw_only=True, frozen=True):
    """A client is not on track on one instrument: the rule, and the data that made it hold."""

    alert_id: UUID
    rule: AlertRule
    instrument_id: str
    instrument_version: str
    #: The first and the latest administration of the series the rule read.
    baseline_measurement_id: UUID
    measurement_id: UUID
    baseline: float
    latest: float
    baseline_observed_at: datetime
    latest_observed_at: datetime
    #: Administrations in the series (the baseline included) and weeks from baseline to latest.
    administrations: int
    weeks: float
    #: The criterion applied, in words ("a rise of at least 6 points (reliable change
    #: threshold)"), and the figures it used.
    criterion: str
    method: str | None = None
    threshold: float | None = None
    rci: float | None = None
    #: For ``no_reliable_improvement``: the clinic's setting in force (administrations, weeks).
    after_administrations: int | None = None
    after_weeks: float | None = None
    #: For ``outside_expected_response``: the plugin's band.
    band_lower: float | None = None
    band_upper: float | None = None
    source: str = ""
    raised_at: datetime
    by: UUID
    by_role: Role


class AlertAcknowledged(EventPayload, tag="alert.acknowledged", kw_only=True, frozen=True):
    alert_id: UUID
    action_taken: PersonalStr
    acknowledged_at: datetime
    by: UUID
    by_role: Role


ALERT_EVENT_TYPES: tuple[type[EventPayload], ...] = (AlertRaised, AlertAcknowledged)
