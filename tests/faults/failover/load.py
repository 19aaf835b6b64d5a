"""The measurement load both failover trials run: writers posting keyed measurements one after
another until told to stop, every answer recorded with its time, so a trial can say when
writes stopped, what they were answered meanwhile and when the first one succeeded again."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field

import httpx

from tests.faults.world import Clinic, Keyed, measurement

#: Seconds between one writer's requests: 503s come fast, so an outage stays a bounded load.
PAUSE = 0.05
#: Seconds one request may take: a commit waiting for a lost synchronous standby takes the
#: monitor's ~3 s to be released, a request caught by the primary's death its connect timeout.
REQUEST_SECONDS = 15.0


@dataclass
class Answer:
    sent: float
    at: float
    status: int | str  # an HTTP status, or the transport error's class name
    retry_after: bool = False
    problem: bool = False


@dataclass
class Load:
    clinic: Clinic
    clients: list[uuid.UUID]
    prefix: str
    sent: list[Keyed] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._writer(i)) for i in range(len(self.clients))]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), REQUEST_SECONDS + 15)

    def acked(self) -> list[Keyed]:
        return [i for i in self.sent if _ok(i.first_status)]

    def not_acked(self) -> list[Keyed]:
        return [i for i in self.sent if not _ok(i.first_status)]

    def first_ok_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first 2xx of a request sent after it (one sent before
        may have committed before it and been answered after)."""
        times = [a.at for a in self.answers if a.sent > moment and _ok(a.status)]
        return min(times) - moment if times else None

    def longest_stall(self, since: float) -> float:
        """The longest time without a 2xx answer after ``since`` (writes blocked or refused)."""
        times = sorted([since] + [a.at for a in self.answers if a.at > since and _ok(a.status)])
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    async def _writer(self, index: int) -> None:
        client_id = self.clients[index]
        url = f"{self.clinic.service.url}/clients/{client_id}/measurements"
        async with httpx.AsyncClient(timeout=REQUEST_SECONDS) as own:  # one connection per writer, like a device
            n = 0
            while not self._stop.is_set():
                item = measurement(client_id, f"{self.prefix}-{index}-{n}", n)
                n += 1
                self.sent.append(item)
                item.attempts += 1
                sent = time.monotonic()
                try:
                    r = await own.post(url, json=item.body, headers=self.clinic.client_headers(client_id, item.key))
                except httpx.HTTPError as exc:
                    item.first_status = type(exc).__name__
                    self.answers.append(Answer(sent, time.monotonic(), item.first_status))
                else:
                    item.first_status = r.status_code
                    if _ok(r.status_code):
                        item.measurement_id = r.json()["created"]["measurement_id"]
                    self.answers.append(Answer(
                        sent, time.monotonic(), r.status_code, "retry-after" in r.headers,
                        r.headers.get("content-type", "").startswith("application/problem+json")))
                await asyncio.sleep(PAUSE)


def _ok(status: int | str | None) -> bool:
    return isinstance(status, int) and 200 <= status < 300
