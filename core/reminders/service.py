"""The reminder process a service runs: its channels, key, settings and clock."""

from __future__ import annotations

from typing import Any

from alliance.core.clock import SYSTEM_CLOCK, Clock
from alliance.core.reminders.decide import ChannelInfo
from alliance.core.reminders.runner import ReminderRunner
from alliance.core.settings import Settings


def reminder_runner(runtime: Any, channels: Any, settings: Settings, *, key: bytes,
                    clock: Clock = SYSTEM_CLOCK) -> ReminderRunner:
    """The runner on ``runtime``'s store and database (not started), for the installed channels."""
    return ReminderRunner(runtime.store, dsn=runtime.target.app_dsn, key=key, clock=clock,
                          channels=[ChannelInfo(c.name, c.address_kind) for c in channels],
                          link_hours=settings.questionnaire_link_hours)
