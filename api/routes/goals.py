"""Goals: the collaborative lifecycle, what surrounds a goal, and its current view."""

# No ``from __future__ import annotations``: the route factory sets real types on handlers.
import enum
from typing import Any
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post

from alliance.api.access import authorize_client, record_access
from alliance.api.auth import Principal
from alliance.api.commands import CommandResult, body_for, build, result_response
from alliance.api.input_limits import BoundedBody, Statement
from alliance.api.routes.common import if_match, run_command, visible_client, visible_goal
from alliance.api.schemas import GoalView
from alliance.api.state import AppServices, now
from alliance.core import goal as g
from alliance.core.errors import ValidationError
from alliance.core.goal import fhir_lifecycle_status
from alliance.core.projections.plan import render_goal

RECEIPT_EVENT_TYPES = frozenset({"goal.agreed", "goal.activated", "goal.change_accepted", "consent.granted",
                                 "consent.withdrawn"})


async def _receipts(svc: AppServices, outcome: Any) -> list[dict[str, Any]]:
    issue = getattr(svc, "issue_receipts", None)
    if issue is None:
        return []
    return await issue([e for e in outcome.events if e.type in RECEIPT_EVENT_TYPES])  # type: ignore[no-any-return]


def goal_route(path: str, command: type[g.GoalCommand], *, operation_id: str, summary: str,
               generated: tuple[str, ...] = (), from_path: tuple[str, ...] = (), description: str | None = None
               ) -> Any:
    """A POST route running one goal command (Idempotency-Key, If-Match, receipts)."""
    body_type = body_for(command, generated=generated, exclude=from_path)

    async def handler(request: Request, goal_id: UUID, data: Any, principal: Principal, svc: AppServices,
                      **path: Any) -> Response:
        async def work(command_id: UUID) -> Response:
            goal, _client = await visible_goal(svc, principal, goal_id)
            cmd = build(command, data, principal, command_id, generated=generated, goal_id=goal_id,
                        client_id=goal.state.client_id, **{k: path[k] for k in from_path})
            outcome = await svc.handler.handle_goal(cmd, if_match=if_match(request), just_loaded=True)
            created = {f: getattr(cmd, f) for f in generated}
            return result_response(cmd, outcome, created=created, receipts=await _receipts(svc, outcome),
                                   headers={"ETag": f'"{outcome.version}"'})

        return await run_command(request, svc, principal, work)

    annotations: dict[str, Any] = {"request": Request, "goal_id": UUID, "data": body_type,
                                   "principal": Principal, "svc": AppServices, "return": Response[CommandResult]}
    params = [f"{name}: UUID" for name in from_path]
    if params:  # path parameters beyond goal_id need real parameters for Litestar to bind them
        namespace: dict[str, Any] = {"_impl": handler, "UUID": UUID}
        args = ", ".join(["request", "goal_id", "data", "principal", "svc", *from_path])
        exec(f"async def routed({args}):\n    return await _impl(request, goal_id, data, principal, svc, "
             + ", ".join(f"{p}={p}" for p in from_path) + ")", namespace)
        routed = namespace["routed"]
        annotations.update({name: UUID for name in from_path})
    else:
        async def routed(request, goal_id, data, principal, svc):  # type: ignore[no-untyped-def]
            return await handler(request, goal_id, data, principal, svc)
    routed.__annotations__ = annotations
    routed.__name__ = operation_id
    routed.__qualname__ = operation_id
    routed.__module__ = __name__
    return post(path, operation_id=operation_id, summary=summary, description=description or command.__doc__,
                tags=["goals"], status_code=201)(routed)


ProposeBody = body_for(g.ProposeGoal, generated=("goal_id",), exclude=())


@post("/clients/{client_id:uuid}/goals", operation_id="proposeGoal", tags=["goals"], status_code=201,
      summary="Propose a goal (client in their own words, or clinician)")
async def propose_goal(request: Request, client_id: UUID, data: ProposeBody,  # type: ignore[valid-type]
                       principal: Principal, svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response:
        await visible_client(svc, principal, client_id)
        cmd = build(g.ProposeGoal, data, principal, command_id, generated=("goal_id",), client_id=client_id)
        outcome = await svc.handler.handle_goal(cmd, just_loaded=True)
        return result_response(cmd, outcome, created={"goal_id": cmd.goal_id},
                               headers={"Location": f"/goals/{cmd.goal_id}", "ETag": f'"{outcome.version}"'})

    return await run_command(request, svc, principal, work)


@get("/goals/{goal_id:uuid}", operation_id="getGoal", tags=["goals"],
     summary="A goal as it stands now; ETag is its stream version (send it back in If-Match)")
async def get_goal(request: Request, goal_id: UUID, principal: Principal, svc: AppServices) -> Response[GoalView]:
    goal, client = await visible_goal(svc, principal, goal_id)
    authorize_client(principal, client, "goal", now=now())
    await record_access(svc.pool, principal, client.client_id, method="GET", route="/goals/{goal_id}", status=200)
    view = render_goal(goal.state, now().date())
    view["fhir_lifecycle_status"] = fhir_lifecycle_status(goal.state)
    view["stream_version"] = goal.version
    return Response(msgspec.json.encode(view), media_type="application/json",
                    headers={"ETag": f'"{goal.version}"', "Cache-Control": "no-store"})


class StatusAction(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    ACHIEVED = "achieved"
    NOT_ACHIEVED = "not_achieved"
    DISCONTINUED = "discontinued"
    MAINTENANCE = "maintenance"
    ENTERED_IN_ERROR = "entered_in_error"


class StatusBody(BoundedBody, kw_only=True, frozen=True, forbid_unknown_fields=True):
    action: StatusAction
    reason: Statement | None = None


@post("/goals/{goal_id:uuid}/status", operation_id="changeGoalStatus", tags=["goals"], status_code=201,
      summary="Pause, resume, close (achieved / not achieved / discontinued), maintenance or entered-in-error")
async def change_status(request: Request, goal_id: UUID, data: StatusBody, principal: Principal,
                        svc: AppServices) -> Response[CommandResult]:
    async def work(command_id: UUID) -> Response:
        goal, _ = await visible_goal(svc, principal, goal_id)
        common: dict[str, Any] = {"goal_id": goal_id, "client_id": goal.state.client_id}
        cmd: Any
        match data.action:
            case StatusAction.PAUSE:
                cmd = build(g.PauseGoal, None, principal, command_id, reason=data.reason, **common)
            case StatusAction.RESUME:
                cmd = build(g.ResumeGoal, None, principal, command_id, **common)
            case StatusAction.MAINTENANCE:
                cmd = build(g.StartMaintenance, None, principal, command_id, reason=data.reason, **common)
            case StatusAction.ENTERED_IN_ERROR:
                if not data.reason:
                    raise ValidationError("say why the goal was entered in error", code="reason_required",
                                          field="reason")
                cmd = build(g.MarkGoalInError, None, principal, command_id, reason=data.reason, **common)
            case _:
                cmd = build(g.CloseGoal, None, principal, command_id, outcome=str(data.action),
                            reason=data.reason, **common)
        outcome = await svc.handler.handle_goal(cmd, if_match=if_match(request), just_loaded=True)
        return result_response(cmd, outcome, headers={"ETag": f'"{outcome.version}"'})

    return await run_command(request, svc, principal, work)


GOAL_ROUTES = [
    propose_goal, get_goal, change_status,
    goal_route("/goals/{goal_id:uuid}/restatement", g.RestateGoal, operation_id="restateGoal",
               summary="The client restates the goal in their own words (a new version)"),
    goal_route("/goals/{goal_id:uuid}/reflections", g.ReflectGoal, operation_id="reflectGoal",
               summary="The clinician reflects the goal back"),
    goal_route("/goals/{goal_id:uuid}/revisions", g.ReviseGoal, operation_id="reviseGoal",
               summary="Either party revises the goal (a new version; earlier agreements no longer count)"),
    goal_route("/goals/{goal_id:uuid}/agreements", g.AgreeGoal, operation_id="agreeGoal",
               summary="Agree to a specific version (active once client and clinician agreed to the same one)"),
    goal_route("/goals/{goal_id:uuid}/decline", g.DeclineGoal, operation_id="declineGoal",
               summary="Decline a proposed goal"),
    goal_route("/goals/{goal_id:uuid}/withdrawal", g.WithdrawGoal, operation_id="withdrawGoal",
               summary="Withdraw a proposal"),
    goal_route("/goals/{goal_id:uuid}/changes", g.ProposeChange, operation_id="proposeGoalChange",
               generated=("change_id",),
               summary="Propose a change to an active goal (applies only when the other party accepts)"),
    goal_route("/goals/{goal_id:uuid}/changes/{change_id:uuid}/acceptance", g.AcceptChange,
               operation_id="acceptGoalChange", from_path=("change_id",),
               summary="The other party accepts (consents to) a proposed change"),
    goal_route("/goals/{goal_id:uuid}/changes/{change_id:uuid}/decline", g.DeclineChange,
               operation_id="declineGoalChange", from_path=("change_id",),
               summary="The other party declines a proposed change (it stays in history)"),
    goal_route("/goals/{goal_id:uuid}/changes/{change_id:uuid}/withdrawal", g.WithdrawChange,
               operation_id="withdrawGoalChange", from_path=("change_id",),
               summary="The proposer withdraws a change"),
    goal_route("/goals/{goal_id:uuid}/milestones", g.AddMilestone, operation_id="addMilestone",
               generated=("milestone_id",), summary="Add a milestone (an observable step, provisional date)"),
    goal_route("/goals/{goal_id:uuid}/milestones/{milestone_id:uuid}/reached", g.MarkMilestoneReached,
               operation_id="markMilestoneReached", from_path=("milestone_id",), summary="A milestone was reached"),
    goal_route("/goals/{goal_id:uuid}/checkpoints", g.ScheduleCheckpoint, operation_id="scheduleCheckpoint",
               generated=("checkpoint_id",), summary="Schedule a checkpoint (when progress is reviewed)"),
    goal_route("/goals/{goal_id:uuid}/checkpoints/{checkpoint_id:uuid}/cancellation", g.CancelCheckpoint,
               operation_id="cancelCheckpoint", from_path=("checkpoint_id",), summary="Cancel a checkpoint"),
    goal_route("/goals/{goal_id:uuid}/barriers", g.NoteBarrier, operation_id="noteBarrier",
               generated=("barrier_id",), summary="Note what may get in the way"),
    goal_route("/goals/{goal_id:uuid}/contingencies", g.PlanContingency, operation_id="planContingency",
               generated=("contingency_id",), summary="Plan what to do if a barrier shows up"),
    goal_route("/goals/{goal_id:uuid}/resources", g.NoteResource, operation_id="noteResource",
               generated=("resource_id",), summary="Note a personal resource the client already uses"),
    goal_route("/goals/{goal_id:uuid}/interventions", g.LinkIntervention, operation_id="linkIntervention",
               generated=("intervention_id",), summary="Link an intervention chosen for this goal"),
    goal_route("/goals/{goal_id:uuid}/items/removal", g.RemoveGoalItem, operation_id="removeGoalItem",
               summary="Remove a barrier, contingency, resource, intervention or milestone"),
    goal_route("/goals/{goal_id:uuid}/attainment-scale", g.SetAttainmentScale, operation_id="setAttainmentScale",
               summary="Set the goal-attainment scale (levels −2…+2 in the client's words, a weight)"),
    goal_route("/goals/{goal_id:uuid}/measures", g.AttachMeasure, operation_id="attachMeasure",
               summary="Attach an instrument to the goal with a schedule"),
    goal_route("/goals/{goal_id:uuid}/measures/detachment", g.DetachMeasure, operation_id="detachMeasure",
               summary="Detach an instrument"),
    goal_route("/goals/{goal_id:uuid}/reviews", g.RecordReview, operation_id="recordReview",
               generated=("review_id",), summary="Record a review at a checkpoint"),
    goal_route("/goals/{goal_id:uuid}/reviews/{review_id:uuid}/confirmation", g.ConfirmReview,
               operation_id="confirmReview", from_path=("review_id",),
               summary="The client confirms a review: whether they agree, and their own view (needed when not)"),
    goal_route("/goals/{goal_id:uuid}/reviews/{review_id:uuid}/entered-in-error", g.MarkReviewInError,
               operation_id="markReviewInError", from_path=("review_id",),
               summary="Mark a review entered-in-error (it stays in history, leaves the views)"),
]

