"""A Server-Sent Events follower that resumes like a browser: on a lost connection it
reconnects (a new connection, so any worker) with ``Last-Event-ID`` of the last event it got."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class Delivered:
    id: str
    kind: str
    data: str
    connection: int  # 0 for the first connection, 1 after the first reconnect, ...


@dataclass
class Follower:
    url: str
    headers: dict[str, str]
    first: httpx.AsyncClient | None = None  # the connection to start on (e.g. one known to be on a worker)
    events: list[Delivered] = field(default_factory=list)
    start_cursor: str | None = None
    last_id: str | None = None
    connections: int = 0
    errors: list[str] = field(default_factory=list)

    async def run(self, done: Callable[[], bool], *, deadline: float, max_connections: int = 50) -> None:
        """Follow until ``done()`` or the monotonic ``deadline`` (bounded reconnects)."""
        while not done() and time.monotonic() < deadline and self.connections < max_connections:
            own = self.first if self.connections == 0 and self.first is not None else httpx.AsyncClient()
            headers = dict(self.headers)
            if self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id
            index = self.connections
            self.connections += 1
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self._read(own, headers, index, done)
            except (httpx.HTTPError, TimeoutError) as exc:
                self.errors.append(type(exc).__name__)
            finally:
                if own is not self.first:
                    await own.aclose()
            if not done():
                await asyncio.sleep(0.2)

    async def _read(self, own: httpx.AsyncClient, headers: dict[str, str], index: int,
                    done: Callable[[], bool]) -> None:
        timeout = httpx.Timeout(10.0, read=5.0)  # heartbeats come every second
        async with own.stream("GET", self.url, headers=headers, timeout=timeout) as r:
            if r.status_code != 200:
                self.errors.append(f"status {r.status_code}")
                await r.aread()
                return
            event: dict[str, str] = {}
            async for line in r.aiter_lines():
                if line == "":
                    self._dispatch(event, index)
                    event = {}
                    if done():
                        return
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                event[name] = event.get(name, "") + value.removeprefix(" ")

    def _dispatch(self, event: dict[str, str], index: int) -> None:
        kind = event.get("event", "message")
        if kind == "ready":
            if self.start_cursor is None:
                import json

                with contextlib.suppress(ValueError):
                    self.start_cursor = json.loads(event.get("data", "{}")).get("cursor")
            return
        if "id" in event:
            self.events.append(Delivered(event["id"], kind, event.get("data", ""), index))
            self.last_id = event["id"]
