"""The installed notification channels, collected from every plugin and validated at start-up.

Like the instrument registry (``plugins/manager.py``): each plugin's answer is checked on
its own, every problem names the plugin, and a duplicate channel name stops start-up.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import Any

import pluggy
import structlog

from alliance.core.errors import ConfigurationError
from alliance.plugins.channels.base import CHANNEL_NAME, NotificationChannel

log = structlog.get_logger("alliance.plugins")


def channel_problems(channel: Any) -> list[str]:
    """What is wrong with one returned channel object (empty when it is fine)."""
    name = getattr(channel, "name", None)
    if not isinstance(name, str) or not CHANNEL_NAME.fullmatch(name):
        return [f"a channel's name must match {CHANNEL_NAME.pattern} (got {name!r})"]
    problems = []
    kind = getattr(channel, "address_kind", "missing")
    if kind is not None and not isinstance(kind, str):
        problems.append(f"channel '{name}': address_kind must be a string or None")
    if not inspect.iscoroutinefunction(getattr(channel, "send", None)):
        problems.append(f"channel '{name}': send(message) must be an async method")
    return problems


class ChannelRegistry:
    """Channels by name, in registration order."""

    def __init__(self, channels: Iterable[NotificationChannel] = ()) -> None:
        self._by_name: dict[str, NotificationChannel] = {}
        for channel in channels:
            self._by_name[channel.name] = channel

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager, **context: Any) -> ChannelRegistry:
        """Ask every plugin for its channels (``context`` holds the spec's arguments, e.g.
        ``settings``); raises ``ConfigurationError`` listing every problem by plugin."""
        problems: list[str] = []
        at_fault: list[str] = []
        owner: dict[str, str] = {}
        channels: list[NotificationChannel] = []

        def problem(plugin: str, text: str) -> None:
            problems.append(f"Plugin '{plugin}': {text}")
            if plugin not in at_fault:
                at_fault.append(plugin)

        for impl in pm.hook.register_notification_channels.get_hookimpls():  # registration order
            plugin = impl.plugin_name
            try:
                result = impl.function(**{k: v for k, v in context.items() if k in impl.argnames})
            except Exception as exc:
                problem(plugin, f"register_notification_channels() raised {type(exc).__name__}: {exc}")
                continue
            if not isinstance(result, list | tuple):
                problem(plugin, "register_notification_channels() must return a list of channels")
                continue
            for channel in result:
                found = channel_problems(channel)
                for text in found:
                    problem(plugin, text)
                if found:
                    continue
                if channel.name in owner:
                    problem(plugin, f"channel '{channel.name}' is already registered by plugin "
                                    f"'{owner[channel.name]}'")
                    continue
                owner[channel.name] = plugin
                channels.append(channel)
        if problems:
            log.error("channels_invalid", plugins=at_fault, problems=len(problems))
            raise ConfigurationError(" ".join(problems), code="plugin_invalid", plugins=at_fault,
                                     problems=problems)
        log.info("channels_registered", channels=[c.name for c in channels])
        return cls(channels)

    def __iter__(self) -> Iterator[NotificationChannel]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> NotificationChannel | None:
        return self._by_name.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)
