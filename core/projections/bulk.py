"""A rebuild's bulk path: fold the store into memory once, then write each document once.

The live runner folds a batch, diffs every touched document against what is stored and
upserts the difference: right for small batches on a live table, wasteful for a rebuild,
which would rewrite a client's head and diff its collections once per batch the client
appears in. A rebuild's table is new (state ``building``: nobody reads it), so here every
document stays in memory until the store has been folded up to a fixed checkpoint, and
is then written once, with COPY, in short transactions.

The version checkpoint still advances with the rows, as the runner's invariant demands:
every event at or below it is folded into the stored rows. Documents are written in the
order their clients first appear in the log, and each transaction advances the checkpoint
to the page start before the first event of the next unwritten client. Rows may be ahead
of the checkpoint (each row carries its own and the runner skips what it holds), so what
follows — catching up through :func:`~core.projections.runner.apply_batch` — continues
from the checkpoint exactly as after any batch.

Documents are folded with the projection's own pure ``apply`` and split into rows by the
same ``Layout.diff`` (against nothing stored) as a runner writing a client for the first
time: the rows are the runner's rows.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from core.events.envelope import RecordedEvent
from core.events.store import EventStore, parse_checkpoint
from core.projections.base import ERASURE_EVENT
from core.projections.runner import ADVANCE, Target, VersionMoved, refold_client

#: Item rows (or, for head-only projections, documents) per write transaction.
WRITE_ROWS = 10_000


@dataclass
class Build:
    """One target's documents while the store is folded into memory."""

    target: Target
    docs: dict[UUID, Any] = field(default_factory=dict)
    #: Per client: the checkpoint of the last event folded, and the client's tenant (of that event).
    at: dict[UUID, tuple[str, UUID]] = field(default_factory=dict)
    #: Per client: a checkpoint before its first event (the version may stand there while it is unwritten).
    before: dict[UUID, str] = field(default_factory=dict)
    folded: int = 0


async def fold_page(store: EventStore, build: Build, events: Sequence[RecordedEvent], after: str) -> None:
    """Fold one page (the events following checkpoint ``after``) into ``build``'s documents."""
    target = build.target
    projection = target.projection
    ctx = projection.context(target.fold_version)
    apply, initial, wants = projection.apply, projection.initial, projection.wants
    docs, at, before = build.docs, build.at, build.before
    for event in events:
        if not wants(event):
            continue
        client = event.subject_id
        doc = docs.get(client)
        if doc is None:
            before[client] = after
        if event.type == ERASURE_EVENT:  # as the runner does: personal fields now read erased
            doc = await refold_client(store, projection, client, until=event.checkpoint,
                                      version=target.fold_version) or initial(client, event.tenant_id)
        else:
            doc = apply(doc if doc is not None else initial(client, event.tenant_id), event, ctx)
        docs[client] = doc
        at[client] = (event.checkpoint, event.tenant_id)
        build.folded += 1


async def write_build(conn: asyncpg.Connection, build: Build, *, until: str, recorded_at: datetime | None,
                      rows: int = WRITE_ROWS) -> None:
    """Write every document of ``build`` once and advance the version to ``until`` (all folded up to it)."""
    target = build.target
    clients = list(build.docs)  # in order of first appearance: ``before`` does not decrease
    lo = 0
    while lo < len(clients) or target.checkpoint != until:
        heads, items, hi = _encode(build, clients, lo, rows)
        last = hi == len(clients)
        checkpoint = until if last else build.before[clients[hi]]
        await _write(conn, target, heads, items, checkpoint,
                     build.folded if last else 0, recorded_at if last else None)
        lo = hi


def _encode(build: Build, clients: list[UUID], lo: int, rows: int
            ) -> tuple[list[tuple[Any, ...]], list[tuple[UUID, int, int, bytes]], int]:
    """Head and item rows of ``clients[lo:hi]``, ``hi`` where about ``rows`` rows are reached."""
    projection = build.target.projection
    layout, encode = projection.layout, projection.encode
    heads: list[tuple[Any, ...]] = []
    items: list[tuple[UUID, int, int, bytes]] = []
    hi = lo
    while hi < len(clients) and len(heads) + len(items) < rows:
        client = clients[hi]
        doc = build.docs[client]
        checkpoint, tenant = build.at[client]
        tx, pos = parse_checkpoint(checkpoint)
        heads.append((client, tenant, encode(layout.head(doc)), tx, pos))
        if layout:
            changes, _ = layout.diff(None, None, doc)
            items += [(client, p, o, d) for p, o, d in changes.insert]
        hi += 1
    return heads, items, hi


async def _write(conn: asyncpg.Connection, target: Target, heads: list[tuple[Any, ...]],
                 items: list[tuple[UUID, int, int, bytes]], checkpoint: str, folded: int,
                 recorded_at: datetime | None) -> None:
    projection = target.projection
    async with conn.transaction():
        state = await conn.fetchval(ADVANCE, projection.name, target.version, target.checkpoint, checkpoint,
                                    folded, recorded_at)
        if state is None:
            raise VersionMoved(f"{projection.name} v{target.version} moved")
        if heads:
            await conn.copy_records_to_table(target.table, schema_name="projections", records=heads,
                                             columns=("client_id", "tenant_id", "doc", "cp_tx", "cp_pos"))
        if items:
            await conn.copy_records_to_table(f"{target.table}_items", schema_name="projections", records=items,
                                             columns=("client_id", "part", "ord", "data"))
    target.checkpoint = checkpoint


@contextmanager
def long_lived_heap() -> Iterator[None]:
    """Call ``gc.freeze()`` freely inside: everything it froze is handed back to the collector on exit.

    A rebuild holds every document in memory and allocates millions of short-lived objects
    around them; each full collection would walk all the documents again (half the rebuild's
    time, measured). Freezing after each page spares that walk. The documents and events are
    acyclic, so reference counting still frees whatever they drop meanwhile.
    """
    try:
        yield
    finally:
        gc.unfreeze()
