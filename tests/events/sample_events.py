"""Event types used by the store's own tests (the store knows nothing of the domain)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from alliance.core.events.base import EventPayload, OptionalPersonalStr, PersonalMap, PersonalStr, PersonalTexts


class NoteTaken(EventPayload, tag="test.note_taken"):
    number: int
    text: PersonalStr
    remark: OptionalPersonalStr = None
    tags: PersonalTexts = ()
    answers: PersonalMap = {}


class Counted(EventPayload, tag="test.counted"):
    number: Annotated[int, msgspec.Meta(ge=0)]
    label: str = ""


class Renamed(EventPayload, tag="test.renamed"):
    """Schema version 2: v1 had ``name``; v2 calls it ``title`` and adds ``lang``."""

    schema_version = 2
    title: str
    lang: str = "en"


def upcast_renamed_v1(document: dict) -> dict:
    document = dict(document)
    document["title"] = document.pop("name")
    return document


SAMPLE_EVENTS = (NoteTaken, Counted, Renamed)
SAMPLE_UPCASTERS = {("test.renamed", 1): upcast_renamed_v1}
