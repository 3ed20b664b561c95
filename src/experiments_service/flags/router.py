"""HTTP routes of the flags domain (thin: parse, call the service, render)."""

from fastapi import APIRouter, Request, Response, status

from experiments_service.auth.dependencies import FeatureFlagRead, FeatureFlagWrite
from experiments_service.deps import SessionDep, TransactionalRoute
from experiments_service.errors import CustomBodyError
from experiments_service.flags import sdk
from experiments_service.flags.groups import GroupTypes
from experiments_service.flags.management import FlagManagement
from experiments_service.flags.schemas import (
    FeatureFlagCreate,
    FeatureFlagOut,
    FeatureFlagPatch,
    GroupTypeCreate,
    GroupTypeOut,
)
from experiments_service.pagination import Page, PageDep

router = APIRouter(route_class=TransactionalRoute, tags=["flags"])

FLAGS = "/api/projects/{project_id}/feature_flags/"
FLAG = "/api/projects/{project_id}/feature_flags/{flag_id}/"

_ERRORS = {400: {"description": "Invalid input"}, 401: {"description": "Not authenticated"}, 403: {"description": "Missing scope"}}


@router.get(FLAGS, response_model=Page[FeatureFlagOut], responses=_ERRORS)
async def list_feature_flags(
    ctx: FeatureFlagRead, session: SessionDep, page: PageDep, search: str | None = None, active: bool | None = None
) -> dict:
    """List the project's feature flags (deleted ones excluded), newest first."""
    return await FlagManagement(session, ctx.project_id, ctx.user).page(page, search=search, active=active)


@router.post(FLAGS, response_model=FeatureFlagOut, status_code=status.HTTP_201_CREATED, responses=_ERRORS)
async def create_feature_flag(body: FeatureFlagCreate, ctx: FeatureFlagWrite, session: SessionDep) -> FeatureFlagOut:
    """Create a feature flag."""
    return await FlagManagement(session, ctx.project_id, ctx.user).create(body)


@router.get(FLAG, response_model=FeatureFlagOut, responses={**_ERRORS, 404: {"description": "Not found"}})
async def retrieve_feature_flag(flag_id: int, ctx: FeatureFlagRead, session: SessionDep) -> FeatureFlagOut:
    """One feature flag (soft-deleted flags stay readable so they can be restored)."""
    api = FlagManagement(session, ctx.project_id, ctx.user)
    return await api.render_one(await api.get(flag_id))


@router.patch(FLAG, response_model=FeatureFlagOut, responses={**_ERRORS, 404: {"description": "Not found"}, 409: {"description": "Approval required"}})
async def update_feature_flag(
    flag_id: int, body: FeatureFlagPatch, ctx: FeatureFlagWrite, session: SessionDep
) -> FeatureFlagOut:
    """Change a feature flag; `{"deleted": true}` is the soft delete."""
    return await FlagManagement(session, ctx.project_id, ctx.user).update(flag_id, body)


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


# --- SDK endpoints: evaluation and local-evaluation definitions ----------------------------------

_JSON = "application/json"
_SDK_BODY = {
    "requestBody": {
        "description": "PostHog's /flags request: JSON, gzip (`compression=gzip-js` or `Content-Encoding: gzip`), "
        "base64 (`compression=base64`) or a form with `data=`.",
        "content": {_JSON: {"schema": {"type": "object"}}},
    }
}
_SDK_ERRORS = {400: {"description": "Malformed request"}, 401: {"description": "Invalid project API key"}, 413: {"description": "Body too large"}}


@router.post("/flags/", response_class=Response, openapi_extra=_SDK_BODY, responses={200: {"description": "Flag values (shape by `v`)"}, **_SDK_ERRORS})
async def evaluate_flags(request: Request) -> Response:
    """Evaluate the project's flags for one person (PostHog `/flags?v=1|2|3|4`), authenticated by the project API key.

    Served by `sdk.SDKFastPath` ahead of routing; this route documents it and answers identically.
    """
    return await sdk.respond(request, "flags")


@router.post("/decide/", response_class=Response, openapi_extra=_SDK_BODY, responses={200: {"description": "Flag values (shape by `v`)"}, **_SDK_ERRORS})
async def decide(request: Request) -> Response:
    """The older `/decide?v=2|3|4` endpoint: the same evaluation in its response shapes."""
    return await sdk.respond(request, "decide")


_DEFINITIONS_RESPONSES = {
    200: {"description": "`{flags, group_type_mapping, cohorts}` for SDK local evaluation, with an ETag"},
    304: {"description": "Unchanged since the `If-None-Match` ETag"},
    **_ERRORS,
}


@router.get("/flags/definitions/", response_class=Response, responses=_DEFINITIONS_RESPONSES)
async def flag_definitions(request: Request, session: SessionDep, token: str | None = None) -> Response:
    """Flag definitions for SDK local evaluation (personal API key with feature_flag:read, project `token`)."""
    return await sdk.definitions_response(request, session, token)


@router.get("/api/feature_flag/local_evaluation/", response_class=Response, responses=_DEFINITIONS_RESPONSES)
async def local_evaluation_definitions(request: Request, session: SessionDep, token: str | None = None) -> Response:
    """The older path of the local-evaluation definitions."""
    return await sdk.definitions_response(request, session, token)
