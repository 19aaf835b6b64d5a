"""Group commit: concurrent appends of one process share one statement and one commit.

Commits are the scarce resource of the write path (each one waits for a WAL flush), so
appends that arrive *while another append is in flight* are queued and, as soon as the
database is free again, written together by one statement (``GROUP_APPEND``): one round
trip, one transaction, one flush. Nothing ever waits for a timer: an append that finds
nothing in flight runs at once on the ordinary single-append path, so a lone append's
latency is what it is with grouping off.

Each append in a group keeps its own optimistic check. The statement locks a stream head
only when it is at the append's expected version, and with ``SKIP LOCKED``: a group never
waits for another writer's lock (so it cannot deadlock, and its transaction id, taken at
its first lock, is never older than that of a writer it would have waited for — the
global order ``(tx, position)`` keeps following each stream's version order). An append
whose head is elsewhere, locked, or missing (a new stream, a conflict, a retry of a
recorded append) is simply not written by the group and goes back to its caller, who runs
it on the single-append path (``append_events``), which answers conflicts with the actual
version, retries as duplicates, and so on, exactly as without grouping. A statement that
fails as a whole (an event id reused across two appends, say) writes nothing, and every
append of the group goes the single path. A lost connection makes every append of the
group ``OutcomeUnknown``, as it would each of them alone.

One append's events (a command's: a measurement and its risk flag) are one item, never
split; two appends to the same stream never share a group (the second waits for the next).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from alliance.core.events.codec import HASH_SCHEME
from alliance.core.events.store import PreparedEvent

#: Bounds on one group: appends, and events over all of them (one statement's arrays).
MAX_GROUP_APPENDS = 64
MAX_GROUP_EVENTS = 512
#: Longest append a group takes (a command's few events): the chain is computed one link per
#: recursion step over the whole group, so a long append (an import of 100 events) is cheaper
#: alone, through ``append_events``.
MAX_GROUPED_APPEND = 8
#: Groups in the database at once: while one commits, the next gathers what queued meanwhile.
MAX_GROUPS_IN_FLIGHT = 1

# $1..$3: per append (its index g, stream, expected version). $4..: per event (g, k = its
# 1-based index in its append, then the event's columns). Heads are locked only at the
# expected version and never waited for; positions are taken after the locks, sorted, and
# handed out in (g, k) order, so within a stream they rise with the version. The chain of
# each stream is computed link by link (the recursive part), as ``append_events`` does.
GROUP_APPEND = """
WITH RECURSIVE
items AS (
  SELECT i.g, i.sid, i.expected FROM unnest($1::int[], $2::text[], $3::bigint[]) AS i(g, sid, expected)),
head AS (
  SELECT items.g, items.sid, items.expected, s.head_hash
  FROM streams s JOIN items ON s.stream_id = items.sid AND s.version = items.expected
  FOR UPDATE OF s SKIP LOCKED),
ok AS MATERIALIZED (
  SELECT e.*, head.sid, head.expected, head.head_hash, row_number() OVER (ORDER BY e.g, e.k)::int AS rn
  FROM unnest($4::int[], $5::int[], $6::uuid[], $7::text[], $8::int[], $9::uuid[], $10::uuid[], $11::uuid[],
              $12::text[], $13::timestamptz[], $14::uuid[], $15::uuid[], $16::uuid[], $17::bytea[],
              $18::bytea[], $19::bytea[])
       AS e(g, k, id, typ, sv, tenant, subj, act, role, occ, corr, caus, kid, pay, sec, dig)
  JOIN head ON head.g = e.g),
pos AS MATERIALIZED (
  SELECT array_agg(p ORDER BY p) AS ps, pg_current_xact_id() AS tx, now() AS rec,
         int8send(pg_current_xact_id()::text::bigint) AS txb,
         int8send((extract(epoch FROM now()) * 1000000)::bigint) AS recb
  FROM (SELECT nextval('events_position_seq') AS p FROM ok) x),
chain AS (
  SELECT o.g, o.k, sha256(o.head_hash || o.dig || int8send(p.ps[o.rn]) || p.txb || p.recb) AS hash
  FROM ok o CROSS JOIN pos p WHERE o.k = 1
  UNION ALL
  SELECT o.g, o.k, sha256(c.hash || o.dig || int8send(p.ps[o.rn]) || p.txb || p.recb)
  FROM chain c JOIN ok o ON o.g = c.g AND o.k = c.k + 1 CROSS JOIN pos p),
ins AS (
  INSERT INTO events (position, tx_id, event_id, stream_id, version, type, schema_version, tenant_id, subject_id,
                      actor_id, actor_role, occurred_at, recorded_at, correlation_id, causation_id, key_id,
                      hash_scheme, payload, secret, digest, hash)
  SELECT p.ps[o.rn], p.tx, o.id, o.sid, o.expected + o.k, o.typ, o.sv, o.tenant, o.subj, o.act, o.role, o.occ,
         p.rec, o.corr, o.caus, o.kid, $20, o.pay, o.sec, o.dig, c.hash
  FROM ok o JOIN chain c ON c.g = o.g AND c.k = o.k CROSS JOIN pos p
  RETURNING stream_id, version, hash),
moved AS (
  UPDATE streams s SET version = last.version, head_hash = last.hash
  FROM (SELECT DISTINCT ON (stream_id) stream_id, version, hash FROM ins ORDER BY stream_id, version DESC) last
  WHERE s.stream_id = last.stream_id)
SELECT o.g, p.ps[o.rn], p.tx::text, p.rec, c.hash
FROM ok o JOIN chain c ON c.g = o.g AND c.k = o.k CROSS JOIN pos p
ORDER BY o.g, o.k"""

#: What one appended event's row says (as ``append_events`` answers): position, tx, recorded-at, hash, duplicate.
Row = tuple[int, str, Any, bytes, bool]


class _Item:
    __slots__ = ("expected", "future", "rows", "stream_id")

    def __init__(self, stream_id: str, expected: int, rows: Sequence[PreparedEvent],
                 future: asyncio.Future[list[Row] | None]) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.rows = rows
        self.future = future


def group_arguments(items: Sequence[_Item]) -> tuple[Any, ...]:
    """The statement's arrays: per append, then per event (flattened in (g, k) order)."""
    g_items, sids, expected = [], [], []
    g, k, ids, types, svs, tenants, subjects, actors, roles, occurred = [], [], [], [], [], [], [], [], [], []
    corrs, causes, kids, payloads, secrets, digests = [], [], [], [], [], []
    for index, item in enumerate(items):
        g_items.append(index)
        sids.append(item.stream_id)
        expected.append(item.expected)
        for n, r in enumerate(item.rows, 1):
            e = r.event
            g.append(index)
            k.append(n)
            ids.append(e.event_id)
            types.append(r.type)
            svs.append(r.schema_version)
            tenants.append(e.tenant_id)
            subjects.append(e.subject_id)
            actors.append(e.actor_id)
            roles.append(str(e.actor_role))
            occurred.append(e.occurred_at)
            corrs.append(e.correlation_id)
            causes.append(e.causation_id)
            kids.append(r.key_id)
            payloads.append(r.payload)
            secrets.append(r.secret)
            digests.append(r.digest)
    return (g_items, sids, expected, g, k, ids, types, svs, tenants, subjects, actors, roles, occurred, corrs,
            causes, kids, payloads, secrets, digests, HASH_SCHEME)


class GroupCommitter:
    """Gathers the appends that arrive while one is in flight and writes them as one group.

    ``write_group(conn_args)`` runs ``GROUP_APPEND`` and returns its rows, or raises:
    ``lost`` (a tuple of exception types) marks a lost connection, which fails every append
    of the group with ``translate(exc)``; any other database error sends every append of the
    group back to the single path.
    """

    def __init__(self, write_group: Callable[[tuple[Any, ...]], Awaitable[list[asyncpg.Record]]], *,
                 lost: tuple[type[BaseException], ...], translate: Callable[[BaseException], BaseException],
                 on_written: Callable[[], None]) -> None:
        self._write_group = write_group
        self._lost = lost
        self._translate = translate
        self._on_written = on_written
        self._pending: list[_Item] = []
        self._in_flight = 0  # single appends and groups now in the database
        self._groups = 0  # groups now in the database
        self._scheduled = False
        #: How many appends each group written carried (size 1: an append that found the store idle).
        self.group_sizes: Counter[int] = Counter()

    async def append(self, stream_id: str, expected: int, rows: Sequence[PreparedEvent],
                     single: Callable[[], Awaitable[Any]],
                     unwritten: Callable[[], Awaitable[Any]] | None = None) -> Any:
        """Append ``rows`` in a group when something is in flight, else run ``single()`` at once.

        Returns ``single()``'s answer, or the group's rows (a list of ``Row``) for an append
        the group wrote. An append the group did not write runs ``unwritten()`` (``single`` if
        not given): the group already found its head elsewhere, locked or missing, so the caller
        may go straight to the path that sorts those out instead of trying the common case again.
        """
        eligible = expected > 0 and len(rows) <= MAX_GROUPED_APPEND
        if (self._in_flight == 0 and not self._pending) or not eligible:
            return await self._single(single)
        future: asyncio.Future[list[Row] | None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(stream_id, expected, rows, future))
        self._schedule()
        written = await future
        if written is None:  # not for the group to write (conflict, locked head, new stream...)
            return await self._single(unwritten or single)
        return written

    async def _single(self, single: Callable[[], Awaitable[Any]]) -> Any:
        self._in_flight += 1
        try:
            return await single()
        finally:
            self._in_flight -= 1
            self.group_sizes[1] += 1
            self._schedule()

    def _schedule(self) -> None:
        # call_soon, not now: the writers woken by the append that just finished run first,
        # each preparing its next append and queueing it, so the next group carries them all.
        if self._pending and not self._scheduled and self._groups < MAX_GROUPS_IN_FLIGHT:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._scheduled = False
        if self._groups >= MAX_GROUPS_IN_FLIGHT:
            return
        items = self._take()
        if len(items) == 1:  # nothing to share a commit with: the single path is as cheap
            items[0].future.set_result(None)
            self._schedule()
        elif items:
            self._groups += 1
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._flush(items), name="group-commit")

    def _take(self) -> list[_Item]:
        taken: list[_Item] = []
        streams: set[str] = set()
        events = 0
        rest: list[_Item] = []
        for item in self._pending:
            if (item.stream_id in streams or len(taken) >= MAX_GROUP_APPENDS
                    or events + len(item.rows) > MAX_GROUP_EVENTS or item.future.done()):
                if not item.future.done():
                    rest.append(item)
                continue
            taken.append(item)
            streams.add(item.stream_id)
            events += len(item.rows)
        self._pending = rest
        return taken

    async def _flush(self, items: list[_Item]) -> None:
        try:
            await self._write(items)
        finally:
            # The group stays "in flight" for one more turn of the loop: the writers it just
            # answered run first and queue their next appends, instead of the first of them
            # finding the store idle and going alone.
            asyncio.get_running_loop().call_soon(self._group_done)

    def _group_done(self) -> None:
        self._groups -= 1
        self._in_flight -= 1
        self._schedule()

    async def _write(self, items: list[_Item]) -> None:
        try:
            records = await self._write_group(group_arguments(items))
        except self._lost as exc:
            for item in items:
                if not item.future.done():
                    item.future.set_exception(self._translate(exc))
            return
        except asyncpg.PostgresError:
            for item in items:  # nothing was written: each append learns its own fate alone
                if not item.future.done():
                    item.future.set_result(None)
            return
        except BaseException as exc:
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            raise
        written: dict[int, list[Row]] = {}
        for r in records:
            written.setdefault(r[0], []).append((r[1], r[2], r[3], r[4], False))
        self.group_sizes[len(written)] += 1
        if written:
            self._on_written()
        for index, item in enumerate(items):
            if not item.future.done():
                item.future.set_result(written.get(index))
