"""HTTP routes of the approvals domain (thin: parse, call the service, render)."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import WithJsonSchema

from experiments_service.approvals.schemas import (
    ActivityLogEntry,
    ApprovalPolicyCreate,
    ApprovalPolicyOut,
    ApprovalPolicyUpdate,
    ChangeRequestOut,
    DecisionIn,
    DecisionOut,
)
from experiments_service.approvals.service import (
    ChangeRequestService,
    Decision,
    PolicyService,
    activity_page,
)
from experiments_service.api_docs import PROJECT_READ, PROJECT_WRITE, error_responses
from experiments_service.auth.dependencies import ProjectContext, require_scope
from experiments_service.deps import SessionDep, TransactionalRoute
from experiments_service.errors import NotFound
from experiments_service.pagination import Page, PageDep

router = APIRouter(route_class=TransactionalRoute, tags=["approvals"])

ApprovalRead = Annotated[ProjectContext, Depends(require_scope("approval:read"))]
ApprovalWrite = Annotated[ProjectContext, Depends(require_scope("approval:write"))]
ActivityLogRead = Annotated[ProjectContext, Depends(require_scope("activity_log:read"))]

LIST_ERRORS = error_responses(400, *PROJECT_READ)
READ_ERRORS = error_responses(*PROJECT_READ)
ERRORS = error_responses(*PROJECT_WRITE, e400="Invalid input or a refused decision")

POLICIES = "/api/projects/{project_id}/approval_policies/"
POLICY = POLICIES + "{policy_id}/"
CHANGE_REQUESTS = "/api/projects/{project_id}/change_requests/"
CHANGE_REQUEST = CHANGE_REQUESTS + "{change_request_id}/"


# Ids are UUIDs; a path that is not one answers 404 (not 400), as PostHog does.
UUIDPath = Annotated[str, Path(), WithJsonSchema({"type": "string", "format": "uuid"})]


def _uuid(value: str) -> UUID:
    """Path ids that are not UUIDs name nothing: 404, as PostHog answers."""
    try:
        return UUID(value)
    except ValueError:
        raise NotFound() from None


async def _policy_out(session, policy) -> ApprovalPolicyOut:
    return await PolicyService(session, policy.project_id, None).render(policy)


# --- approval policies --------------------------------------------------------------------------


@router.get(POLICIES, response_model=Page[ApprovalPolicyOut], responses=LIST_ERRORS, summary="List approval policies")
async def list_approval_policies(
    context: ApprovalRead,
    session: SessionDep,
    page: PageDep,
    action_key: str | None = None,
    enabled: bool | None = None,
):
    """List the project's approval policies."""
    service = PolicyService(session, context.project_id, context.user)
    results, total = await service.page(page, action_key=action_key, enabled=enabled)
    return page.envelope(results, total)


@router.post(
    POLICIES, response_model=ApprovalPolicyOut, status_code=201, responses=ERRORS, summary="Create an approval policy"
)
async def create_approval_policy(body: ApprovalPolicyCreate, context: ApprovalWrite, session: SessionDep):
    """Create the approval policy of one flag action (one policy per action)."""
    policy = await PolicyService(session, context.project_id, context.user).create(body.model_dump())
    return await _policy_out(session, policy)


@router.get(POLICY, response_model=ApprovalPolicyOut, responses=READ_ERRORS, summary="Retrieve an approval policy")
async def retrieve_approval_policy(policy_id: UUIDPath, context: ApprovalRead, session: SessionDep):
    """Retrieve one approval policy."""
    policy = await PolicyService(session, context.project_id, context.user).get(_uuid(policy_id))
    return await _policy_out(session, policy)


@router.patch(POLICY, response_model=ApprovalPolicyOut, responses=ERRORS, summary="Update an approval policy")
async def update_approval_policy(
    policy_id: UUIDPath, body: ApprovalPolicyUpdate, context: ApprovalWrite, session: SessionDep
):
    """Change an approval policy (only the fields sent)."""
    service = PolicyService(session, context.project_id, context.user)
    policy = await service.update(await service.get(_uuid(policy_id)), body.model_dump(exclude_unset=True))
    return await _policy_out(session, policy)


@router.delete(
    POLICY, status_code=204, response_class=Response, responses=ERRORS, summary="Delete an approval policy"
)
async def delete_approval_policy(policy_id: UUIDPath, context: ApprovalWrite, session: SessionDep):
    """Delete an approval policy (its change requests keep their policy snapshot)."""
    service = PolicyService(session, context.project_id, context.user)
    await service.delete(await service.get(_uuid(policy_id)))
    return Response(status_code=204)


# --- change requests ----------------------------------------------------------------------------


@router.get(
    CHANGE_REQUESTS, response_model=Page[ChangeRequestOut], responses=LIST_ERRORS, summary="List change requests"
)
async def list_change_requests(
    context: ApprovalRead,
    session: SessionDep,
    page: PageDep,
    state: Annotated[str | None, Query(description="One state or several, comma-separated.")] = None,
    action_key: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    requester: int | None = None,
):
    """List change requests, newest first (pending ones past their expiry show as expired)."""
    results, total = await ChangeRequestService(session, context.project_id, context.user).page(
        page,
        states=[part.strip() for part in state.split(",") if part.strip()] if state else None,
        action_key=action_key,
        resource_type=resource_type,
        resource_id=resource_id,
        requester_id=requester,
    )
    return page.envelope(results, total)


@router.get(CHANGE_REQUEST, response_model=ChangeRequestOut, responses=READ_ERRORS, summary="Retrieve a change request")
async def retrieve_change_request(change_request_id: UUIDPath, context: ApprovalRead, session: SessionDep):
    """Retrieve one change request with its votes."""
    service = ChangeRequestService(session, context.project_id, context.user)
    [rendered] = await service.render([await service.get(_uuid(change_request_id))])
    return rendered


async def _decided(service: ChangeRequestService, decision: Decision) -> DecisionOut:
    [rendered] = await service.render([decision.request])
    return DecisionOut(
        status=decision.status, message=decision.message, change_request=rendered, result=decision.result
    )


@router.post(
    CHANGE_REQUEST + "approve/", response_model=DecisionOut, responses=ERRORS, summary="Approve a change request"
)
async def approve_change_request(
    change_request_id: UUIDPath, context: ApprovalWrite, session: SessionDep, body: DecisionIn | None = None
):
    """Approve; reaching the quorum applies the stored change to the flag at once."""
    service = ChangeRequestService(session, context.project_id, context.user)
    return await _decided(service, await service.approve(_uuid(change_request_id), (body or DecisionIn()).text))


@router.post(
    CHANGE_REQUEST + "reject/", response_model=DecisionOut, responses=ERRORS, summary="Reject a change request"
)
async def reject_change_request(
    change_request_id: UUIDPath, context: ApprovalWrite, session: SessionDep, body: DecisionIn | None = None
):
    """Reject with a reason (`reason` or `comment`); the change is never applied."""
    service = ChangeRequestService(session, context.project_id, context.user)
    return await _decided(service, await service.reject(_uuid(change_request_id), (body or DecisionIn()).text))


@router.post(
    CHANGE_REQUEST + "cancel/", response_model=DecisionOut, responses=ERRORS, summary="Cancel a change request"
)
async def cancel_change_request(
    change_request_id: UUIDPath, context: ApprovalWrite, session: SessionDep, body: DecisionIn | None = None
):
    """The requester withdraws a pending change request (it ends `rejected`, noted as cancelled)."""
    service = ChangeRequestService(session, context.project_id, context.user)
    return await _decided(service, await service.cancel(_uuid(change_request_id), (body or DecisionIn()).text))


# --- activity log -------------------------------------------------------------------------------


@router.get(
    "/api/projects/{project_id}/activity_log/",
    response_model=Page[ActivityLogEntry],
    responses=LIST_ERRORS,
    summary="The project's activity log",
)
async def list_activity_log(
    context: ActivityLogRead,
    session: SessionDep,
    page: PageDep,
    scope: str | None = None,
    item_id: str | None = None,
    user: int | None = None,
):
    """The project's activity log, newest first."""
    results, total = await activity_page(session, context.project_id, page, scope=scope, item_id=item_id, user_id=user)
    return page.envelope(results, total)
