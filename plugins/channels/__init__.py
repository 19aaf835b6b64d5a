"""Notification channels: the plugin-facing types, the registry, and the built-in SMTP channel."""

from alliance.plugins.channels.base import DeliveryFailed, NotificationChannel, OutgoingMessage
from alliance.plugins.channels.registry import ChannelRegistry

__all__ = ["ChannelRegistry", "DeliveryFailed", "NotificationChannel", "OutgoingMessage"]
