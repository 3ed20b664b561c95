"""Request authentication and per-route scope checks, as FastAPI dependencies."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.auth.keys import hash_key, scope_allows
from experiments_service.auth.repository import AuthRepository
from experiments_service.deps import SessionDep
from experiments_service.errors import (
    MAX_STORED_INT,
    APIError,
    AuthenticationFailed,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
)
from experiments_service.models import PersonalAPIKey, Project, User


INVALID_PERSONAL_KEY = "Personal API key found in request Authorization header is invalid."


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


def presented_key_hash(request: Request) -> str:
    """The stored form of the request's bearer key (401 when none is presented)."""
    token = bearer_token(request)
    if token is None:
        raise NotAuthenticated()
    return hash_key(token)


def _path_project_id(request: Request) -> int:
    """The path's project id, or -1 (matches no project) when it is not a valid id."""
    try:
        project_id = int(request.path_params.get("project_id"))
    except (TypeError, ValueError):
        return -1
    return project_id if 0 < project_id <= MAX_STORED_INT else -1


async def authorize(
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
    if not is_member:
        raise PermissionDenied("You don't have access to the project.")
    return ProjectContext(project=project, user=user, key=key)


def require_scope(scope: str):
    """Dependency: authenticate, check `scope`, and load the path's project the key may see."""

    async def dependency(request: Request, session: SessionDep) -> ProjectContext:
        return await authorize(session, presented_key_hash(request), _path_project_id(request), scope)

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


ExperimentRead = Annotated[ProjectContext, Depends(require_scope("experiment:read"))]
ExperimentWrite = Annotated[ProjectContext, Depends(require_scope("experiment:write"))]
FeatureFlagRead = Annotated[ProjectContext, Depends(require_scope("feature_flag:read"))]
FeatureFlagWrite = Annotated[ProjectContext, Depends(require_scope("feature_flag:write"))]
