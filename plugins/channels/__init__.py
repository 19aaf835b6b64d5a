"""Notification channels: the plugin-facing types, the registry, and the built-in SMTP channel."""

from plugins.channels.base import DeliveryFailed, NotificationChannel, OutgoingMessage
from plugins.channels.registry import ChannelRegistry

__all__ = ["ChannelRegistry", "DeliveryFailed", "NotificationChannel", "OutgoingMessage"]
