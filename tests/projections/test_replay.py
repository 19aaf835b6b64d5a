"""Replay equals live: pure folds over generated histories (hypothesis)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alliance.core.consent import ConsentScope
from alliance.core.events.crypto import MemoryKeyRing
from alliance.core.events.memory import MemoryEventStore
from alliance.core.projections.base import ERASURE_EVENT, fold
from alliance.core.projections.history import render_history
from alliance.core.projections.plan import render_plan
from alliance.core.projections.progress import render_progress
from alliance.core.projections.registry import PROJECTIONS
from tests.projections.helpers import Client, domain_codec

OPS = st.lists(st.sampled_from(["measure", "late", "in_error", "feedback", "review", "change_ok", "change_open",
                                "relapse", "withdraw", "goal", "gas", "risk"]), max_size=25)


def build(ops: list[str], erase: bool) -> tuple[Client, list[Any]]:
    async def go() -> tuple[Client, list[Any]]:
        keys = MemoryKeyRing()
        store = MemoryEventStore(domain_codec(), keys)
        c = Client(canary="CANARY").enrol()
        gid = c.goal()
        c.attainment(gid)
        for i, op in enumerate(ops):
            match op:
                case "measure":
                    c.measure(20 - i % 7, goal=gid)
                case "late":
                    c.measure(5, goal=gid, observed=datetime(2025, 1, 1, tzinfo=UTC))
                case "in_error" if c.measurements:
                    c.in_error(c.measurements[i % len(c.measurements)])
                case "feedback":
                    c.feedback()
                case "review":
                    c.review(gid)
                case "change_ok":
                    c.propose_change(gid, accept=True)
                case "change_open":
                    c.propose_change(gid, accept=False)
                case "relapse":
                    c.relapse_plan(i + 1)
                case "withdraw":
                    c.withdraw(ConsentScope.MEASUREMENT)
                case "goal":
                    gid = c.goal(activate=i % 2 == 0)
                case "gas":
                    c.measure(i % 5 - 2, instrument="gas", goal=gid)
                case "risk":
                    c.measure(25, goal=gid, risk=True)
        await c.flush(store)
        if erase:
            await keys.destroy(c.client)
            c.erase()
            await c.flush(store)
        return c, await store.read_all(limit=100_000)
    return asyncio.run(go())


def stored_roundtrip(projection: Any, events: list[Any], bounds: list[int], client: Any) -> Any:
    """Fold in batches as the runner does, keeping only a head and item rows between batches."""
    layout = projection.layout
    head: bytes | None = None
    rows: dict[tuple[int, int], bytes] = {}
    meta = None
    for lo, hi in itertools.pairwise(bounds):
        old = None
        if head is not None:
            old, meta = layout.assemble(projection.decode(head), [(p, o, rows[p, o]) for p, o in sorted(rows)])
        docs = fold(projection, events[lo:hi], documents={client: old} if old is not None else {})
        new = docs.get(client)
        if new is None or new is old:
            continue
        erased = any(e.type == ERASURE_EVENT for e in events[lo:hi])
        changes, meta = layout.diff(old, meta, new, rewrite=erased)
        for part in changes.clear:
            rows = {k: v for k, v in rows.items() if k[0] != part}
        for key in changes.delete:
            del rows[key]
        for part, ord_, data in changes.insert:
            assert (part, ord_) not in rows
            rows[part, ord_] = data
        for part, ord_, data in changes.update:
            assert (part, ord_) in rows
            rows[part, ord_] = data
        head = projection.encode(layout.head(new))
    assert head is not None
    return layout.assemble(projection.decode(head), [(p, o, rows[p, o]) for p, o in sorted(rows)])[0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=6), erase=st.booleans())
def test_batched_persisted_fold_equals_one_replay(ops: list[str], cuts: list[int], erase: bool) -> None:
    c, events = build(ops, erase)
    now = datetime(2025, 4, 1, tzinfo=UTC)
    bounds = sorted({0, len(events), *(x % (len(events) + 1) for x in cuts)})
    for projection in PROJECTIONS:
        replayed = fold(projection, events)[c.client]
        # The runner's way: batches, each document stored as JSON and read back in between.
        docs: dict[Any, Any] = {}
        for lo, hi in itertools.pairwise(bounds):
            docs = {k: projection.decode(projection.encode(v)) for k, v in docs.items()}
            fold(projection, events[lo:hi], documents=docs)
        live = projection.decode(projection.encode(docs[c.client]))
        assert live == projection.decode(projection.encode(replayed))
        # The runner's storage: head row plus item rows, written as diffs after each batch.
        assert stored_roundtrip(projection, events, bounds, c.client) == projection.decode(projection.encode(replayed))
        render = {"plan": lambda d: render_plan(d, now=now), "progress": render_progress,
                  "history": render_history}[projection.name]
        assert render(live) == render(replayed)
        if erase:
            assert b"CANARY" not in projection.encode(live)
