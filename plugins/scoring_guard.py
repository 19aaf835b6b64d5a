"""Failure isolation: a plugin's scoring runs in a worker thread with a time limit.

A custom scorer that raises, returns something that is not a valid score set, or runs past
the limit refuses that one measurement with :class:`InstrumentFailed` (code
``instrument_failed``) naming the plugin; the service and every other instrument go on.
Python cannot kill a thread, so a hung scorer's thread is left to finish on its own (it is a
daemon thread and cannot block shutdown); while too many of one plugin's calls are still
stuck, new calls to it are refused at once rather than piling up more threads.

Logs say what failed, where and how long it took — never the answers, and never the
exception's message (it could quote them).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

import structlog

from alliance.core.errors import ValidationError
from alliance.plugins.instruments import InstrumentDefinition, Scorer

log = structlog.get_logger("alliance.plugins")

DEFAULT_TIMEOUT = 2.0
#: Calls of one plugin still running past their limit before new calls are refused outright.
MAX_STUCK_CALLS = 4

Reason = Literal["raised", "malformed", "timeout", "unavailable"]


class InstrumentFailed(ValidationError):
    """A plugin failed while scoring; the measurement was refused and nothing was written.

    A ValidationError so that callers' "refused, nothing written" handling applies; the status
    is 503 because the fault is the plugin's, not the client's input.
    """

    code = "instrument_failed"
    status = 503

    def __init__(self, *, plugin: str, instrument_id: str, instrument_version: str,
                 reason: Reason) -> None:
        what = {
            "raised": "raised an error",
            "malformed": "returned scores that are not valid",
            "timeout": "took too long",
            "unavailable": "is not answering",
        }[reason]
        super().__init__(
            f"Measure '{instrument_id}' version {instrument_version} from plugin '{plugin}' "
            f"{what} while scoring; the measurement was not recorded.",
            field="instrument_id", plugin=plugin, instrument_id=instrument_id,
            instrument_version=instrument_version, reason=reason)
        self.plugin = plugin
        self.reason = reason


class _StuckCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stuck: dict[str, int] = {}

    def count(self, plugin: str) -> int:
        with self._lock:
            return self._stuck.get(plugin, 0)

    def add(self, plugin: str, delta: int) -> None:
        with self._lock:
            self._stuck[plugin] = self._stuck.get(plugin, 0) + delta


_stuck = _StuckCounter()


def check_scores(definition: InstrumentDefinition, result: object) -> dict[str, float] | None:
    """The scores as ``dict[str, float]`` if ``result`` is a valid score set, else ``None``.

    Valid: a mapping of str to finite real numbers (not bools) with a ``"total"`` inside the
    declared score range.
    """
    if not isinstance(result, Mapping) or "total" not in result:
        return None
    scores: dict[str, float] = {}
    for key, value in result.items():
        if not isinstance(key, str) or isinstance(value, bool):
            return None
        if not isinstance(value, int | float) or not math.isfinite(value):
            return None
        scores[key] = float(value)
    low, high = definition.score_range.min, definition.score_range.max
    if not low <= scores["total"] <= high:
        return None
    return scores


def guarded_scorer(plugin: str, scorer: Scorer, *, timeout: float = DEFAULT_TIMEOUT) -> Scorer:
    """Wrap ``scorer`` (a plugin's) so it runs isolated; failures raise InstrumentFailed."""

    def run(definition: InstrumentDefinition, answers: dict[str, Any]) -> dict[str, float]:
        def fail(reason: Reason, **extra: Any) -> InstrumentFailed:
            log.error("instrument_failed", plugin=plugin, instrument_id=definition.id,
                      instrument_version=definition.version, reason=reason, **extra)
            return InstrumentFailed(plugin=plugin, instrument_id=definition.id,
                                    instrument_version=definition.version, reason=reason)

        if _stuck.count(plugin) >= MAX_STUCK_CALLS:
            raise fail("unavailable", stuck_calls=_stuck.count(plugin))
        outcome: dict[str, Any] = {}
        state = threading.Lock()  # orders "finished" against "given up on"

        def target() -> None:
            try:
                outcome["result"] = scorer(definition, answers)
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                with state:
                    outcome["done"] = True
                    if outcome.get("timed_out"):
                        _stuck.add(plugin, -1)

        started = time.perf_counter()
        worker = threading.Thread(target=target, name=f"alliance-score-{plugin}", daemon=True)
        worker.start()
        worker.join(timeout)
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        with state:
            timed_out = not outcome.get("done")
            if timed_out:
                outcome["timed_out"] = True
                _stuck.add(plugin, 1)
        if timed_out:
            raise fail("timeout", timeout_s=timeout, duration_ms=duration_ms)
        if "error" in outcome:
            raise fail("raised", error_type=type(outcome["error"]).__name__,
                       duration_ms=duration_ms) from None
        scores = check_scores(definition, outcome.get("result"))
        if scores is None:
            raise fail("malformed", returned_type=type(outcome.get("result")).__name__,
                       duration_ms=duration_ms)
        return scores

    return run
