"""HTTP routes of the flags domain (thin: parse, call the service, render)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from experiments_service.api_docs import PROJECT_READ, PROJECT_WRITE, approval_responses, error_responses
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

_READ_ERRORS = error_responses(*PROJECT_READ)
_LIST_ERRORS = error_responses(400, *PROJECT_READ)
_WRITE_ERRORS = error_responses(*PROJECT_WRITE)
# Flag changes pass the approval gate.
_GATED_ERRORS = {**_WRITE_ERRORS, **approval_responses()}


@router.get(FLAGS, response_model=Page[FeatureFlagOut], responses=_LIST_ERRORS, summary="List feature flags")
async def list_feature_flags(
    ctx: FeatureFlagRead,
    session: SessionDep,
    page: PageDep,
    search: Annotated[str | None, Query(description="Case-insensitive match on key or name.")] = None,
    active: Annotated[bool | None, Query(description="Only active (`true`) or inactive (`false`) flags.")] = None,
) -> dict:
    """List the project's feature flags (deleted ones excluded), newest first."""
    return await FlagManagement(session, ctx.project_id, ctx.user).page(page, search=search, active=active)


@router.post(
    FLAGS,
    response_model=FeatureFlagOut,
    status_code=status.HTTP_201_CREATED,
    responses=_WRITE_ERRORS,
    summary="Create a feature flag",
)
async def create_feature_flag(body: FeatureFlagCreate, ctx: FeatureFlagWrite, session: SessionDep) -> FeatureFlagOut:
    """Create a feature flag."""
    return await FlagManagement(session, ctx.project_id, ctx.user).create(body)


@router.get(FLAG, response_model=FeatureFlagOut, responses=_READ_ERRORS, summary="Retrieve a feature flag")
async def retrieve_feature_flag(flag_id: int, ctx: FeatureFlagRead, session: SessionDep) -> FeatureFlagOut:
    """One feature flag (soft-deleted flags stay readable so they can be restored)."""
    api = FlagManagement(session, ctx.project_id, ctx.user)
    return await api.render_one(await api.get(flag_id))


@router.patch(FLAG, response_model=FeatureFlagOut, responses=_GATED_ERRORS, summary="Update a feature flag")
async def update_feature_flag(
    flag_id: int, body: FeatureFlagPatch, ctx: FeatureFlagWrite, session: SessionDep
) -> FeatureFlagOut:
    """Change a feature flag; `{"deleted": true}` is the soft delete."""
    return await FlagManagement(session, ctx.project_id, ctx.user).update(flag_id, body)


@router.delete(
    FLAG,
    status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
    response_class=Response,
    responses={405: {"description": "Hard delete is not allowed"}, **_READ_ERRORS},
    summary="Delete a feature flag (refused)",
)
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


@router.get(GROUP_TYPES, response_model=list[GroupTypeOut], responses=_READ_ERRORS, summary="List group types")
async def list_group_types(ctx: FeatureFlagRead, session: SessionDep) -> list[GroupTypeOut]:
    """The project's group types, by index."""
    return [_group_type_out(row) for row in await GroupTypes(session, ctx.project_id).list()]


@router.post(
    GROUP_TYPES,
    response_model=GroupTypeOut,
    responses={201: {"model": GroupTypeOut, "description": "Added"}, **_WRITE_ERRORS},
    summary="Add a group type",
)
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
# Authenticated by the project API key in the body, not by a personal key: no security scheme.
_SDK_ERRORS = error_responses(400, 401, 413, e400="Malformed request", e401="Invalid project API key")
_SDK_OK = {200: {"description": "Flag values (shape by `v`)", "content": {_JSON: {"schema": {"type": "object"}}}}}


@router.post(
    "/flags/",
    response_class=Response,
    openapi_extra=_SDK_BODY,
    responses={**_SDK_OK, **_SDK_ERRORS},
    summary="Evaluate flags (SDK)",
)
async def evaluate_flags(request: Request) -> Response:
    """Evaluate the project's flags for one person (PostHog `/flags?v=1|2|3|4`), authenticated by the project API key.

    Served by `sdk.SDKFastPath` ahead of routing; this route documents it and answers identically.
    """
    return await sdk.respond(request, "flags")


@router.post(
    "/decide/",
    response_class=Response,
    openapi_extra=_SDK_BODY,
    responses={**_SDK_OK, **_SDK_ERRORS},
    summary="Evaluate flags, older endpoint (SDK)",
)
async def decide(request: Request) -> Response:
    """The older `/decide?v=2|3|4` endpoint: the same evaluation in its response shapes."""
    return await sdk.respond(request, "decide")


_DEFINITIONS_RESPONSES = {
    200: {
        "description": "`{flags, group_type_mapping, cohorts}` for SDK local evaluation, with an ETag",
        "content": {_JSON: {"schema": {"type": "object"}}},
    },
    304: {"description": "Unchanged since the `If-None-Match` ETag"},
    **error_responses(400, 401, 403),
}
TokenQuery = Annotated[str | None, Query(description="The project API key (`phc_...`).")]
# A personal API key (Authorization: Bearer) and the project API key as `token`.
_DEFINITIONS_ROUTE = {
    "response_class": Response,
    "responses": _DEFINITIONS_RESPONSES,
    "openapi_extra": {"security": [{"PersonalAPIKey": []}]},
}


@router.get("/flags/definitions/", summary="Flag definitions for local evaluation (SDK)", **_DEFINITIONS_ROUTE)
async def flag_definitions(request: Request, session: SessionDep, token: TokenQuery = None) -> Response:
    """Flag definitions for SDK local evaluation (personal API key with feature_flag:read, project `token`)."""
    return await sdk.definitions_response(request, session, token)


@router.get("/api/feature_flag/local_evaluation/", summary="Flag definitions for local evaluation, older path (SDK)", **_DEFINITIONS_ROUTE)
async def local_evaluation_definitions(request: Request, session: SessionDep, token: TokenQuery = None) -> Response:
    """The older path of the local-evaluation definitions."""
    return await sdk.definitions_response(request, session, token)
