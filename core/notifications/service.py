"""The dispatcher a process runs: its channels from the plugins, its settings, its clock."""

from __future__ import annotations

from typing import Any

import pluggy

from alliance.core.clock import SYSTEM_CLOCK, Clock
from alliance.core.notifications.dispatcher import NotificationDispatcher
from alliance.core.notifications.messages import COMPOSERS
from alliance.core.reminders.delivery import ReminderDelivery
from alliance.core.settings import Settings
from alliance.plugins.channels.registry import ChannelRegistry


def notification_channels(plugins: pluggy.PluginManager, settings: Settings) -> ChannelRegistry:
    """Every installed channel, validated (a duplicate or malformed one stops start-up)."""
    return ChannelRegistry.from_plugin_manager(plugins, settings=settings)


def notification_dispatcher(runtime: Any, channels: ChannelRegistry, settings: Settings, *,
                            clock: Clock = SYSTEM_CLOCK, link_key: bytes | None = None) -> NotificationDispatcher:
    """The dispatcher on ``runtime``'s store and database (not started). With ``link_key`` it also
    delivers reminders to clients (the clinic's text, the one-time link, the client's address)."""
    composers: dict[str, Any] = dict(COMPOSERS)
    addresses: dict[str, Any] = {}
    if link_key is not None:
        reminders = ReminderDelivery(runtime.store, link_key)
        composers.update(reminders.composers())
        addresses["client"] = reminders.address
    return NotificationDispatcher(runtime.store, list(channels), dsn=runtime.target.app_dsn, clock=clock,
                                  public_url=settings.public_url, composers=composers, addresses=addresses)
