"""A per-process copy of recently read views, dropped the moment the change feed says they changed.

A read of the current plan or progress is one round trip (``queries.fetch_view``); for a
view polled by a client's app that round trip costs PostgreSQL more CPU than the rest of
the request. This cache keeps the result of that read, keyed by (view, client, tenant), and
serves it again until one of these drops it:

* a change of the client's views, announced on the change feed's NOTIFY channel. The NOTIFY
  is sent inside the projection's own transaction, so PostgreSQL delivers it exactly when the
  new rows are visible; the entry is gone a few milliseconds after the commit;
* a rebuild switching a projection's active version (``*``: everything goes);
* the LISTEN connection being lost: the cache empties and serves nothing until it listens
  again, since it could no longer hear of changes;
* age: an entry is never served after ``max_age`` seconds, whatever happened. That bounds
  what the notifications cannot cover: the clinic's crisis text and stream versions carried
  in the entry, and a connection that died without saying so.

A read that started before an invalidation never stores its (possibly older) result after
it: every invalidation advances a generation, and ``put`` refuses a result fetched at an
earlier generation than the client's last invalidation.

What is held is what ``fetch_view`` returned: rows already opened with the client's data key
(``sealing``), in this process's memory only, never written anywhere. A key's destruction
empties the cache (the app's key-destroyed listener), and a read of rows sealed with a
destroyed key returns nothing to hold.

Who may be served from here is the caller's decision (the API serves only a client reading
their own records: that authorization cannot change once granted; staff reads are logged
and depend on revocable care-team membership and consent, so they always read the database).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar
from uuid import UUID

V = TypeVar("V")


class _Held(Generic[V]):
    """One client's held views, and what they weigh together."""

    __slots__ = ("views", "weight")

    def __init__(self) -> None:
        self.views: dict[tuple[str, UUID | None], tuple[float, V, int]] = {}
        self.weight = 0


class ViewCache(Generic[V]):
    """Bounded twice: by clients held (``size``) and by weight (``max_weight``, in the units
    ``weigh`` returns, say bytes), least recently read clients going first."""

    def __init__(self, *, max_age: float, size: int = 10_000, max_weight: int = 64 << 20,
                 weigh: Callable[[V], int] = lambda _value: 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        #: Clients held at most (least recently read go first), and invalidation records kept.
        self.size = size
        self.max_weight = max_weight
        self._weigh = weigh
        self._clock = clock
        #: client -> its held views, least recently read client first.
        self._clients: OrderedDict[UUID, _Held[V]] = OrderedDict()
        self._weight = 0
        #: client -> generation of its latest invalidation (bounded like the entries).
        self._invalidated: OrderedDict[UUID, int] = OrderedDict()
        self._generation = 0
        #: Results fetched before this generation are never stored (a full clear, or forgotten records).
        self._floor = 0
        #: False while nobody listens for changes (before the first LISTEN, after a lost connection).
        self._listening = False
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_age > 0 and self._listening

    @property
    def generation(self) -> int:
        """Take this before fetching; hand it to ``put`` with the result."""
        return self._generation

    @property
    def weight(self) -> int:
        return self._weight

    def get(self, view: str, client_id: UUID, tenant_id: UUID | None) -> V | None:
        held = self._clients.get(client_id) if self.enabled else None
        entry = held.views.get((view, tenant_id)) if held is not None else None
        if entry is None or self._clock() - entry[0] > self.max_age:
            self.misses += 1
            return None
        self._clients.move_to_end(client_id)
        self.hits += 1
        return entry[1]

    def put(self, view: str, client_id: UUID, tenant_id: UUID | None, value: V, *, fetched_at: int) -> bool:
        """Keep ``value``, read at generation ``fetched_at``, unless the client's views changed since."""
        if not self.enabled or self._floor > fetched_at or self._invalidated.get(client_id, -1) > fetched_at:
            return False
        weight = self._weigh(value)
        if weight > self.max_weight:
            return False
        held = self._clients.get(client_id)
        if held is None:
            held = self._clients[client_id] = _Held()
        else:
            self._clients.move_to_end(client_id)
        key = (view, tenant_id)
        if (old := held.views.get(key)) is not None:
            held.weight -= old[2]
            self._weight -= old[2]
        held.views[key] = (self._clock(), value, weight)
        held.weight += weight
        self._weight += weight
        while len(self._clients) > self.size or self._weight > self.max_weight:
            self._drop(next(iter(self._clients)))
        return True

    def _drop(self, client_id: UUID) -> None:
        held = self._clients.pop(client_id, None)
        if held is not None:
            self._weight -= held.weight

    def invalidate(self, client_ids: Iterable[UUID]) -> None:
        """The views of these clients changed (called as each notification arrives)."""
        self._generation += 1
        for client in client_ids:
            self._drop(client)
            self._invalidated[client] = self._generation
            self._invalidated.move_to_end(client)
        while len(self._invalidated) > self.size:
            # Records are in generation order: forgetting the oldest means refusing what was
            # fetched before it, for every client (we no longer know whom it concerned).
            _, forgotten = self._invalidated.popitem(last=False)
            self._floor = max(self._floor, forgotten)

    def clear(self) -> None:
        """Everything may have changed (a rebuild switched, a key was destroyed)."""
        self._generation += 1
        self._floor = self._generation
        self._clients.clear()
        self._weight = 0
        self._invalidated.clear()

    def listening(self, on: bool) -> None:
        """Whether changes are being heard. When they stop, nothing held can be trusted; when
        they start again, nothing fetched before can be (its change may have gone unheard)."""
        self.clear()
        self._listening = on

    def __len__(self) -> int:
        return sum(len(held.views) for held in self._clients.values())
