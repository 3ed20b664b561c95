"""HTTP routes for personal API keys, the current user and projects (thin)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from experiments_service.api_docs import error_responses
from experiments_service.auth.dependencies import BearerDep, ProjectContext, authenticate_key, require_scope
from experiments_service.auth.management import KeyManagement
from experiments_service.auth.schemas import (
    PersonalAPIKeyCreate,
    PersonalAPIKeyOut,
    PersonalAPIKeyUpdate,
    ProjectOut,
    UserMe,
)
from experiments_service.deps import SessionDep, TransactionalRoute
from experiments_service.pagination import Page, PageDep

router = APIRouter(route_class=TransactionalRoute, tags=["auth"])

KEYS = "/api/personal_api_keys/"
KEY = KEYS + "{key_id}/"
_ERRORS = error_responses(400, 401, 403, e403="Missing scope, or beyond the presenting key's own scopes and projects")
_KEY_ERRORS = {**_ERRORS, **error_responses(404, e404="No such key among those the presenting key may manage")}


def _management(scope: str | None):
    async def dependency(request: Request, session: SessionDep, _credentials: BearerDep) -> KeyManagement:
        key, user = await authenticate_key(request, session, scope)
        return KeyManagement(session, user, key)

    dependency.__name__ = f"manage_{(scope or 'self').replace(':', '_')}"
    return dependency


KeysRead = Annotated[KeyManagement, Depends(_management("personal_api_key:read"))]
KeysWrite = Annotated[KeyManagement, Depends(_management("personal_api_key:write"))]
UserRead = Annotated[KeyManagement, Depends(_management("user:read"))]
ProjectsRead = Annotated[KeyManagement, Depends(_management("project:read"))]
AnyKey = Annotated[KeyManagement, Depends(_management(None))]
ProjectRead = Annotated[ProjectContext, Depends(require_scope("project:read"))]


@router.get(KEYS, summary="List the user's personal API keys", response_model=list[PersonalAPIKeyOut], responses=_ERRORS)
async def list_personal_api_keys(keys: KeysRead) -> list[PersonalAPIKeyOut]:
    """The user's keys this key may manage (masked), newest first."""
    return await keys.list()


@router.post(KEYS, summary="Create a personal API key", response_model=PersonalAPIKeyOut, status_code=status.HTTP_201_CREATED, responses=_ERRORS)
async def create_personal_api_key(body: PersonalAPIKeyCreate, keys: KeysWrite) -> PersonalAPIKeyOut:
    """Mint a key for the same user; its secret `value` is shown only in this answer."""
    return await keys.create(body)


@router.get(KEY, summary="Retrieve a personal API key", response_model=PersonalAPIKeyOut, responses=_KEY_ERRORS)
async def retrieve_personal_api_key(key_id: str, keys: AnyKey) -> PersonalAPIKeyOut:
    """One key (masked); `@current` or its own id needs no scope, any other key `personal_api_key:read`."""
    return PersonalAPIKeyOut.of(await keys.retrieve(key_id))


@router.patch(KEY, summary="Update a personal API key", response_model=PersonalAPIKeyOut, responses=_KEY_ERRORS)
async def update_personal_api_key(key_id: str, body: PersonalAPIKeyUpdate, keys: KeysWrite) -> PersonalAPIKeyOut:
    """Change a key's `label`, `scopes` or `scoped_teams` (within the presenting key's own)."""
    return await keys.update(key_id, body)


@router.post(KEY + "roll/", summary="Roll a personal API key", response_model=PersonalAPIKeyOut, responses=_KEY_ERRORS)
async def roll_personal_api_key(key_id: str, keys: KeysWrite) -> PersonalAPIKeyOut:
    """Replace the key's secret (the old one stops working); the new `value` is shown once."""
    return await keys.roll(key_id)


@router.delete(KEY, summary="Delete a personal API key", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=_KEY_ERRORS)
async def delete_personal_api_key(key_id: str, keys: KeysWrite) -> Response:
    """Revoke a key."""
    await keys.delete(key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/api/users/@me/", summary="Retrieve the key's user", response_model=UserMe, responses=_ERRORS)
async def retrieve_current_user(keys: UserRead) -> UserMe:
    """The key's user (exempt from project scoping, as in PostHog)."""
    return await keys.me()


@router.get("/api/projects/", summary="List the projects the key may see", response_model=Page[ProjectOut], responses=_ERRORS)
async def list_projects(keys: ProjectsRead, page: PageDep) -> dict:
    """The projects this key may see: its user's, narrowed to the key's `scoped_teams`."""
    return await keys.projects(page)


@router.get("/api/projects/{project_id}/", summary="Retrieve a project", response_model=ProjectOut, responses={**_ERRORS, **error_responses(404)})
async def retrieve_project(context: ProjectRead) -> ProjectOut:
    """One project (`@current`: the one the key is scoped to)."""
    return ProjectOut.of(context.project)
