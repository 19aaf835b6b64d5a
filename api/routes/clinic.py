"""Clinic set-up: staff, enrolment, caseloads, care teams, discharge."""

import base64
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post
from litestar.params import QueryParameter

from alliance.api.auth import Principal, require_role
from alliance.api.commands import body_for, build, result_response
from alliance.api.routes.clients import client_route
from alliance.api.routes.clinic_settings import get_clinic_settings
from alliance.api.routes.common import run_command, visible_client
from alliance.api.schemas import Caseload, CommandResult, StaffList
from alliance.api.state import AppServices
from alliance.core import client as c
from alliance.core import clinic as k
from alliance.core.errors import Forbidden, ValidationError
from alliance.core.identity import Role
from alliance.core.projections import queries
from alliance.core.projections.plan import measures_due

# No staff id: one is made from the command id (so a retry with the same Idempotency-Key makes the same one).
ActivateBody = body_for(k.ActivateStaff, generated=("staff_id",))


@post("/staff", operation_id="activateStaff", tags=["clinic"], status_code=201,
      summary="Activate a staff member (clinician, supervisor, auditor, admin) in this clinic")
async def activate_staff(request: Request, data: ActivateBody, principal: Principal,  # type: ignore[valid-type]
                         svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response:
        cmd = build(k.ActivateStaff, data, principal, command_id, generated=("staff_id",))
        return result_response(cmd, await svc.handler.handle_clinic(cmd), created={"staff_id": cmd.staff_id})

    return await run_command(request, svc, principal, work)


@post("/staff/{staff_id:uuid}/deactivation", operation_id="deactivateStaff", tags=["clinic"], status_code=201,
      summary="Deactivate a staff member (their tokens stop working at once)")
async def deactivate_staff(request: Request, staff_id: UUID, principal: Principal, svc: AppServices
                           ) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response:
        cmd = build(k.DeactivateStaff, None, principal, command_id, staff_id=staff_id)
        return result_response(cmd, await svc.handler.handle_clinic(cmd))

    return await run_command(request, svc, principal, work)


@get("/staff", operation_id="listStaff", tags=["clinic"], summary="Active staff of this clinic (admin)")
async def list_staff(principal: Principal, svc: AppServices) -> Response[StaffList]:
    require_role(principal, Role.ADMIN, Role.SUPERVISOR, action="listing staff")
    clinic = await svc.clinic(principal.tenant_id)
    staff = [{"staff_id": str(sid), "role": str(role)} for sid, role in sorted(clinic.staff.items(), key=str)]
    return Response(msgspec.json.encode({"staff": staff}), media_type="application/json")


CrisisBody = body_for(k.SetCrisisInformation)


@post("/clinic/crisis-information", operation_id="setCrisisInformation", tags=["clinic"], status_code=201,
      summary="The clinic's crisis information, shown to clients with risk flags and in their plan")
async def set_crisis(request: Request, data: CrisisBody, principal: Principal,  # type: ignore[valid-type]
                     svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response:
        cmd = build(k.SetCrisisInformation, data, principal, command_id)
        return result_response(cmd, await svc.handler.handle_clinic(cmd))

    return await run_command(request, svc, principal, work)


ContactBody = body_for(k.SetStaffContact, exclude=("staff_id",))


@post("/staff/{staff_id:uuid}/contact", operation_id="setStaffContact", tags=["clinic"], status_code=201,
      summary="A staff member's work email for notifications (sealed like other personal data; null clears it)")
async def set_staff_contact(request: Request, staff_id: UUID, data: ContactBody,  # type: ignore[valid-type]
                            principal: Principal, svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response:
        cmd = build(k.SetStaffContact, data, principal, command_id, staff_id=staff_id)
        return result_response(cmd, await svc.handler.handle_clinic(cmd))

    return await run_command(request, svc, principal, work)


EscalationBody = body_for(k.SetEscalationPolicy)


@post("/clinic/escalation-policy", operation_id="setEscalationPolicy", tags=["clinic"], status_code=201,
      summary="When an unacknowledged risk flag escalates (hours, default 24, at most 72) and the duty clinician")
async def set_escalation_policy(request: Request, data: EscalationBody,  # type: ignore[valid-type]
                                principal: Principal, svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response:
        cmd = build(k.SetEscalationPolicy, data, principal, command_id)
        return result_response(cmd, await svc.handler.handle_clinic(cmd))

    return await run_command(request, svc, principal, work)


AlertPolicyBody = body_for(k.SetAlertPolicy)


@post("/clinic/alert-policy", operation_id="setAlertPolicy", tags=["clinic"], status_code=201,
      summary="When a series with no reliable improvement raises a not-on-track alert: after N administrations "
      "(default 8, 2 to 100) or W weeks from baseline (optional, at most 104), whichever comes first")
async def set_alert_policy(request: Request, data: AlertPolicyBody,  # type: ignore[valid-type]
                           principal: Principal, svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response:
        cmd = build(k.SetAlertPolicy, data, principal, command_id)
        return result_response(cmd, await svc.handler.handle_clinic(cmd))

    return await run_command(request, svc, principal, work)


EnrolBody = body_for(c.EnrollClient, generated=("client_id", "episode_id"))


@post("/clients", operation_id="enrolClient", tags=["clinic"], status_code=201,
      summary="Enrol a client in this clinic with a primary clinician (opens a care episode)")
async def enrol_client(request: Request, data: EnrolBody, principal: Principal,  # type: ignore[valid-type]
                       svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response:
        cmd = build(c.EnrollClient, data, principal, command_id, generated=("client_id", "episode_id"))
        outcome = await svc.handler.handle_client(cmd.client_id, cmd)
        return result_response(cmd, outcome, created={"client_id": cmd.client_id, "episode_id": cmd.episode_id},
                               headers={"Location": f"/clients/{cmd.client_id}/plan"})

    return await run_command(request, svc, principal, work)


def _cursor(client_id: UUID) -> str:
    return base64.urlsafe_b64encode(client_id.bytes).decode().rstrip("=")


def _after(cursor: str | None) -> UUID:
    if not cursor:
        return UUID(int=0)
    try:
        return UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise ValidationError("cursor not understood", code="invalid_cursor", field="cursor") from None


@get("/clients", operation_id="listClients", tags=["clinic"],
     summary="A clinician's caseload (clients whose care team they are on); cursor-paginated")
async def list_clients(principal: Principal, svc: AppServices,
                       cursor: Annotated[str | None, QueryParameter(name="cursor")] = None,
                       limit: Annotated[int, QueryParameter(name="limit", ge=1, le=200)] = 50,
                       discharged: Annotated[bool | None, QueryParameter(name="discharged")] = None,
                       open_risk: Annotated[bool | None, QueryParameter(name="open_risk")] = None,
                       open_alerts: Annotated[bool | None, QueryParameter(
                           name="open_alerts", description="only clients with (true) or without (false) an "
                           "unacknowledged not-on-track alert")] = None,
                       measures: Annotated[Literal["due", "overdue"] | None, QueryParameter(
                           name="measures", description="only clients with a measure due (its day, within the "
                           "grace) or overdue now, by the app's clock")] = None) -> Response[Caseload]:
    if principal.role not in (Role.CLINICIAN, Role.SUPERVISOR, Role.ADMIN):
        raise Forbidden("caseloads are for clinicians, supervisors and admins", code="role_not_allowed")
    after = _after(cursor)
    moment = svc.clock.now()
    items: list[dict[str, Any]] = []
    next_cursor: str | None = None
    while len(items) < limit:
        # The plans are sealed with each client's data key; one erased moments ago (key gone,
        # not re-folded yet) reads as None and is left out, as erased clients are for staff.
        rows = await queries.plan_documents(svc.pool, keys=svc.store.keys, tenant_id=principal.tenant_id,
                                            after=after)
        if not rows:
            break
        for client_id, doc, updated_at in rows:
            after = client_id
            if doc is None:
                continue
            mine = principal.role is Role.ADMIN or principal.id == doc.primary_clinician \
                or principal.id in doc.care_team
            if not mine or (doc.erased and principal.role is not Role.ADMIN):
                continue
            if discharged is not None and doc.discharged != discharged:
                continue
            open_flags = sum(1 for f in doc.risk_flags.values() if not f.acknowledged)
            if open_risk is not None and (open_flags > 0) != open_risk:
                continue
            alerts = [a for a in doc.alerts.values() if not a.acknowledged]
            if open_alerts is not None and bool(alerts) != open_alerts:
                continue
            due = measures_due(doc, moment)  # computed at the app's clock, never stored
            if measures is not None and measures not in due["states"]:
                continue
            primary = str(doc.primary_clinician) if doc.primary_clinician else None  # never the word "None"
            items.append({"client_id": str(doc.client_id), "primary_clinician": primary,
                          "discharged": doc.discharged, "open_risk_flags": open_flags,
                          # each open alert's rule and instrument (the plan and progress show the data)
                          "open_alerts": [{"alert_id": str(a.alert_id), "rule": a.rule,
                                           "instrument_id": a.instrument_id, "raised_at": a.raised_at}
                                          for a in alerts],
                          "goals": len(doc.goals), "next_due": due["next_due"],
                          "measures_due": "due" in due["states"], "measures_overdue": "overdue" in due["states"],
                          # PlanDoc has no time of its own: the row's last projection time
                          "last_activity": updated_at.isoformat()})
            if len(items) == limit:
                next_cursor = _cursor(doc.client_id)
                break
    return Response(msgspec.json.encode({"items": items, "next_cursor": next_cursor}),
                    media_type="application/json", headers={"Cache-Control": "no-store"})


RemoveMemberBody = body_for(c.RemoveCareTeamMember, exclude=("member_id",))


@post("/clients/{client_id:uuid}/care-team/{member_id:uuid}/removal", operation_id="removeCareTeamMember",
      tags=["clinic"], status_code=201, summary="Remove a member from the care team")
async def remove_member(request: Request, client_id: UUID, member_id: UUID,
                        data: RemoveMemberBody, principal: Principal,  # type: ignore[valid-type]
                        svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response:
        await visible_client(svc, principal, client_id)
        cmd = build(c.RemoveCareTeamMember, data, principal, command_id, member_id=member_id)
        return result_response(cmd, await svc.handler.handle_client(client_id, cmd, just_loaded=True))

    return await run_command(request, svc, principal, work)


CLINIC_ROUTES = [
    activate_staff, deactivate_staff, list_staff, set_crisis, set_staff_contact, set_escalation_policy,
    set_alert_policy, get_clinic_settings, enrol_client, list_clients, remove_member,
    client_route("/clients/{client_id:uuid}/care-team", c.AddCareTeamMember, operation_id="addCareTeamMember",
                 tags=("clinic",), summary="Add a clinician or supervisor to the client's care team"),
    client_route("/clients/{client_id:uuid}/primary-clinician", c.ChangePrimaryClinician,
                 operation_id="changePrimaryClinician", tags=("clinic",),
                 summary="Change the client's primary clinician"),
    client_route("/clients/{client_id:uuid}/discharge", c.DischargeClient, operation_id="dischargeClient",
                 tags=("clinic",), summary="Discharge the client (self-monitoring may continue)"),
]
