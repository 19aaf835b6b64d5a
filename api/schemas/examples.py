"""Examples for the main answers, rendered by the projections' own code from a small, fixed
record (so an example can never drift from what the API sends; Redocly checks each against
its schema)."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from alliance.core.consent import ConsentGranted, ConsentScope
from alliance.core.goal import GoalState, GoalStatus, Milestone
from alliance.core.identity import Role
from alliance.core.projections.history import Entry, HistoryDoc, render_history
from alliance.core.projections.plan import PlanDoc, render_goal, render_plan
from alliance.core.projections.progress import Point, ProgressDoc, render_progress
from alliance.plugins.instruments import InstrumentDefinition
from alliance.plugins.measures.phq9 import PHQ9_V1

CLIENT = UUID("0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b01")
TENANT = UUID("0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b02")
CLINICIAN = UUID("0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b03")
GOAL = UUID("0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b12")
MILESTONE = UUID("0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b13")
MEASUREMENTS = (UUID("0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b21"), UUID("0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b22"))
NOW = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
CRISIS = {"text": "If you are in danger or might harm yourself, call 112 now.", "contacts": ["112"]}


def _goal(*, words: bool = True) -> GoalState:
    return GoalState(
        goal_id=GOAL, client_id=CLIENT, tenant_id=TENANT, status=GoalStatus.ACTIVE, author_party="client",
        author_id=CLIENT, version=2, statement="Walk the dog five mornings a week" if words else None,
        client_words="I walk my dog before work" if words else None,
        facets={"measurable": "five mornings a week"} if words else {}, due_date=date(2026, 6, 1),
        client_agreed_version=2, clinician_agreed_version=2, clinician_agreed_by=CLINICIAN, activated_version=2,
        milestones={MILESTONE: Milestone(milestone_id=MILESTONE, description="Walk to the park twice",
                                         provisional_date=date(2026, 3, 30))} if words else {},
        measures={"phq9": "weekly"})


def _consent() -> ConsentGranted:
    return ConsentGranted(scope=ConsentScope.GOAL_SETTING, text_version="v1", mode="self",
                          effective_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC), by=CLIENT, by_role=Role.CLIENT)


class _OnlyPhq9:
    """The built-in PHQ-9 definition, as the registry would hand it out (no plugin loading)."""

    def get(self, instrument_id: str, version: str | None = None) -> InstrumentDefinition:
        if instrument_id != PHQ9_V1.id:
            raise KeyError(instrument_id)
        return PHQ9_V1


@functools.cache
def plan_example() -> dict[str, Any]:
    doc = PlanDoc(client_id=CLIENT, tenant_id=TENANT, episode_id=UUID(int=CLIENT.int + 100),
                  primary_clinician=CLINICIAN, care_team={CLINICIAN: "clinician"}, consents=(_consent(),),
                  goals={GOAL: _goal()})
    return {**render_plan(doc, now=NOW), "crisis_information": CRISIS}


@functools.cache
def goal_example() -> dict[str, Any]:
    return {**render_goal(_goal(), NOW.date()), "fhir_lifecycle_status": "active", "stream_version": 5}


@functools.cache
def progress_example() -> dict[str, Any]:
    points = {}
    for measurement_id, total, day, band in zip(MEASUREMENTS, (16.0, 7.0), (2, 16), ("moderately severe", "mild"),
                                               strict=True):
        at = datetime(2026, 3, day, 8, 30, tzinfo=UTC)
        points[measurement_id] = Point(measurement_id=measurement_id, instrument_id="phq9", instrument_version="1",
                                       scores={"total": total}, band=band, informant="self", channel="app",
                                       observed_at=at, recorded_at=at, goal_ids=(GOAL,))
    doc = ProgressDoc(client_id=CLIENT, tenant_id=TENANT, points=points, goals={GOAL: _goal(words=False)})
    return render_progress(doc, instruments=_OnlyPhq9())


@functools.cache
def history_example() -> dict[str, Any]:
    entry = Entry(event_id=UUID("0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b31"), type="goal.agreed", stream_version=4,
                  goal_id=GOAL, goal_version=2, actor_id=CLIENT, actor_role="client",
                  occurred_at=datetime(2026, 3, 2, 9, 5, tzinfo=UTC),
                  recorded_at=datetime(2026, 3, 2, 9, 5, 0, 120000, tzinfo=UTC),
                  details={"goal_id": str(GOAL), "version": 2, "party": "client", "by": str(CLIENT),
                           "by_role": "client", "on_behalf": False})
    return render_history(HistoryDoc(client_id=CLIENT, tenant_id=TENANT, entries=(entry,)))


def caseload_example() -> dict[str, Any]:
    return {"items": [{"client_id": str(CLIENT), "primary_clinician": str(CLINICIAN), "discharged": False,
                       "open_risk_flags": 0, "open_alerts": [], "goals": 1, "next_due": "2026-03-30",
                       "measures_due": False, "measures_overdue": False,
                       "last_activity": "2026-03-16T08:30:00.120000+00:00"}],
            "next_cursor": None}


def measurement_example() -> dict[str, Any]:
    return {"command_id": "0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b41", "stream_id": f"client-{CLIENT}", "version": 9,
            "events": [{"event_id": "0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b42", "type": "measurement.recorded",
                        "version": 9, "recorded_at": "2026-03-16T08:30:00.120000+00:00"}],
            "created": {"measurement_id": str(MEASUREMENTS[1])}}


def instruments_example() -> dict[str, Any]:
    return {"instruments": [PHQ9_V1]}


def clinic_settings_example() -> dict[str, Any]:
    admin = "0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b04"
    changed = {"at": "2026-03-02T08:00:00.120000+00:00", "by": admin, "by_role": "admin"}
    return {"crisis_information": {**CRISIS, "shown_text": CRISIS["text"], "changed": changed},
            "escalation_policy": {"escalation_interval_hours": 12.0, "duty_clinician_id": str(CLINICIAN),
                                  "changed": changed},
            "alert_policy": {"after_administrations": 8, "after_weeks": None, "changed": None},
            "reminder_text": {"subject": "A questionnaire is ready",
                              "body": "A questionnaire is ready for you. Open the link below to answer it; it works "
                                      "once.", "changed": None},
            "staff_contacts": [{"staff_id": str(CLINICIAN), "has_email": True, "changed": changed},
                               {"staff_id": admin, "has_email": False, "changed": None}]}
