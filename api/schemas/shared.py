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


class AlertView(msgspec.Struct, kw_only=True):
    """A not-on-track alert: the rule, the data and criterion behind it, and its acknowledgement."""

    alert_id: Annotated[UUID, Meta(description="The alert's id")]
    rule: Annotated[str, Meta(description="The rule that raised it (`core/alerts/rules.py`)")]
    instrument_id: Annotated[str, Meta(description="The instrument")]
    instrument_version: Annotated[str, Meta(description="Its version")]
    baseline_measurement_id: Annotated[UUID, Meta(description="The baseline measurement")]
    measurement_id: Annotated[UUID, Meta(description="The measurement that raised it")]
    baseline: Annotated[float, Meta(description="The baseline total")]
    latest: Annotated[float, Meta(description="The latest total")]
    baseline_observed_at: Annotated[datetime, Meta(description="When the baseline was observed")]
    latest_observed_at: Annotated[datetime, Meta(description="When the latest was observed")]
    administrations: Annotated[int, Meta(description="Administrations since baseline")]
    weeks: Annotated[float, Meta(description="Weeks since baseline")]
    criterion: Annotated[str, Meta(description="The criterion in words")]
    method: Annotated[str | None, Meta(description="The reliable change method (`threshold`, `index`)")]
    threshold: Annotated[float | None, Meta(description="The reliable change threshold")]
    rci: Annotated[float | None, Meta(description="The reliable change index")]
    after_administrations: Annotated[int | None, Meta(description="The policy's administrations")]
    after_weeks: Annotated[float | None, Meta(description="The policy's weeks")]
    band_lower: Annotated[float | None, Meta(description="Expected-response band, lower bound")]
    band_upper: Annotated[float | None, Meta(description="Expected-response band, upper bound")]
    source: Annotated[str, Meta(description="Where the criterion comes from")]
    raised_at: Annotated[datetime, Meta(description="When it was raised")]
    acknowledged: Annotated[bool, Meta(description="Whether a clinician acknowledged it")]
    acknowledged_by: Annotated[UUID | None, Meta(description="Who acknowledged it")]
    acknowledged_at: Annotated[datetime | None, Meta(description="When")]
    action_taken: Annotated[str | None, Meta(description="The action taken")]
