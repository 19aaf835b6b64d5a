"""Documents stored as a small *head* row plus one row per item of their growing collections.

A projection may declare some of its document's fields as *parts*: a ``seq`` (a tuple the
fold only appends to, e.g. the history's entries) or a ``map`` (a dict the fold adds to,
replaces values in or removes keys from, e.g. progress points by measurement id). The
document is still what the pure fold produces and consumes; only its storage differs:

* the head row holds the document with every part emptied (small, rewritten per batch);
* the items table holds ``(client_id, part, ord, data)``: a ``seq`` item at its index, a
  ``map`` item as ``[key, value]`` at an ordinal that grows with insertion order, so
  ``ORDER BY part, ord`` restores the dict's order.

After a batch, :meth:`Layout.diff` compares the document the batch started from with the
one it ended with and yields only the rows to write: new items, replaced values and
removed keys — O(changed items), not O(document). Anything it cannot express as such
(a fold that reordered or rewrote a collection) falls back to rewriting that part of that
client, so the stored rows always reassemble into exactly the folded document.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import is_
from typing import Any, Literal

import msgspec
from msgspec.structs import replace

#: Per part: a ``seq``'s stored length, or a ``map``'s ``(ordinal by key, next ordinal)``.
Meta = tuple[Any, ...]

_MISSING = object()


@dataclass(frozen=True)
class Part:
    field: str
    kind: Literal["seq", "map"]
    item_type: Any
    key_type: Any = None


@dataclass
class Changes:
    """Rows to write for one client after a batch."""

    clear: list[int] = field(default_factory=list)  # parts to delete entirely first
    delete: list[tuple[int, int]] = field(default_factory=list)  # (part, ord)
    insert: list[tuple[int, int, bytes]] = field(default_factory=list)  # new rows
    update: list[tuple[int, int, bytes]] = field(default_factory=list)  # existing rows, new data


class Layout:
    """How one projection's documents split into a head and item rows (no parts: head only)."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self.parts = tuple(parts)
        self._encoder = msgspec.json.Encoder()
        self._lists = [msgspec.json.Decoder(list[tuple[p.key_type, p.item_type]] if p.kind == "map"  # type: ignore[name-defined]
                                            else list[p.item_type])  # type: ignore[name-defined]
                       for p in self.parts]
        self._empty: dict[str, Any] = {p.field: {} if p.kind == "map" else () for p in self.parts}

    def __bool__(self) -> bool:
        return bool(self.parts)

    def head(self, doc: Any) -> Any:
        return replace(doc, **self._empty) if self.parts else doc

    def empty_meta(self) -> Meta:
        return tuple(0 if p.kind == "seq" else ({}, 0) for p in self.parts)

    def assemble(self, head: Any, rows: Iterable[tuple[int, int, bytes]]) -> tuple[Any, Meta]:
        """The document from its head and its item rows (ordered by part, ord), with its meta."""
        if not self.parts:
            return head, ()
        grouped: list[list[tuple[int, bytes]]] = [[] for _ in self.parts]
        for part, ord_, data in rows:
            grouped[part].append((ord_, data))
        values: dict[str, Any] = {}
        meta: list[Any] = []
        for i, p in enumerate(self.parts):
            items = grouped[i]
            decoded = self._lists[i].decode(b"[" + b",".join(d for _, d in items) + b"]") if items else []
            if p.kind == "seq":
                values[p.field] = tuple(decoded)
                meta.append(len(decoded))
            else:
                values[p.field] = dict(decoded)
                ords = {k: o for (k, _), (o, _) in zip(decoded, items, strict=True)}
                meta.append((ords, items[-1][0] + 1 if items else 0))
        return replace(head, **values), tuple(meta)

    def encode_item(self, part: int, key: Any, value: Any) -> bytes:
        return self._encoder.encode((key, value) if self.parts[part].kind == "map" else value)

    @staticmethod
    def _appended_only(old: dict[Any, Any], new: dict[Any, Any]) -> bool:
        """``new`` is ``old`` with keys added at the end and every old value the same object
        (how ``{**old, key: value}`` builds it): the old rows all stand, only new ones are written."""
        n = len(old)
        return len(new) >= n and list(islice(new, n)) == list(old) \
            and all(map(is_, old.values(), islice(new.values(), n)))

    def diff(self, old: Any | None, meta: Meta | None, new: Any, *, rewrite: bool = False
             ) -> tuple[Changes, Meta]:
        """The rows that turn what is stored for ``old`` (with ``meta``) into ``new``.

        ``old`` None: nothing stored yet. ``rewrite``: clear every part and write it afresh
        (after an erasure re-fold, whatever ``old`` was).
        """
        changes = Changes()
        new_meta: list[Any] = []
        stored = old is not None and meta is not None and not rewrite
        for i, p in enumerate(self.parts):
            nv = getattr(new, p.field)
            ov = getattr(old, p.field) if stored else None
            if p.kind == "seq":
                # Tuple equality runs in C and checks identity first: a prefix shared with
                # the old document (the usual case, one item appended) costs a pointer per item.
                if ov is not None and len(nv) >= len(ov) and tuple(nv[:len(ov)]) == tuple(ov):
                    start = len(ov)
                else:
                    if stored or rewrite:
                        changes.clear.append(i)
                    start = 0
                enc = self._encoder.encode
                changes.insert.extend((i, start + k, enc(v)) for k, v in enumerate(nv[start:]))
                new_meta.append(len(nv))
                continue
            if ov is not None and self._appended_only(ov, nv):  # the usual case, in C-speed passes
                old_ords, nxt = meta[i]  # type: ignore[index]
                ords = dict(old_ords) if len(nv) > len(ov) else old_ords
                for k, v in islice(nv.items(), len(ov), None):
                    ords[k] = nxt
                    changes.insert.append((i, nxt, self._encoder.encode((k, v))))
                    nxt += 1
                new_meta.append((ords, nxt))
                continue
            survivors = [k for k in ov if k in nv] if ov is not None else []
            if ov is None or list(nv)[:len(survivors)] != survivors:
                if stored or rewrite:
                    changes.clear.append(i)
                ords = {k: n for n, k in enumerate(nv)}
                changes.insert.extend((i, n, self._encoder.encode((k, v))) for n, (k, v) in enumerate(nv.items()))
                new_meta.append((ords, len(nv)))
                continue
            assert meta is not None
            old_ords, nxt = meta[i]
            ords = old_ords
            if len(survivors) != len(ov) or len(nv) != len(ov) or any(
                    ov.get(k, _MISSING) is not v for k, v in nv.items()):
                ords = dict(old_ords)
                for k in ov:
                    if k not in nv:
                        changes.delete.append((i, ords.pop(k)))
                for k, v in nv.items():
                    o = ov.get(k, _MISSING)
                    if o is _MISSING:
                        ords[k] = nxt
                        changes.insert.append((i, nxt, self._encoder.encode((k, v))))
                        nxt += 1
                    elif o is not v and o != v:
                        changes.update.append((i, ords[k], self._encoder.encode((k, v))))
            new_meta.append((ords, nxt))
        return changes, tuple(new_meta)


NO_PARTS = Layout(())
