"""Request authentication and per-route scope checks, as FastAPI dependencies."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import WithJsonSchema

from experiments_service.auth.keys import hash_key, scope_allows
from experiments_service.auth.repository import AuthRepository
from experiments_service.deps import SessionDep
from experiments_service.errors import (
    MAX_STORED_INT,
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


def _presented_key_hash(request: Request) -> str:
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


def require_scope(scope: str):
    """Dependency: authenticate, check `scope`, and load the path's project the key may see."""

    async def dependency(
        request: Request, session: SessionDep, project_id: ProjectIdPath, _credentials: BearerDep
    ) -> ProjectContext:
        found = await AuthRepository(session).resolve_access(_presented_key_hash(request), _project_id(project_id))
        if found is None:
            raise AuthenticationFailed(INVALID_PERSONAL_KEY)
        key, user, project, is_member = found
        if not scope_allows(list(key.scopes or []), scope):
            raise PermissionDenied(f"API key missing required scope '{scope}'")
        if project is None:
            raise NotFound()
        if not is_member:
            raise PermissionDenied("You don't have access to the project.")
        return ProjectContext(project=project, user=user, key=key)

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


ExperimentRead = Annotated[ProjectContext, Depends(require_scope("experiment:read"))]
ExperimentWrite = Annotated[ProjectContext, Depends(require_scope("experiment:write"))]
FeatureFlagRead = Annotated[ProjectContext, Depends(require_scope("feature_flag:read"))]
FeatureFlagWrite = Annotated[ProjectContext, Depends(require_scope("feature_flag:write"))]
