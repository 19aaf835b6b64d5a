"""Small shapes several views share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import Meta


class CrisisInformation(msgspec.Struct, kw_only=True):
    """What the client is shown about getting help urgently (never empty)."""

    text: Annotated[str, Meta(description="The clinic's crisis text, or a default")]
    contacts: Annotated[list[str], Meta(description="Phone numbers or addresses to reach now")]


class PlainLanguageHint(msgspec.Struct, kw_only=True):
    """A clinical term found in a client-facing text, with everyday words for it (guidance, not a rule)."""

    field: Annotated[str, Meta(description="Which text: `statement`, `client_words`, `milestones.<id>.description`…")]
    term: Annotated[str, Meta(description="The glossary term matched")]
    found: Annotated[str, Meta(description="The text as written")]
    start: Annotated[int, Meta(description="Where it starts in the text (characters)")]
    end: Annotated[int, Meta(description="Where it ends")]
    suggestion: Annotated[str, Meta(description="Everyday words for it")]
    alternatives: Annotated[list[str], Meta(description="Other plugins' words for the same term")]


class RiskFlagView(msgspec.Struct, kw_only=True):
    """A risk flag (from a risk answer, a skipped risk question, or raised by a clinician)."""

    flag_id: Annotated[UUID, Meta(description="The flag's id")]
    source: Annotated[str, Meta(description="`measurement` or `clinician`")]
    measurement_id: Annotated[UUID | None, Meta(description="The measurement that raised it")]
    items: Annotated[list[str], Meta(description="The risk items that fired")]
    note: Annotated[str | None, Meta(description="The clinician's note")]
    raised_by: Annotated[UUID, Meta(description="Who raised it")]
    raised_by_role: Annotated[str, Meta(description="Their role")]
    raised_at: Annotated[datetime, Meta(description="When")]
    acknowledged: Annotated[bool, Meta(description="Whether a clinician acknowledged it")]
    acknowledged_by: Annotated[UUID | None, Meta(description="Who acknowledged it")]
    acknowledged_at: Annotated[datetime | None, Meta(description="When")]
    action_taken: Annotated[str | None, Meta(description="The action taken, in the clinician's words")]
