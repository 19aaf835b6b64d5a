"""A rebuild's bulk path: fold the store in memory, write each document once, when it is complete.

The live runner folds a batch, diffs every touched document against what is stored and
upserts the difference: right for small batches on a live table, wasteful for a rebuild,
which would rewrite a client's head and diff its collections once per batch the client
appears in. A rebuild's table is new (state ``building``: nobody reads it), so up to a
fixed checkpoint (the head when the rebuild started) documents stay in memory, and each
is written once, with COPY, as soon as the client's last event up to there is folded
(:func:`last_events` says which that is). PostgreSQL writes while the next pages are folded.

The version checkpoint still advances with the rows, as the runner's invariant demands:
every event at or below it is folded into stored rows. Each write transaction advances it
to just before the first event of the earliest client still unwritten. Rows may be ahead
of the checkpoint (each row carries its own, and the runner skips what a row holds), so
what follows — folding the rest with :func:`~core.projections.runner.apply_batch` —
continues from the checkpoint exactly as after any batch.

Documents are folded with the projection's own pure ``apply`` (erasure re-folds as the
runner does) and split into rows by the same ``Layout.diff`` (against nothing stored) as a
runner writing a client for the first time: the rows are the runner's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from alliance.core.events.crypto import SubjectErased
from alliance.core.events.envelope import RecordedEvent
from alliance.core.events.store import START, EventStore, parse_checkpoint
from alliance.core.projections.base import ERASURE_EVENT
from alliance.core.projections.runner import ADVANCE, Target, VersionMoved, refold_client
from alliance.core.projections.sealing import RowSealer, keys_of, sealer, sealer_after_refold

#: About this many rows (heads and items) per write transaction.
WRITE_ROWS = 10_000


@dataclass
class Chunk:
    """One write transaction: rows, and what the version row says afterwards."""

    heads: list[tuple[Any, ...]]
    items: list[tuple[UUID, int, int, bytes]]
    checkpoint: str
    folded: int
    recorded_at: datetime | None


async def last_events(conn: asyncpg.Connection, until: str) -> dict[UUID, tuple[int, int]]:
    """Per client (subject): the (tx, position) of its last event at or below ``until``.

    Every event up to ``until`` is below the store's read horizon (``until`` was read as the
    head), so none can appear there later: after its last one, a client's documents are final.
    """
    tx, position = parse_checkpoint(until)
    rows = await conn.fetch(
        "SELECT DISTINCT ON (subject_id) subject_id, tx_id::text::bigint, position FROM events "
        "WHERE (tx_id, position) <= ($1::text::xid8, $2) ORDER BY subject_id, tx_id DESC, position DESC",
        str(tx), position)
    return {r[0]: (r[1], r[2]) for r in rows}


class Endings:
    """Which clients have had their last event folded, once :func:`last_events` has answered.

    The query runs while the first pages are folded; when its answer comes, every client
    already past its last event is reported at once.
    """

    def __init__(self, conn: asyncpg.Connection, until: str) -> None:
        self._query = asyncio.ensure_future(last_events(conn, until))
        self._last: dict[UUID, tuple[int, int]] | None = None

    def passed(self, chunk: Sequence[RecordedEvent]) -> list[UUID]:
        """The clients whose last event is in ``chunk`` (just folded), or before it if that was not known yet."""
        if self._last is None:
            if not self._query.done():
                return []
            self._last = last = self._query.result()
            end = parse_checkpoint(chunk[-1].checkpoint)
            return [client for client, at in last.items() if at <= end]
        last = self._last
        return [e.subject_id for e in chunk if last.get(e.subject_id, _NONE)[1] == e.position]

    async def close(self) -> None:
        if not self._query.done():
            self._query.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._query


_NONE = (0, 0)


@dataclass(frozen=True)
class Part:
    """Part ``index`` of ``count``: the clients a pass of a rebuild folds, by their id.

    A rebuild in ``count`` passes holds about 1/count of the documents in memory at a time (a
    decade of interleaved events keeps every document until near the end: 8.9 GB at 3M
    events) and reads the store ``count`` times. The version's checkpoint stays where it is
    until the last pass: until then, some client's events from the very start are unwritten.
    """

    index: int
    count: int

    def holds(self, client: UUID) -> bool:
        return self.count == 1 or client.int % self.count == self.index

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


class Build:
    """One target's documents while the store is folded in memory, and their writing."""

    def __init__(self, target: Target, conn: asyncpg.Connection, store: EventStore, *, rows: int = WRITE_ROWS,
                 part: Part | None = None) -> None:
        self.target = target
        self.conn = conn
        self.store = store
        self.rows = rows
        #: Which clients this build folds, and whether the version's checkpoint may advance.
        self.part = part or Part(0, 1)
        #: Unwritten documents, in order of their client's first event.
        self.docs: dict[UUID, Any] = {}
        #: Per unwritten client: the checkpoint of the last event folded, and its tenant (of that event).
        self.at: dict[UUID, tuple[str, UUID]] = {}
        #: Per unwritten client: a checkpoint before its first event (the version may stand there).
        self.before: dict[UUID, str] = {}
        #: Unwritten clients re-folded from the store after an erasure: the data key their events name.
        self.refolded: dict[UUID, UUID | None] = {}
        #: Complete (their last event folded) and unwritten, in order; with about as many rows.
        self.ready: dict[UUID, None] = {}
        self.ready_rows = 0
        #: Every event up to here is folded.
        self.folded_to = START
        self.folded = 0
        self.counted = 0  # of ``folded``, already added to the version's events_applied
        self.recorded_at: datetime | None = None
        self.writing: asyncio.Task[None] | None = None

    async def fold(self, store: EventStore, events: Sequence[RecordedEvent]) -> None:
        """Fold the events following ``folded_to``."""
        target = self.target
        projection = target.projection
        ctx = projection.context(target.fold_version)
        apply, initial, wants = projection.apply, projection.initial, projection.wants
        docs, at, before = self.docs, self.at, self.before
        mine = self.part.holds
        for event in events:
            if not wants(event):
                continue
            client = event.subject_id
            if not mine(client):
                continue
            doc = docs.get(client)
            if doc is None:
                before[client] = self.folded_to
            if event.type == ERASURE_EVENT:  # as the runner does: personal fields now read erased
                doc, self.refolded[client] = await refold_client(store, projection, client, until=event.checkpoint,
                                                                 version=target.fold_version)
                doc = doc or initial(client, event.tenant_id)
            else:
                self.refolded.pop(client, None)  # folded on: stored as any other document
                doc = apply(doc if doc is not None else initial(client, event.tenant_id), event, ctx)
            docs[client] = doc
            at[client] = (event.checkpoint, event.tenant_id)
            self.folded += 1
        if events:
            self.folded_to = events[-1].checkpoint
            self.recorded_at = events[-1].recorded_at

    def complete(self, clients: Iterable[UUID]) -> None:
        """These clients have no event left to fold: their documents may be written."""
        layout = self.target.projection.layout
        for client in clients:
            doc = self.docs.get(client)
            if doc is not None and client not in self.ready:
                self.ready[client] = None
                self.ready_rows += 1 + sum(len(getattr(doc, p.field)) for p in layout.parts)

    async def flush(self) -> None:
        """Start writing what is ready once there is enough; wait for the write before when far behind."""
        if self.writing is not None and (self.writing.done() or self.ready_rows > 4 * self.rows):
            await self.writing
            self.writing = None
        if self.writing is None and self.ready_rows >= self.rows // 2:
            self.writing = asyncio.ensure_future(self._write(await self._take()))

    async def finish(self, until: str) -> None:
        """Write every remaining document; the version ends at ``until`` (everything up to it folded)."""
        if self.writing is not None:
            await self.writing
            self.writing = None
        self.complete(list(self.docs))
        while self.ready or (self.part.last and self.target.checkpoint != until):
            await self._write(await self._take(until))

    async def abandon(self) -> None:
        """Stop a write still running (after a failure elsewhere), so its connection can be closed."""
        if self.writing is not None and not self.writing.done():
            self.writing.cancel()
        if self.writing is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.writing
        self.writing = None

    async def _sealer(self, client: UUID, doc: Any, checkpoint: str, tenant: UUID) -> tuple[RowSealer, Any]:
        """How to store ``client``'s document, and the document to store (as the runner decides)."""
        target, keys = self.target, keys_of(self.store)
        name = target.projection.name
        if client in self.refolded:
            return await sealer_after_refold(keys, name, client, self.refolded.pop(client)), doc
        try:
            return await sealer(keys, name, tenant, client), doc
        except SubjectErased:  # destroyed since it was folded: what is held may hold personal text
            again, key_id = await refold_client(self.store, target.projection, client, until=checkpoint,
                                                version=target.fold_version)
            return (await sealer_after_refold(keys, name, client, key_id),
                    again if again is not None else target.projection.initial(client, tenant))

    async def _take(self, until: str | None = None) -> Chunk:
        """The first ready clients' rows, about ``rows`` of them (their documents are forgotten).

        The version's checkpoint after it: before the earliest client still unwritten, or
        ``until`` (else ``folded_to``) when none is left.
        """
        projection = self.target.projection
        layout, encode = projection.layout, projection.encode
        heads: list[tuple[Any, ...]] = []
        items: list[tuple[UUID, int, int, bytes]] = []
        while self.ready and len(heads) + len(items) < self.rows:
            client = next(iter(self.ready))
            del self.ready[client]
            doc = self.docs.pop(client)
            checkpoint, tenant = self.at.pop(client)
            del self.before[client]
            tx, pos = parse_checkpoint(checkpoint)
            rows, doc = await self._sealer(client, doc, checkpoint, tenant)
            heads.append((client, tenant, rows.head(encode(layout.head(doc))), tx, pos))
            if layout:
                changes, _ = layout.diff(None, None, doc)
                seal = rows.seal
                items += [(client, p, o, seal(p, o, d)) for p, o, d in changes.insert]
        self.ready_rows = max(0, self.ready_rows - len(heads) - len(items))
        checkpoint = self.before[next(iter(self.docs))] if self.docs else until or self.folded_to
        if not self.part.last:  # later parts' clients have events from the start: nothing is complete yet
            checkpoint = self.target.checkpoint
        folded, self.counted = self.folded - self.counted, self.folded
        return Chunk(heads, items, checkpoint, folded, self.recorded_at)

    async def _write(self, chunk: Chunk) -> None:
        target, conn = self.target, self.conn
        projection = target.projection
        async with conn.transaction():
            state = await conn.fetchval(ADVANCE, projection.name, target.version, target.checkpoint,
                                        chunk.checkpoint, chunk.folded, chunk.recorded_at)
            if state is None:
                raise VersionMoved(f"{projection.name} v{target.version} moved")
            if chunk.heads:
                await conn.copy_records_to_table(target.table, schema_name="projections", records=chunk.heads,
                                                 columns=("client_id", "tenant_id", "doc", "cp_tx", "cp_pos"))
            if chunk.items:
                await conn.copy_records_to_table(f"{target.table}_items", schema_name="projections",
                                                 records=chunk.items, columns=("client_id", "part", "ord", "data"))
        target.checkpoint = chunk.checkpoint


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection inside (process-wide; restored on exit).

    Folding a page keeps thousands of events and documents alive, and each automatic
    collection walks them again: even with what lives long frozen away, that was 15% of a
    1M-event rebuild's CPU (measured). Nothing a fold produces forms reference cycles, so
    reference counting frees it all meanwhile; what cycles other tasks of the process leave
    are collected once this ends. Meant for the rebuild's own process (the CLI's).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
