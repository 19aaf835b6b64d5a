"""Liveness, readiness, instruments, staff and the caseload."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from alliance.plugins.instruments import InstrumentDefinition


class Health(msgspec.Struct, kw_only=True):
    """The process answers."""

    status: Annotated[str, Meta(description="Always `ok`")]


class ProjectionLag(msgspec.Struct, kw_only=True):
    """How far a projection is behind the store."""

    events_behind: Annotated[int, Meta(description="Events not yet folded")]
    seconds_behind: Annotated[float, Meta(description="Age of the oldest of them")]


class IdempotencyCheck(msgspec.Struct, kw_only=True):
    """This worker's Idempotency-Key claims (informational)."""

    liveness_lock: Annotated[str, Meta(description="`held` or `reconnecting`")]
    releases_pending: Annotated[bool, Meta(description="Whether failed requests' claims wait to be released")]


class ViewCacheCheck(msgspec.Struct, kw_only=True):
    """The view cache (informational; no counts: /ready is public)."""

    listening: Annotated[bool, Meta(description="Whether it follows the change feed")]
    max_age_seconds: Annotated[float, Meta(description="How long an entry may be served")]


class BackgroundCheck(msgspec.Struct, kw_only=True):
    """Whether this process runs the background leaders (informational)."""

    runs_here: Annotated[bool, Meta(description="False when ALLIANCE_BACKGROUND=off (`alliance projector` runs them)")]
    leading: Annotated[dict[str, bool], Meta(
        description="Each leader this process runs, and whether it leads now (else it stands by)")]


class ReadinessChecks(msgspec.Struct, kw_only=True):
    """Each check's answer."""

    database: Annotated[str, Meta(description="`ok`, `unreachable: …` or `error (…)`")]
    migrations: Annotated[str | UnsetType, Meta(description="`ok` or `pending: [...]`")] = UNSET
    projections: Annotated[dict[str, ProjectionLag] | UnsetType, Meta(
        description="Lag per projection, by name")] = UNSET
    idempotency: Annotated[IdempotencyCheck | UnsetType, Meta(description="Idempotency-Key claims")] = UNSET
    view_cache: Annotated[ViewCacheCheck, Meta(description="The view cache")]
    background: Annotated[BackgroundCheck | UnsetType, Meta(description="The background leaders")] = UNSET


class Readiness(msgspec.Struct, kw_only=True):
    """Ready to serve: database reachable, migrations applied, projections caught up (503 otherwise)."""

    status: Annotated[str, Meta(description="`ready` or `not_ready`")]
    checks: Annotated[ReadinessChecks, Meta(description="What was checked")]


class InstrumentList(msgspec.Struct, kw_only=True):
    """Every installed instrument definition: items, anchors, translations, scoring, bands, sources."""

    instruments: Annotated[list[InstrumentDefinition], Meta(
        description="Definitions (a frontend renders each as a form from its items and anchors)")]


class StaffMember(msgspec.Struct, kw_only=True):
    """An active staff member."""

    staff_id: Annotated[UUID, Meta(description="The staff member")]
    role: Annotated[str, Meta(description="clinician, supervisor, auditor or admin")]


class StaffList(msgspec.Struct, kw_only=True):
    """Active staff of this clinic."""

    staff: Annotated[list[StaffMember], Meta(description="Staff, by id")]


class CaseloadAlert(msgspec.Struct, kw_only=True):
    """An open alert, by rule and instrument (the plan and progress show its data)."""

    alert_id: Annotated[UUID, Meta(description="The alert")]
    rule: Annotated[str, Meta(description="Its rule")]
    instrument_id: Annotated[str, Meta(description="The instrument")]
    raised_at: Annotated[datetime, Meta(description="When it was raised")]


class CaseloadItem(msgspec.Struct, kw_only=True):
    """A client on the caller's caseload (no personal text: read the plan for that)."""

    client_id: Annotated[UUID, Meta(description="The client")]
    primary_clinician: Annotated[UUID | None, Meta(description="Their primary clinician (null only in a plan "
                                                               "folded before enrolment)")]
    discharged: Annotated[bool, Meta(description="Whether discharged")]
    open_risk_flags: Annotated[int, Meta(description="Risk flags awaiting acknowledgement")]
    open_alerts: Annotated[list[CaseloadAlert], Meta(description="Not-on-track alerts awaiting acknowledgement")]
    goals: Annotated[int, Meta(description="How many goals")]
    next_due: Annotated[date | None, Meta(description="The earliest date a measure is next due")]
    measures_due: Annotated[bool, Meta(description="A measure is due today")]
    measures_overdue: Annotated[bool, Meta(description="A measure is overdue")]
    last_activity: Annotated[datetime, Meta(description="When their plan last changed")]


class Caseload(msgspec.Struct, kw_only=True):
    """One page of the caseload."""

    items: Annotated[list[CaseloadItem], Meta(description="The clients on this page")]
    next_cursor: Annotated[str | None, Meta(description="Pass as `cursor` for the next page (null: last page)")]


