"""The clinic's settings as in force now (``GET /clinic/settings``), each with its last change."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import Meta


class SettingChange(msgspec.Struct, kw_only=True):
    """Who last set a setting, and when (the event's recorded time)."""

    at: Annotated[datetime, Meta(description="When it was recorded")]
    by: Annotated[UUID, Meta(description="Who set it")]
    by_role: Annotated[str, Meta(description="Their role then (admin, or system at bootstrap)")]


class CrisisSetting(msgspec.Struct, kw_only=True):
    """The clinic's crisis information."""

    text: Annotated[str | None, Meta(description="The clinic's own text (null: never set)")]
    contacts: Annotated[list[str], Meta(description="Its contacts, in order")]
    shown_text: Annotated[str, Meta(description="What clients are shown now: the clinic's text, else a clinic "
                                                "plugin's, else the built-in default")]
    changed: Annotated[SettingChange | None, Meta(description="The last change (null: never set)")]


class EscalationSetting(msgspec.Struct, kw_only=True):
    """When an unacknowledged risk flag escalates, and to whom."""

    escalation_interval_hours: Annotated[float, Meta(description="Hours (default 24, at most 72)")]
    duty_clinician_id: Annotated[UUID | None, Meta(description="The duty clinician (null: none)")]
    changed: Annotated[SettingChange | None, Meta(description="The last change (null: the defaults)")]


class AlertSetting(msgspec.Struct, kw_only=True):
    """When a series with no reliable improvement raises a not-on-track alert."""

    after_administrations: Annotated[int, Meta(description="Administrations, baseline included (default 8)")]
    after_weeks: Annotated[float | None, Meta(description="Or weeks from the baseline (null: no limit in weeks)")]
    changed: Annotated[SettingChange | None, Meta(description="The last change (null: the defaults)")]


class ReminderTextSetting(msgspec.Struct, kw_only=True):
    """The clinic's reminder email (the one-time link goes below the text)."""

    subject: Annotated[str, Meta(description="The subject line")]
    body: Annotated[str, Meta(description="The text")]
    changed: Annotated[SettingChange | None, Meta(description="The last change (null: the default text)")]


class StaffContactSetting(msgspec.Struct, kw_only=True):
    """Whether an active staff member has a work email for notifications (never the address:
    it is sealed personal data, read only by the notification dispatcher)."""

    staff_id: Annotated[UUID, Meta(description="The staff member")]
    has_email: Annotated[bool, Meta(description="Whether a work email is set (and not erased)")]
    changed: Annotated[SettingChange | None, Meta(description="The last change (null: never set)")]


class ClinicSettings(msgspec.Struct, kw_only=True):
    """The settings in force in this clinic (the defaults where none was set), with the last change of each."""

    crisis_information: Annotated[CrisisSetting, Meta(description="Crisis information")]
    escalation_policy: Annotated[EscalationSetting, Meta(description="Risk-flag escalation")]
    alert_policy: Annotated[AlertSetting, Meta(description="Not-on-track alerts")]
    reminder_text: Annotated[ReminderTextSetting, Meta(description="The reminder email")]
    staff_contacts: Annotated[list[StaffContactSetting], Meta(
        description="Every active staff member, by id: whether a work email is set")]
