"""What a projection is: a name, a version, the event types it folds, and a pure fold.

A projection keeps one *document* per client (the envelope's ``subject_id`` is
always the client id). ``apply(document, event, context)`` is pure: the live
runner, a rebuild, ``verify`` and the as-of queries all fold with the very same
function, which is what makes "replay equals live" hold by construction.

Every projection also handles the erasure-completed event (``erasure.completed``):
the runner then re-folds that client from the store, where the personal fields
now decode as erased, so no plaintext is left in any read model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

import msgspec

from alliance.core.client import ClientErased
from alliance.core.events.envelope import RecordedEvent
from alliance.core.projections.parts import Layout, Part

D = TypeVar("D")

#: The event after which a client's documents are re-folded from the store.
ERASURE_EVENT = ClientErased.type_name()

#: Change kinds the feed carries.
FEED_KINDS = ("plan", "progress", "history")


@dataclass(frozen=True)
class FoldContext:
    """What a fold may depend on besides the document and the event.

    ``version`` lets version N+1 of a projection fold differently from N while
    both run side by side during a rebuild.
    """

    projection: str
    version: int


@dataclass(frozen=True)
class Projection(Generic[D]):
    name: str
    version: int
    #: Event type names folded (the erasure event is always handled besides).
    handles: frozenset[str]
    doc_type: type[D]
    #: ``initial(client_id, tenant_id)`` → the empty document.
    initial: Callable[[UUID, UUID], D]
    #: ``apply(document, event, context)`` → the next document. Pure; never raises on odd events.
    apply: Callable[[D, RecordedEvent, FoldContext], D]
    #: The change-feed kind this projection emits when active (None: emits nothing).
    feed_kind: str | None = None
    #: Growing collections stored one row per item (see ``parts``); the rest is the head row.
    parts: tuple[Part, ...] = ()
    _encoder: msgspec.json.Encoder = field(default_factory=msgspec.json.Encoder, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_decoder", msgspec.json.Decoder(self.doc_type))
        object.__setattr__(self, "layout", Layout(self.parts))

    layout: Layout = field(init=False, repr=False, compare=False)

    def table(self, version: int | None = None) -> str:
        return f"{self.name}_v{self.version if version is None else version}"

    def context(self, version: int | None = None) -> FoldContext:
        return FoldContext(projection=self.name, version=self.version if version is None else version)

    def encode(self, document: D) -> bytes:
        return self._encoder.encode(document)

    def decode(self, data: bytes) -> D:
        return self._decoder.decode(data)  # type: ignore[attr-defined, no-any-return]

    def wants(self, event: RecordedEvent) -> bool:
        return event.type in self.handles or event.type == ERASURE_EVENT


def fold(projection: Projection[D], events: Iterable[RecordedEvent], *, version: int | None = None,
         documents: dict[UUID, D] | None = None) -> dict[UUID, D]:
    """Fold events into per-client documents with the projection's pure ``apply``."""
    docs: dict[UUID, D] = documents if documents is not None else {}
    ctx = projection.context(version)
    for event in events:
        if not projection.wants(event):
            continue
        doc = docs.get(event.subject_id)
        if doc is None:
            doc = projection.initial(event.subject_id, event.tenant_id)
        docs[event.subject_id] = projection.apply(doc, event, ctx)
    return docs


def to_builtins(value: Any) -> Any:
    """JSON-ready builtins (UUIDs, dates and datetimes as ISO strings)."""
    return msgspec.to_builtins(value)
