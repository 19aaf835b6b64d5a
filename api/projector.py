"""``alliance projector``: the background leaders as a process of their own.

Under HTTP saturation a projection batch run inside a worker queues behind requests (most of
the SSE tail at 1,000 subscribers); run here, with ``ALLIANCE_BACKGROUND=off`` on the HTTP
workers, it does not. Several projectors may run: each leader (api/background.py) is elected
by a session advisory lock, so one leads and the others stand by, taking over within a
second or two of the leader's session ending (``kill -9`` included).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from alliance.api.background import start_background
from alliance.api.metrics import instrument_store
from alliance.api.state import derive_mac_key
from alliance.core.compliance.signing import Signer
from alliance.core.events.crypto import load_kek
from alliance.core.logging import get_logger
from alliance.core.notifications.service import notification_channels
from alliance.core.plain_language import glossary_from_plugins, use_glossary
from alliance.core.runtime import open_runtime
from alliance.core.settings import Settings
from alliance.core.tasks import stop_tasks
from alliance.plugins.manager import InstrumentRegistry, get_plugin_manager

log = get_logger("alliance.projector")


async def run_projector(settings: Settings, *, on_started: Any = None) -> int:
    """Run until SIGTERM or SIGINT, then stop every leader (their locks end with their sessions)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_runtime(settings, pool_size=10) as runtime:
        instrument_store(runtime.store)  # the dispatcher and reminders append: their latencies
        plugins = get_plugin_manager(settings.plugins_dir)
        use_glossary(glossary_from_plugins(plugins))
        registry = InstrumentRegistry.from_plugin_manager(
            plugins, known_fingerprints=settings.home / "instrument-fingerprints.json")
        kek = load_kek(path=settings.kek_path, inline=settings.kek)
        background = start_background(runtime, settings=settings, plugins=plugins, registry=registry,
                                      channels=notification_channels(plugins, settings),
                                      mac_key=derive_mac_key(kek), signer=Signer.open(settings.signing_key_path))
        log.info("projector_started", leaders=sorted(background.leading))
        if on_started is not None:
            on_started(background)
        try:
            await stop.wait()
        finally:
            await stop_tasks(background.tasks)
            log.info("projector_stopped")
    return 0
