"""The base every event payload derives from, and the marker for personal fields.

Payloads are frozen msgspec Structs in one tagged union. The tag is the stable
type name (``goal.proposed``), never derived from the class name or module path,
so code can move without rewriting history.

Personal data: a field whose value can identify or describe the client in their
own words is *marked* with one of the ``Personal*`` annotations below. The store
encrypts marked fields with the subject's data key at append and decrypts them on
read; once the key is destroyed (erasure) they read as ``ERASED`` (or empty).
Only top-level payload fields may be marked, and only with these types, so that
an erased event still decodes into its typed payload.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

PERSONAL_META = msgspec.Meta(extra={"personal": True})

#: The text shown in place of a personal field whose key was destroyed.
ERASED = "[erased]"

PersonalStr = Annotated[str, PERSONAL_META]
OptionalPersonalStr = Annotated[str | None, PERSONAL_META]
PersonalTexts = Annotated[tuple[str, ...], PERSONAL_META]
PersonalMap = Annotated[dict[str, str], PERSONAL_META]


class EventPayload(msgspec.Struct, frozen=True, gc=False, kw_only=True, tag_field="type"):
    """Base of all event payloads.

    Subclasses give ``tag="stream.verb"`` and may raise ``schema_version`` when
    their shape changes (with an upcaster from the previous version).

    ``gc=False`` (inherited), as on the states and projection documents: these structs are
    frozen and hold only values, never a reference back, so they can form no cycle for the
    cyclic collector to find. Untracked, the state and document caches full of them no longer
    lengthen its collections (which took 4-28% of a loaded worker's wall time, measured).
    """

    schema_version: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        return str(cls.__struct_config__.tag)

