"""Metrics in Prometheus exposition format (``prometheus-client``), at ``GET /metrics``.

Enabled by ``ALLIANCE_METRICS_TOKEN`` (32 characters or more): the scraper sends it as a bearer
token (``authorization: {credentials: …}`` in a Prometheus scrape config); unset, ``/metrics``
answers 404. A token rather than a second port: one listener to secure, and a worker never has
to bind a port its siblings also want.

Labels are fixed words only: route templates (``/clients/{client_id}/plan``, never a path
with an id), methods, status codes, outcome and leader names. No tenant, no id, no text.

Two kinds of figures:

* **counted in the process** (requests, appends, leader changes): several uvicorn workers
  each count their own, so ``alliance serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at an empty
  folder of its own before the workers start (prometheus-client's multiprocess mode) and a
  scrape of any worker sums them all; a process started without it (tests, a lone app)
  counts in memory;
* **read from the database at scrape time** (projection and dispatcher lag, open risk flags,
  failed deliveries): the same answer from every worker and every node.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from alliance.core.errors import ConcurrencyConflict

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Latency buckets from 1 ms to 10 s: an append is a few ms, a slow export several seconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Histogram("alliance_http_request_duration_seconds", "HTTP requests by route template and status",
                     ["method", "route", "status"], buckets=_BUCKETS)
APPENDS = Histogram("alliance_append_duration_seconds", "Appends to the event store (one call, any number of events)",
                    ["outcome"], buckets=_BUCKETS)
APPENDED = Counter("alliance_events_appended_total", "Events appended by this service")
LEADER_CHANGES = Counter("alliance_leader_changes_total", "Times a process of this service became a leader",
                         ["leader"])
REPLICA_FALLBACKS = Counter("alliance_replica_fallbacks_total",
                            "Reads that could have gone to the hot standby and went to the primary, by reason",
                            ["reason"])


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).observe(seconds)


def leadership_taken(leader: str) -> None:
    LEADER_CHANGES.labels(leader).inc()


def instrument_store(store: Any) -> None:
    """Time every append of ``store`` (its ``append`` and ``append_many``, wrapped once on the instance)
    and count the events written (a retry that wrote nothing new counts none)."""
    if getattr(store, "_metrics_wrapped", False):
        return
    for name in ("append", "append_many"):
        setattr(store, name, _timed(getattr(store, name)))
    store._metrics_wrapped = True


def _timed(append: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await append(*args, **kwargs)
            outcome = "ok"
            results = result if isinstance(result, list) else [result]
            APPENDED.inc(sum(len(r.positions) for r in results if not r.duplicate))
            return result
        except ConcurrencyConflict:
            outcome = "conflict"
            raise
        finally:
            APPENDS.labels(outcome).observe(time.perf_counter() - started)

    return timed


def instrument_replica(router: Any) -> None:
    """Count the reads a ``ReplicaRouter`` sent to the primary instead (reason: lag, erasure, unreachable,
    promoted); every reason is shown from the start, at 0."""
    if router is None:
        return
    from alliance.core.events.replica import REASONS

    for reason in REASONS:
        REPLICA_FALLBACKS.labels(reason)
    router.on_fallback = lambda reason: REPLICA_FALLBACKS.labels(reason).inc()


def authorized(expected: str | None, header: str | None) -> bool:
    """The scraper's bearer token, compared in constant time."""
    if not expected or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].encode(), expected.encode())


# -- read from the database at scrape time ------------------------------------------------------

_BEHIND = ("SELECT count(*), min(recorded_at) FROM (SELECT recorded_at FROM events "
           "WHERE (tx_id, position) > ($1::text::xid8, $2) AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) "
           "ORDER BY tx_id, position LIMIT 1000000) behind")


async def database_figures(pool: Any, replica: Any = None) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Figures every node reads the same: lags, open risk flags, failed deliveries (and, with a
    ``ReplicaRouter``, the standby's lag: +Inf while it is unreachable or promoted)."""
    from alliance.core.projections.rebuild import lag

    figures: dict[str, list[tuple[dict[str, str], float]]] = {}
    if replica is not None:
        sample = await replica.sample()
        figures["alliance_replica_lag_seconds"] = [({}, sample.lag if sample.reason is None else float("inf"))]
    lags = await lag(pool)
    figures["alliance_projection_lag_events"] = [({"projection": n}, float(e)) for n, (e, _) in lags.items()]
    figures["alliance_projection_lag_seconds"] = [({"projection": n}, s) for n, (_, s) in lags.items()]
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT name, checkpoint FROM notification_checkpoints ORDER BY name")
        now = await conn.fetchval("SELECT now()")
        events, seconds = [], []
        for row in rows:
            tx, _, position = str(row["checkpoint"]).partition(".")
            behind, oldest = await conn.fetchrow(_BEHIND, tx or "0", int(position or 0))
            events.append(({"dispatcher": row["name"]}, float(behind)))
            seconds.append(({"dispatcher": row["name"]}, 0.0 if oldest is None else (now - oldest).total_seconds()))
        figures["alliance_dispatcher_lag_events"] = events
        figures["alliance_dispatcher_lag_seconds"] = seconds
        figures["alliance_risk_flags_unacknowledged"] = [
            ({}, float(await conn.fetchval("SELECT count(*) FROM risk_flag_watch WHERE state = 'open'")))]
        failed = {r["state"]: float(r["n"]) for r in await conn.fetch(
            "SELECT state, count(*) AS n FROM notification_queue WHERE state = 'given_up' "
            "OR (state = 'pending' AND attempts > 0) GROUP BY state")}
        figures["alliance_notifications_given_up"] = [({}, failed.get("given_up", 0.0))]
        figures["alliance_notifications_retrying"] = [({}, failed.get("pending", 0.0))]
    return figures


_HELP = {
    "alliance_projection_lag_events": "Events the projection has not folded yet",
    "alliance_projection_lag_seconds": "Age of the oldest event the projection has not folded",
    "alliance_dispatcher_lag_events": "Events the notification dispatcher has not followed yet",
    "alliance_dispatcher_lag_seconds": "Age of the oldest event the dispatcher has not followed",
    "alliance_risk_flags_unacknowledged": "Risk flags raised and neither acknowledged nor escalated",
    "alliance_notifications_given_up": "Notifications whose every delivery attempt failed",
    "alliance_notifications_retrying": "Notifications with a failed attempt, waiting for the next",
    "alliance_replica_lag_seconds": "How far the hot standby's replay is behind the primary (+Inf: not usable)",
}


class _Figures(Collector):
    def __init__(self, figures: dict[str, list[tuple[dict[str, str], float]]]) -> None:
        self.figures = figures

    def collect(self) -> Any:
        for name, samples in self.figures.items():
            labels = sorted(samples[0][0]) if samples else []
            family = GaugeMetricFamily(name, _HELP[name], labels=labels)
            for values, value in samples:
                family.add_metric([values[k] for k in labels], value)
            yield family


async def exposition(pool: Any, replica: Any = None) -> tuple[bytes, str]:
    """The text a scrape gets: every process's counters (multiprocess mode) and the database's figures."""
    registry = CollectorRegistry()
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
        registry = CollectorRegistry()
    registry.register(_Figures(await database_figures(pool, replica)))
    return body + generate_latest(registry), CONTENT_TYPE_LATEST

