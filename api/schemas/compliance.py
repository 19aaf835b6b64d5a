"""Exports, FHIR, verification, the access log and the signing keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from alliance.api.schemas.commands import Signature
from alliance.api.schemas.history import HistoryView
from alliance.api.schemas.plan import PlanView
from alliance.api.schemas.progress import ProgressView


class StreamHead(msgspec.Struct, kw_only=True):
    """A stream's last version and chain hash."""

    version: Annotated[int, Meta(description="The stream's version")]
    head_hash: Annotated[str, Meta(description="Its head's chain hash (hex)")]


class ExportedEvent(msgspec.Struct, kw_only=True):
    """An event exactly as stored: ciphertexts in base64, hashes in hex (verify offline)."""

    event_id: Annotated[UUID, Meta(description="The event")]
    stream_id: Annotated[str, Meta(description="Its stream")]
    version: Annotated[int, Meta(description="Its version in the stream")]
    position: Annotated[int, Meta(description="Its position in the store")]
    tx_id: Annotated[int, Meta(description="The transaction that wrote it")]
    type: Annotated[str, Meta(description="Its type")]
    schema_version: Annotated[int, Meta(description="Its payload's schema version")]
    tenant_id: Annotated[UUID, Meta(description="The clinic")]
    subject_id: Annotated[UUID, Meta(description="The client")]
    actor_id: Annotated[UUID, Meta(description="Who acted")]
    actor_role: Annotated[str, Meta(description="Their role")]
    occurred_at: Annotated[datetime, Meta(description="When it happened")]
    recorded_at: Annotated[datetime, Meta(description="When it was recorded")]
    correlation_id: Annotated[UUID | None, Meta(description="Correlation id")]
    causation_id: Annotated[UUID | None, Meta(description="Causation id")]
    key_id: Annotated[UUID | None, Meta(description="The data key that sealed its personal fields")]
    hash_scheme: Annotated[int, Meta(description="How its hash is computed")]
    payload_b64: Annotated[str | None, Meta(description="The stored payload (personal fields blanked)")]
    secret_b64: Annotated[str | None, Meta(description="The sealed personal fields")]
    digest: Annotated[str, Meta(description="Content digest (hex)")]
    hash: Annotated[str, Meta(description="Chain hash (hex)")]
    data: Annotated[dict[str, Any] | UnsetType, Meta(
        description="The client's own export: the decoded payload (open-ended, per event type)")] = UNSET


class ExportCheck(msgspec.Struct, kw_only=True):
    """The server's own check of what it exported."""

    ok: Annotated[bool, Meta(description="Every chain whole")]
    events_checked: Annotated[int, Meta(description="Events checked")]
    streams_checked: Annotated[int, Meta(description="Streams checked")]
    problems: Annotated[list[dict[str, Any]], Meta(description="What was found (`code`, `message`, where)")]


class HistoryExport(msgspec.Struct, kw_only=True):
    """Signed export of the client's events as stored (`alliance verify --export FILE`)."""

    kind: Annotated[str, Meta(description="`alliance.history_export`")]
    format: Annotated[int, Meta(description="Format version (1)")]
    client_id: Annotated[UUID, Meta(description="The client")]
    tenant_id: Annotated[UUID | None, Meta(description="The clinic")]
    exported_at: Annotated[datetime, Meta(description="When")]
    hash_scheme: Annotated[int, Meta(description="Hash scheme (1)")]
    streams: Annotated[dict[str, StreamHead], Meta(description="Each stream's head, by stream id")]
    events: Annotated[list[ExportedEvent], Meta(description="Every event of the client's streams")]
    verification: Annotated[ExportCheck, Meta(description="The server's check")]
    signature: Annotated[Signature, Meta(description="The server's signature")]


class ExportViews(msgspec.Struct, kw_only=True):
    """The views at the moment of export."""

    plan: Annotated[PlanView | None, Meta(description="The plan")]
    progress: Annotated[ProgressView | None, Meta(description="Progress")]
    history: Annotated[HistoryView | None, Meta(description="Decision history")]


class MyDataExport(HistoryExport, kw_only=True):
    """Everything held about the client, readable: the signed export with decoded payloads, and the views."""

    views: Annotated[ExportViews, Meta(description="Plan, progress and history now")]


class FhirEntry(msgspec.Struct, kw_only=True):
    """One resource of the Bundle."""

    fullUrl: Annotated[str, Meta(description="The resource's URL (`urn:alliance:…/Goal/<id>`)")]
    resource: Annotated[dict[str, Any], Meta(
        description="A FHIR resource: Patient, CarePlan, Goal, Consent, Questionnaire(Response), Observation, "
                    "Provenance, Practitioner, RelatedPerson (open-ended: see hl7.org/fhir)")]


class FhirBundle(msgspec.Struct, kw_only=True):
    """The client's record as a FHIR `collection` Bundle (R5, or R4B with `?version=R4B`)."""

    resourceType: Annotated[str, Meta(description="`Bundle`")]
    id: Annotated[str, Meta(description="The bundle's id")]
    meta: Annotated[dict[str, Any], Meta(description="Tags the FHIR version (`urn:alliance:fhir-version`)")]
    type: Annotated[str, Meta(description="`collection`")]
    timestamp: Annotated[datetime, Meta(description="When it was assembled")]
    entry: Annotated[list[FhirEntry], Meta(description="The resources")]


class VerificationProblem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One problem a verification found."""

    code: Annotated[str, Meta(description="Stable code (e.g. `signature_invalid`, `event_hash_mismatch`)")]
    message: Annotated[str, Meta(description="In words")]
    stream_id: Annotated[str | None, Meta(description="The stream at fault")] = None
    version: Annotated[int | None, Meta(description="The version at fault")] = None
    position: Annotated[int | None, Meta(description="The position at fault")] = None
    file: Annotated[str | None, Meta(description="The file at fault")] = None


class VerificationResult(msgspec.Struct, kw_only=True):
    """What a receipt check found."""

    kind: Annotated[str, Meta(description="`receipt`")]
    ok: Annotated[bool, Meta(description="No problems")]
    problems: Annotated[list[VerificationProblem], Meta(description="The problems found")]
    details: Annotated[dict[str, Any], Meta(description="Facts about what was checked (open-ended)")]


class AccessEntry(msgspec.Struct, kw_only=True):
    """One read of a client's records by staff."""

    at: Annotated[datetime, Meta(description="When")]
    actor_id: Annotated[UUID, Meta(description="Who")]
    actor_role: Annotated[str, Meta(description="Their role")]
    client_id: Annotated[UUID, Meta(description="Whose records")]
    method: Annotated[str, Meta(description="HTTP method")]
    route: Annotated[str, Meta(description="Route template")]
    status: Annotated[int, Meta(description="The answer's status")]


class AccessLog(msgspec.Struct, kw_only=True):
    """Who read a client's records, when."""

    entries: Annotated[list[AccessEntry], Meta(description="Oldest first")]


class StoreCheck(msgspec.Struct, kw_only=True):
    """The last full check of the store, as this clinic may see it."""

    ok: Annotated[bool, Meta(description="Every one of this clinic's streams was checked and found whole")]
    checked_at: Annotated[datetime | None, Meta(description="When")]
    complete: Annotated[bool, Meta(description="The check reached all of them")]
    first_break: Annotated[dict[str, Any] | None, Meta(
        description="The first break in this clinic's streams (`stream_id`, `version`, `reason`)")]


class VerificationReport(msgspec.Struct, kw_only=True):
    """The last signed anchor for this clinic's streams (`{"status": "never_checked"}` before the first)."""

    status: Annotated[str | UnsetType, Meta(description="`never_checked` when no anchor exists yet")] = UNSET
    anchored_at: Annotated[datetime | UnsetType | None, Meta(description="When the anchor was written")] = UNSET
    streams: Annotated[int | UnsetType, Meta(description="This clinic's streams in it")] = UNSET
    events: Annotated[int | UnsetType, Meta(description="Their events")] = UNSET
    heads_digest: Annotated[str | UnsetType, Meta(description="sha256 of their heads")] = UNSET
    signature: Annotated[Signature | UnsetType | None, Meta(description="The anchor's signature")] = UNSET
    store_check: Annotated[StoreCheck | UnsetType | None, Meta(description="The last full check")] = UNSET


class PublicKey(msgspec.Struct, kw_only=True):
    """An Ed25519 public key (JWK, RFC 8037)."""

    kty: Annotated[str, Meta(description="`OKP`")]
    crv: Annotated[str, Meta(description="`Ed25519`")]
    x: Annotated[str, Meta(description="The key, base64url")]
    kid: Annotated[str, Meta(description="Key id: first 16 hex digits of sha256 over the raw key")]
    alg: Annotated[str, Meta(description="`EdDSA`")]
    use: Annotated[str, Meta(description="`sig`")]
    created_at: Annotated[datetime | UnsetType, Meta(description="When it was made")] = UNSET
    retired_at: Annotated[datetime | UnsetType, Meta(description="When it stopped signing")] = UNSET


class KeySet(msgspec.Struct, kw_only=True):
    """Every public key ever used to sign receipts, exports and anchors (JWKS)."""

    keys: Annotated[list[PublicKey], Meta(description="Oldest first")]
