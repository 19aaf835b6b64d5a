"""Trial: eight writers on one client's stream, spread over both workers, each command with
its own Idempotency-Key.

Promise: concurrent writes are never lost - no valid command is refused because others
wrote first, and each is stored exactly once.
"""

from __future__ import annotations

import asyncio
import time

from tests.faults.db import measurement_counts
from tests.faults.world import Keyed, connections_on_workers, enrol_client, measurement, send, status_counts

WRITERS_PER_WORKER = 4
COMMANDS_PER_WRITER = 150
MAX_SECONDS = 90.0


async def test_eight_writers_on_one_stream_across_two_workers(service, clinic, http, cluster) -> None:
    client_id = await enrol_client(clinic, http)
    workers = await connections_on_workers(service, WRITERS_PER_WORKER)
    writers = [(pid, own) for pid, conns in workers.items() for own in conns]
    try:
        assert len(workers) == service.workers and len(writers) == WRITERS_PER_WORKER * service.workers, \
            {pid: len(c) for pid, c in workers.items()}
        items: list[Keyed] = []
        started = time.monotonic()

        async def write(index: int, own) -> None:
            for n in range(COMMANDS_PER_WRITER):
                if time.monotonic() - started > MAX_SECONDS:
                    return
                item = measurement(client_id, f"contention-{index}-{n}", n)
                items.append(item)
                item.first_status = await send(clinic, own, item)

        await asyncio.gather(*(write(i, own) for i, (_pid, own) in enumerate(writers)))
        seconds = time.monotonic() - started
        refused = [i for i in items if i.first_status != 201]
        # what a retry of a refused command gets: a stored refusal would be replayed for ever
        replays = [await send(clinic, writers[0][1], item) for item in refused[:20]]
    finally:
        for _pid, own in writers:
            await own.aclose()

    counts = await measurement_counts(cluster.dsn("alliance"), [client_id])
    not_once = [i.key for i in items if i.first_status == 201 and counts.get(i.measurement_id or "", 0) != 1]
    print(f"\n[contention] writers={len(writers)} on workers {sorted(workers)} commands={len(items)} in {seconds:.1f}s "
          f"({len(items) / seconds:.0f}/s) answers={status_counts([i.first_status for i in items])} "
          f"refused={len(refused)} retry_of_refused={status_counts(replays)} "
          f"stored events={sum(counts.values())} acknowledged_not_stored_once={len(not_once)}")
    assert len(items) == len(writers) * COMMANDS_PER_WRITER, "the trial ran out of time"
    assert not refused, f"{len(refused)} of {len(items)} valid commands refused: " \
                        f"{status_counts([i.first_status for i in refused])}"
    assert not not_once and sum(counts.values()) == len(items)
