"""The background leaders: the work that follows the store rather than answering requests.

The projection runner (which also writes the change feed's rows in each projection's own
transaction), the notification dispatcher, the reminder process, the alert follower and the
anchoring task. Each elects one leader among every process that runs it (session advisory
locks on the connection that writes), so several processes may start them: one leads, the
others stand by and take over when the leader's session ends.

``start_background`` is the one place that starts them, used by the HTTP lifespan when
``ALLIANCE_BACKGROUND=inline`` and by ``alliance projector`` (api/projector.py). A leader
added to the service is added here, so both places run it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from alliance.api.metrics import leadership_taken
from alliance.core.alerts.follower import AlertFollower, plugin_bands, registry_definitions
from alliance.core.compliance.anchors import write_anchor
from alliance.core.logging import get_logger
from alliance.core.notifications.service import notification_dispatcher
from alliance.core.projections.registry import PROJECTIONS
from alliance.core.projections.runner import ProjectionRunner
from alliance.core.questionnaire_links import link_key
from alliance.core.reminders.service import reminder_runner
from alliance.core.settings import Settings

log = get_logger("alliance.background")

ANCHOR_LOCK = 0x616E63686F72  # "anchor": one process writes anchors at a time


async def anchor_periodically(runtime: Any, signer: Any, settings: Settings) -> None:
    """Anchor the chain heads outside the database every ``anchor_interval`` seconds (one writer)."""
    import asyncpg

    while True:
        await asyncio.sleep(settings.anchor_interval)
        try:
            conn = await asyncpg.connect(runtime.target.app_dsn)
            try:
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", ANCHOR_LOCK):
                    path = await write_anchor(runtime.pool, signer, settings.anchor_path, verify_first=True)
                    log.info("anchor_written", file=path.name)
            finally:
                await conn.close()
        except Exception as exc:  # an anchor is retried next interval; the error is visible in logs
            log.warning("anchor_failed", error=type(exc).__name__)


@dataclass
class Background:
    """What ``start_background`` started: the leaders (each has ``name`` and ``leading``) and tasks."""

    runners: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def leading(self) -> dict[str, bool]:
        """Which leaders this process holds now (the others stand by)."""
        return {_role(r): bool(r.leading) for r in self.runners}

    async def watch(self, interval: float = 0.5) -> None:
        """Log each change of leadership here (taken over, lost), so an operator sees where the
        work runs; sampled, since each leader keeps a plain flag rather than calling out."""
        seen = {role: False for role in self.leading}
        while True:
            await asyncio.sleep(interval)
            for role, now in self.leading.items():
                if now != seen.get(role):
                    seen[role] = now
                    if now:
                        leadership_taken(role)
                    log.info("leadership", leader=role, state="leading" if now else "standing by")


def _role(runner: Any) -> str:
    """A stable name per kind of leader (the projection runner's name lists every projection)."""
    return "projections" if isinstance(runner, ProjectionRunner) else str(runner.name)


def start_background(runtime: Any, *, settings: Settings, plugins: Any, registry: Any, channels: Any,
                     mac_key: bytes, signer: Any) -> Background:
    """Start every background leader on ``runtime`` (each stands by until it leads)."""
    started = Background()
    runner = ProjectionRunner(PROJECTIONS, runtime.store, dsn=runtime.target.app_dsn)
    started.runners.append(runner)
    started.tasks.append(asyncio.create_task(runner.run(), name=f"projections:{runner.name}"))
    # Risk-flag notifications and escalation.
    dispatcher = notification_dispatcher(runtime, channels, settings, link_key=link_key(mac_key))
    started.runners.append(dispatcher)
    started.tasks.append(dispatcher.start())
    # Reminders of due questionnaires, delivered by the dispatcher above.
    reminders = reminder_runner(runtime, channels, settings, key=link_key(mac_key))
    started.runners.append(reminders)
    started.tasks.append(reminders.start())
    # Not-on-track alerts (core/alerts/follower.py).
    alerts = AlertFollower(runtime.store, registry_definitions(registry), band=plugin_bands(plugins),
                           dsn=runtime.target.app_dsn)
    started.runners.append(alerts)
    started.tasks.append(alerts.start())
    if settings.anchor_interval > 0:
        started.tasks.append(asyncio.create_task(anchor_periodically(runtime, signer, settings), name="anchors"))
    started.tasks.append(asyncio.create_task(started.watch(), name="leadership-watch"))
    return started
