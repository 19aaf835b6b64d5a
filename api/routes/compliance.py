"""Compliance: exports, erasure, receipts, FHIR, the access log, verification, public keys."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post
from litestar.params import QueryParameter

from alliance.api.auth import Principal, require_role
from alliance.api.input_limits import BoundedBody, Statement
from alliance.api.routes.common import readable_client, run_command, visible_client
from alliance.api.schemas import (
    AccessLog,
    ErasureResult,
    FhirBundle,
    HistoryExport,
    KeySet,
    MyDataExport,
    VerificationReport,
    VerificationResult,
)
from alliance.api.state import AppServices, now
from alliance.core.authority import require_not_auditor
from alliance.core.compliance.anchors import heads_digest, latest_anchor
from alliance.core.compliance.erasure_flow import erase_client
from alliance.core.compliance.export import build_export
from alliance.core.compliance.fhir import build_bundle
from alliance.core.compliance.receipts import verify_receipt
from alliance.core.compliance.report import VerifyResult
from alliance.core.compliance.signing import document_signature_problem
from alliance.core.errors import ValidationError
from alliance.core.identity import Role
from alliance.core.projections import asof


def _json(value: Any, status: int = 200, media_type: str = "application/json") -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type=media_type,
                    headers={"Cache-Control": "no-store"})


@get("/clients/{client_id:uuid}/history/export", operation_id="exportHistory", tags=["compliance"],
     summary="Signed export of the client's events as stored, chain heads and a verification result "
             "(verify offline with `alliance verify --export FILE`)")
async def export_history(request: Request, client_id: UUID, principal: Principal, svc: AppServices
                         ) -> Response[HistoryExport]:
    await readable_client(svc, request, principal, client_id, "export")  # 404 before 403: existence never leaks
    require_role(principal, Role.AUDITOR, Role.CLINICIAN, Role.SUPERVISOR, action="exporting decision history")
    # Exports tolerate the standby's bounded lag (core/events/replica.py); authorization above read the primary.
    return _json(await svc.runtime.read_stale(
        lambda store: build_export(store, client_id, svc.signer, tenant_id=principal.tenant_id)))


@get("/clients/{client_id:uuid}/export", operation_id="exportMyData", tags=["compliance"],
     summary="Everything we hold about the client, readable (for the client or their proxy)")
async def export_my_data(request: Request, client_id: UUID, principal: Principal, svc: AppServices
                         ) -> Response[MyDataExport]:
    await readable_client(svc, request, principal, client_id, "plan")
    require_role(principal, Role.CLIENT, Role.PROXY, action="the client's own export")
    moment = now()

    async def export(store: Any) -> dict[str, Any]:
        document = await build_export(store, client_id, svc.signer, tenant_id=principal.tenant_id, store=store)
        document["views"] = {
            "plan": await asof.plan_as_of(store, client_id, moment),
            "progress": await asof.progress_as_of(store, client_id, moment, instruments=svc.instruments),
            "history": await asof.history_as_of(store, client_id, moment),
        }
        return document

    return _json(await svc.runtime.read_stale(export))


@get("/clients/{client_id:uuid}/fhir", operation_id="exportFhir", tags=["compliance"],
     media_type="application/fhir+json",
     summary="The client's record as a FHIR Bundle (R5; ?version=R4B for R4B)")
async def export_fhir(request: Request, client_id: UUID, principal: Principal, svc: AppServices,
                      version: Annotated[str, QueryParameter(name="version")] = "R5") -> Response[FhirBundle]:
    if version not in {"R5", "R4B"}:
        raise ValidationError("version is R5 or R4B", code="invalid_fhir_version", field="version")
    await readable_client(svc, request, principal, client_id, "fhir")
    moment = now()

    async def bundle(store: Any) -> dict[str, Any]:
        events = await store.read_subject(client_id, tenant_id=principal.tenant_id)
        plan = await asof.plan_as_of(store, client_id, moment)
        progress = await asof.progress_as_of(store, client_id, moment, instruments=svc.instruments)
        return build_bundle(client_id, events, plan=plan, progress=progress, instruments=svc.instruments,
                            fhir_version=version)  # type: ignore[arg-type]

    return _json(await svc.runtime.read_stale(bundle), media_type="application/fhir+json")


class ErasureBody(BoundedBody, kw_only=True, frozen=True, forbid_unknown_fields=True):
    reason: Statement


@post("/clients/{client_id:uuid}/erasure", operation_id="eraseClient", tags=["compliance"], status_code=201,
      summary="Right to erasure: destroy the client's data key (blocked by a legal hold); recorded")
async def erase(request: Request, client_id: UUID, data: ErasureBody, principal: Principal,
                svc: AppServices) -> Response[ErasureResult]:
    async def work(command_id: UUID) -> Response:
        await visible_client(svc, principal, client_id)
        require_not_auditor(principal.actor)
        require_role(principal, Role.ADMIN, action="erasure")
        outcome = await erase_client(svc.handler, svc.signer, svc.runtime.settings.erasure_ledger_path,
                                     client_id=client_id, tenant_id=principal.tenant_id, actor=principal.actor,
                                     reason=data.reason, command_id=command_id)
        return _json({"client_id": str(client_id), "request_id": str(outcome.request_id),
                      "key_destroyed": outcome.key_destroyed, "duplicate": outcome.duplicate}, status=201)

    return await run_command(request, svc, principal, work)


class ReceiptBody(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: The receipt exactly as it was issued (JSON object).
    receipt: dict[str, Any]


@post("/receipts/verify", operation_id="verifyReceipt", tags=["compliance"],
      summary="Check a receipt: signature, and that the event and its chain are unchanged since", status_code=200)
async def verify_receipt_route(data: ReceiptBody, svc: AppServices) -> Response[VerificationResult]:
    # Anyone may verify a receipt, so the store is consulted only for receipts we signed:
    # a forged one must not become a way to probe which events exist.
    problem = document_signature_problem(data.receipt, svc.signer) if data.receipt.get("kind") else None
    if problem is not None:
        forged = VerifyResult(kind="receipt")
        forged.add(problem, "the receipt's signature does not hold; the store was not consulted")
        return _json(forged.to_dict())
    result = await verify_receipt(data.receipt, svc.pool, svc.signer)
    if "malformed_receipt" in result.codes:
        raise ValidationError("this is not an Alliance receipt", code="malformed_receipt", field="receipt")
    return _json(result.to_dict())


@get("/audit/access", operation_id="accessLog", tags=["audit"],
     summary="Who read a client's records, when (auditors)")
async def access_log(principal: Principal, svc: AppServices,
                     client: Annotated[UUID | None, QueryParameter(name="client")] = None,
                     from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
                     to: Annotated[datetime | None, QueryParameter(name="to")] = None,
                     limit: Annotated[int, QueryParameter(name="limit", ge=1, le=5000)] = 500
                     ) -> Response[AccessLog]:
    require_role(principal, Role.AUDITOR, action="reading the access log")
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT at, actor_id, actor_role, client_id, method, route, status FROM access_log "
            "WHERE tenant_id = $1 AND ($2::uuid IS NULL OR client_id = $2) AND ($3::timestamptz IS NULL OR at >= $3) "
            "AND ($4::timestamptz IS NULL OR at < $4) ORDER BY at, id LIMIT $5",
            principal.tenant_id, client, from_, to, limit)
    return _json({"entries": [{**dict(r), "at": r["at"].isoformat(), "actor_id": str(r["actor_id"]),
                               "client_id": str(r["client_id"])} for r in rows]})


@get("/audit/verify", operation_id="lastVerification", tags=["audit"],
     summary="The last full check of the store, for the auditor's own clinic (from the latest signed anchor)")
async def last_verification(principal: Principal, svc: AppServices) -> Response[VerificationReport]:
    require_role(principal, Role.AUDITOR, action="reading the verification report")
    anchor = latest_anchor(svc.runtime.settings.anchor_path)
    if anchor is None:
        return _json({"status": "never_checked"})
    async with svc.pool.acquire() as conn:
        mine = {r["stream_id"] for r in await conn.fetch("SELECT stream_id FROM streams WHERE tenant_id = $1",
                                                         principal.tenant_id)}
    return _json(clinic_verification(anchor, mine))


def clinic_verification(anchor: dict[str, Any], mine: set[str]) -> dict[str, Any]:
    """The anchor as one clinic may see it: its own streams' count, events and heads digest.

    The anchor covers every clinic; counts of the others (or a global position) would tell
    one clinic how busy the others are, so neither they nor the store-wide totals are shown.
    The full check stops at its first break: a break outside this clinic means this clinic's
    streams were not all checked, which is said without naming the other stream.
    """
    heads = {sid: head for sid, head in (anchor.get("streams") or {}).items() if sid in mine}
    report: dict[str, Any] = {
        "anchored_at": anchor.get("anchored_at") or anchor.get("created_at"),
        "streams": len(heads), "events": sum(int(h["version"]) for h in heads.values()),
        "heads_digest": heads_digest(heads), "signature": anchor.get("signature"),
        "store_check": None}
    check = anchor.get("store_check")
    if check:
        first_break = check.get("first_break")
        ours = first_break is not None and first_break.get("stream_id") in mine
        report["store_check"] = {
            # ok: every one of this clinic's streams was checked and found whole
            "ok": bool(check.get("ok")), "checked_at": check.get("checked_at"),
            # complete: the check reached all of them (False when it stopped at another clinic's break)
            "complete": bool(check.get("ok")) or ours,
            "first_break": ({k: v for k, v in first_break.items() if k != "position"} if ours else None)}
    return report


@get("/.well-known/alliance-keys.json", operation_id="signingKeys", tags=["compliance"],
     media_type="application/jwk-set+json",
     summary="Every public key ever used to sign receipts, exports and anchors (JWKS)")
async def signing_keys(svc: AppServices) -> Response[KeySet]:
    return _json(svc.signer.jwks(), media_type="application/jwk-set+json")


COMPLIANCE_ROUTES = [export_history, export_my_data, export_fhir, erase, verify_receipt_route, access_log,
                     last_verification, signing_keys]
