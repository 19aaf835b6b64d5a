"""What a command answers: the events it recorded, the ids it made, signed receipts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from alliance.api.schemas.shared import CrisisInformation

_EVENT_ID = UUID("0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b10")


class RecordedRef(msgspec.Struct, kw_only=True):
    """One event the command recorded."""

    event_id: Annotated[UUID, Meta(description="The event's id")]
    type: Annotated[str, Meta(description="Stable event type name", examples=["goal.agreed"])]
    version: Annotated[int, Meta(description="The event's version in its stream (1, 2, …)")]
    recorded_at: Annotated[datetime, Meta(description="When the store recorded it")]


class ChainHead(msgspec.Struct, kw_only=True):
    """The stream's head when the receipt was signed: a later rewrite of the chain shows."""

    version: Annotated[int, Meta(description="The stream's version then")]
    hash: Annotated[str, Meta(description="The head event's chain hash (hex)")]


class Signature(msgspec.Struct, kw_only=True):
    """Ed25519 over the canonical JSON of the document without its ``signature``."""

    alg: Annotated[str, Meta(description="Always `EdDSA`")]
    kid: Annotated[str, Meta(description="Key id: the public key is at /.well-known/alliance-keys.json")]
    value: Annotated[str, Meta(description="The signature, base64url")]


class Receipt(msgspec.Struct, kw_only=True):
    """A signed receipt for an agreement, an accepted change or a consent: proof of what was
    recorded, checkable offline (`alliance verify`) or with POST /receipts/verify."""

    kind: Annotated[str, Meta(description="Always `alliance.receipt`")]
    format: Annotated[int, Meta(description="Receipt format version (1)")]
    event_id: Annotated[UUID, Meta(description="The event this receipt is for")]
    stream_id: Annotated[str, Meta(description="Its stream (e.g. `goal-<id>`)")]
    version: Annotated[int, Meta(description="Its version in the stream")]
    position: Annotated[int, Meta(description="Its position in the store")]
    type: Annotated[str, Meta(description="Its event type")]
    event_hash: Annotated[str, Meta(description="Its chain hash (hex)")]
    chain_head: Annotated[ChainHead, Meta(description="The stream head at signing")]
    recorded_at: Annotated[datetime, Meta(description="When it was recorded")]
    occurred_at: Annotated[datetime, Meta(description="When it happened")]
    tenant_id: Annotated[UUID, Meta(description="The clinic")]
    subject_id: Annotated[UUID, Meta(description="The client the record is about")]
    actor_id: Annotated[UUID, Meta(description="Who acted")]
    actor_role: Annotated[str, Meta(description="Their role")]
    what: Annotated[dict[str, Any], Meta(description="The stored payload with every personal field blanked")]
    issued_at: Annotated[datetime, Meta(description="When this receipt was signed")]
    signature: Annotated[Signature, Meta(description="The server's signature")]


class CommandResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a command recorded: ids and versions, never personal text (safe to keep for retries)."""

    command_id: Annotated[UUID, Meta(description="This command's id (the same on a replayed retry)")]
    stream_id: Annotated[str, Meta(description="The stream written to",
                                   examples=["goal-0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b10"])]
    version: Annotated[int, Meta(description="The stream's version after the command (the goal's ETag)")]
    events: Annotated[list[RecordedRef], Meta(description="The events recorded (empty when nothing changed)")]
    duplicate: Annotated[bool, Meta(description="True when the command had been recorded before")] = False
    created: Annotated[dict[str, UUID], Meta(
        description="Ids of what the command created, by name (goal_id, milestone_id, …)")] = msgspec.field(
        default_factory=dict)
    receipts: Annotated[list[Receipt], Meta(
        description="Signed receipts for agreements, accepted changes and consents")] = msgspec.field(
        default_factory=list)


class Completeness(msgspec.Struct, kw_only=True):
    """Present when the answers were incomplete or the total was prorated."""

    incomplete: Annotated[str | None, Meta(description="Why the answer set was incomplete "
                                                       "(e.g. `risk_item_unanswered`)")]
    unanswered: Annotated[list[str], Meta(description="Item ids left unanswered")]
    prorated: Annotated[bool, Meta(description="Whether the total was prorated by the instrument's rule")]


class RiskAnswer(msgspec.Struct, kw_only=True):
    """A risk flag this measurement raised, with what the person who recorded it is shown."""

    flag_id: Annotated[UUID, Meta(description="The risk flag raised")]
    reason: Annotated[str | None, Meta(description="`risk_answer` or `risk_item_unanswered`")]
    crisis_information: Annotated[CrisisInformation | UnsetType, Meta(
        description="For the client or their proxy: the clinic's crisis information")] = UNSET
    items: Annotated[list[str] | UnsetType, Meta(description="For staff: the risk items that fired")] = UNSET
    actions: Annotated[list[str] | UnsetType, Meta(
        description="For staff: the clinic's action lines (plugins' `risk_flag_actions`)")] = UNSET


class MeasurementResult(CommandResult, kw_only=True, omit_defaults=True):
    """A recorded measurement: the command result, with completeness and any risk flag raised."""

    measurement: Annotated[Completeness | UnsetType, Meta(
        description="Present when answers were missing or the total was prorated")] = UNSET
    risk: Annotated[RiskAnswer | UnsetType, Meta(description="Present when a risk flag was raised")] = UNSET


class ErasureResult(msgspec.Struct, kw_only=True):
    """The erasure as recorded: the client's data key is destroyed unless a legal hold blocked it."""

    client_id: Annotated[UUID, Meta(description="The client erased")]
    request_id: Annotated[UUID, Meta(description="The erasure request (in the signed erasure ledger)")]
    key_destroyed: Annotated[bool, Meta(description="Whether the data key is gone")]
    duplicate: Annotated[bool, Meta(description="True when this erasure had been recorded before")]


COMMAND_EXAMPLE = {"command_id": "0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b11",
                   "stream_id": "goal-0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b12", "version": 1,
                   "events": [{"event_id": str(_EVENT_ID), "type": "goal.proposed", "version": 1,
                               "recorded_at": "2026-03-02T09:30:00.123456+00:00"}],
                   "created": {"goal_id": "0190f0a2-7c1e-7b3a-9e55-3f7d2a1c4b12"}}
