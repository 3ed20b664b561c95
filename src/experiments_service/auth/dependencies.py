"""Request authentication and per-route scope checks, as FastAPI dependencies."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import WithJsonSchema
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.auth.keys import hash_key, scope_allows
from experiments_service.auth.repository import AuthRepository
from experiments_service.ratelimit import rate_limit_key
from experiments_service.deps import SessionDep
from experiments_service.errors import (
    MAX_STORED_INT,
    APIError,
    AuthenticationFailed,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
)
from experiments_service.models import PersonalAPIKey, Project, User, utcnow


INVALID_PERSONAL_KEY = "Personal API key found in request Authorization header is invalid."
# `@current`: the presenting key (`/api/personal_api_keys/@current/`), or the one project it is
# scoped to (`/api/projects/@current/...`).
CURRENT = "@current"
# `last_used_at` is refreshed when older than this, so a busy key costs one write an hour.
LAST_USED_REFRESH = timedelta(hours=1)


@dataclass
class ProjectContext:
    """Who is calling, with which key, on which project (already access-checked)."""

    project: Project
    user: User
    key: PersonalAPIKey

    @property
    def project_id(self) -> int:
        return self.project.id


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


# Declares the scheme in the OpenAPI document (Swagger UI's Authorize); the checks stay ours, so
# a missing or malformed header keeps answering PostHog's 401.
personal_api_key = HTTPBearer(
    scheme_name="PersonalAPIKey",
    bearerFormat="phx_...",
    description="A personal API key (`phx_...`), sent as `Authorization: Bearer phx_...`.",
    auto_error=False,
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(personal_api_key)]

# Documented as an integer but parsed leniently here, so a bad id still answers 401 before 404.
ProjectIdPath = Annotated[
    str, Path(description="The project's id."), WithJsonSchema({"type": "integer", "title": "Project Id"})
]


def presented_key_hash(request: Request) -> str:
    """The stored form of the request's bearer key (401 when none is presented)."""
    token = bearer_token(request)
    if token is None:
        raise NotAuthenticated()
    return hash_key(token)


def _project_id(raw: str) -> int:
    """The path's project id, or -1 (matches no project) when it is not a valid id."""
    try:
        project_id = int(raw)
    except (TypeError, ValueError):
        return -1
    return project_id if 0 < project_id <= MAX_STORED_INT else -1


def single_scoped_project(key: PersonalAPIKey) -> int:
    """The project `@current` names for this key: the only one it is scoped to."""
    teams = list(key.scoped_teams or [])
    if len(teams) != 1:
        raise NotFound(f"{CURRENT} names a project only for a key scoped to exactly one project.")
    return int(teams[0])


async def _resolve_current_project(request: Request, repo: AuthRepository, key_hash: str) -> None:
    """Replace `@current` in the path by the key's project id, before FastAPI reads path params
    (sub-dependencies are solved first), so every route sees a plain id."""
    if request.path_params.get("project_id") != CURRENT:
        return
    key = await repo.key_by_hash(key_hash)
    if key is None:
        raise AuthenticationFailed(INVALID_PERSONAL_KEY)
    request.path_params["project_id"] = str(single_scoped_project(key))


def check_project_access(key: PersonalAPIKey, project_id: int, is_member: bool) -> None:
    """The key's project scope (PostHog's `scoped_teams`), then the user's membership."""
    if key.scoped_teams and project_id not in key.scoped_teams:
        raise PermissionDenied(f"API key does not have access to the requested project: ID {project_id}.")
    if not is_member:
        raise PermissionDenied("You don't have access to the project.")


async def note_key_used(request: Request, session, key: PersonalAPIKey) -> None:
    """Per-key rate limit, then `last_used_at` (written in the request's transaction, at most
    once per `LAST_USED_REFRESH`)."""
    await rate_limit_key(request, key.id)
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_REFRESH:
        await AuthRepository(session).touch_key(key.id, now, now - LAST_USED_REFRESH)
        key.last_used_at = now


async def authenticate_key(request: Request, session, scope: str | None) -> tuple[PersonalAPIKey, User]:
    """The presented key and its user, for routes outside a project (`scope` None: any key)."""
    found = await AuthRepository(session).key_with_user(presented_key_hash(request))
    if found is None:
        raise AuthenticationFailed(INVALID_PERSONAL_KEY)
    key, user = found
    if scope is not None and not scope_allows(list(key.scopes or []), scope):
        raise PermissionDenied(f"API key missing required scope '{scope}'")
    await note_key_used(request, session, key)
    return key, user


async def authorize(
    request: Request,
    session: AsyncSession,
    key_hash: str,
    project_id: int,
    scope: str,
    unknown_project: Callable[[], APIError] = NotFound,
) -> ProjectContext:
    """The key's access to the project, in one round trip; the one place the checks and messages live.

    `unknown_project` is what a project that does not exist answers (a 404 on the scoped API).
    """
    found = await AuthRepository(session).resolve_access(key_hash, project_id)
    if found is None:
        raise AuthenticationFailed(INVALID_PERSONAL_KEY)
    key, user, project, is_member = found
    if not scope_allows(list(key.scopes or []), scope):
        raise PermissionDenied(f"API key missing required scope '{scope}'")
    if project is None:
        raise unknown_project()
    check_project_access(key, project.id, is_member)
    await note_key_used(request, session, key)
    return ProjectContext(project=project, user=user, key=key)


def require_scope(scope: str):
    """Dependency: authenticate, check `scope`, and load the path's project the key may see."""

    async def dependency(
        request: Request, session: SessionDep, project_id: ProjectIdPath, _credentials: BearerDep
    ) -> ProjectContext:
        key_hash = presented_key_hash(request)
        await _resolve_current_project(request, AuthRepository(session), key_hash)
        # `project_id` as FastAPI read it may still be `@current`; the path now holds the id.
        return await authorize(request, session, key_hash, _project_id(request.path_params["project_id"]), scope)

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


ExperimentRead = Annotated[ProjectContext, Depends(require_scope("experiment:read"))]
ExperimentWrite = Annotated[ProjectContext, Depends(require_scope("experiment:write"))]
FeatureFlagRead = Annotated[ProjectContext, Depends(require_scope("feature_flag:read"))]
FeatureFlagWrite = Annotated[ProjectContext, Depends(require_scope("feature_flag:write"))]
CohortRead = Annotated[ProjectContext, Depends(require_scope("cohort:read"))]
CohortWrite = Annotated[ProjectContext, Depends(require_scope("cohort:write"))]
