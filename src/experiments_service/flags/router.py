"""HTTP routes of the flags domain (thin: parse, call the service, render)."""

from fastapi import APIRouter, Query, Request, Response, status

from experiments_service.auth.dependencies import FeatureFlagRead, FeatureFlagWrite
from experiments_service.deps import SessionDep, TransactionalRoute
from experiments_service.errors import CustomBodyError
from experiments_service.flags.api_schemas import (
    FeatureFlagCreate,
    FeatureFlagPage,
    FeatureFlagPatch,
    GroupTypeCreate,
    GroupTypeOut,
)
from experiments_service.flags.api_service import FlagsAPI
from experiments_service.flags.groups import GroupTypes
from experiments_service.flags.schemas import FeatureFlagOut

router = APIRouter(route_class=TransactionalRoute, tags=["flags"])

FLAGS = "/api/projects/{project_id}/feature_flags/"
FLAG = "/api/projects/{project_id}/feature_flags/{flag_id}/"

_ERRORS = {400: {"description": "Invalid input"}, 401: {"description": "Not authenticated"}, 403: {"description": "Missing scope"}}


def _page_url(request: Request, limit: int, offset: int) -> str:
    return str(request.url.include_query_params(limit=limit, offset=offset))


@router.get(FLAGS, response_model=FeatureFlagPage, responses=_ERRORS)
async def list_feature_flags(
    request: Request,
    ctx: FeatureFlagRead,
    session: SessionDep,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    search: str | None = None,
    active: bool | None = None,
) -> FeatureFlagPage:
    """List the project's feature flags (deleted ones excluded), newest first."""
    count, results = await FlagsAPI(session, ctx.project_id, ctx.user).page(
        limit=limit, offset=offset, search=search, active=active
    )
    return FeatureFlagPage(
        count=count,
        next=_page_url(request, limit, offset + limit) if offset + limit < count else None,
        previous=_page_url(request, limit, max(offset - limit, 0)) if offset > 0 else None,
        results=results,
    )


@router.post(FLAGS, response_model=FeatureFlagOut, status_code=status.HTTP_201_CREATED, responses=_ERRORS)
async def create_feature_flag(body: FeatureFlagCreate, ctx: FeatureFlagWrite, session: SessionDep) -> FeatureFlagOut:
    """Create a feature flag."""
    return await FlagsAPI(session, ctx.project_id, ctx.user).create(body)


@router.get(FLAG, response_model=FeatureFlagOut, responses={**_ERRORS, 404: {"description": "Not found"}})
async def retrieve_feature_flag(flag_id: int, ctx: FeatureFlagRead, session: SessionDep) -> FeatureFlagOut:
    """One feature flag (soft-deleted flags stay readable so they can be restored)."""
    api = FlagsAPI(session, ctx.project_id, ctx.user)
    return await api.render_one(await api.get(flag_id))


@router.patch(FLAG, response_model=FeatureFlagOut, responses={**_ERRORS, 404: {"description": "Not found"}, 409: {"description": "Approval required"}})
async def update_feature_flag(
    flag_id: int, body: FeatureFlagPatch, ctx: FeatureFlagWrite, session: SessionDep
) -> FeatureFlagOut:
    """Change a feature flag; `{"deleted": true}` is the soft delete."""
    return await FlagsAPI(session, ctx.project_id, ctx.user).update(flag_id, body)


@router.delete(FLAG, status_code=status.HTTP_405_METHOD_NOT_ALLOWED, response_class=Response, responses={405: {"description": "Hard delete is not allowed"}})
async def delete_feature_flag(flag_id: int, ctx: FeatureFlagWrite) -> Response:
    """Hard delete is not allowed: PATCH `{"deleted": true}` instead."""
    raise CustomBodyError(status.HTTP_405_METHOD_NOT_ALLOWED, None)


GROUP_TYPES = "/api/projects/{project_id}/groups_types/"


def _group_type_out(row) -> GroupTypeOut:
    return GroupTypeOut(
        group_type=row.group_type,
        group_type_index=row.group_type_index,
        name_singular=row.name_singular,
        name_plural=row.name_plural,
    )


@router.get(GROUP_TYPES, response_model=list[GroupTypeOut], responses=_ERRORS)
async def list_group_types(ctx: FeatureFlagRead, session: SessionDep) -> list[GroupTypeOut]:
    """The project's group types, by index."""
    return [_group_type_out(row) for row in await GroupTypes(session, ctx.project_id).list()]


@router.post(GROUP_TYPES, response_model=GroupTypeOut, responses=_ERRORS)
async def create_group_type(body: GroupTypeCreate, response: Response, ctx: FeatureFlagWrite, session: SessionDep) -> GroupTypeOut:
    """Add a group type at the next free index (0-4); an existing type is returned unchanged."""
    row, created = await GroupTypes(session, ctx.project_id).add(body.group_type, body.name_singular, body.name_plural)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return _group_type_out(row)
