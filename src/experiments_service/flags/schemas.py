"""Flag bodies: renderings shared by the flags API and experiments, and the flags API's requests."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from experiments_service.api_docs import DocumentedAs
from experiments_service.auth.schemas import UserBasic
from experiments_service.flags.shapes import FLAG_CREATE_EXAMPLE, FeatureFlagFilters
from experiments_service.models import FeatureFlag, User


def _common_fields(flag: FeatureFlag) -> dict[str, Any]:
    """The fields both renderings share, read off the row once."""
    return {
        "id": flag.id,
        "team_id": flag.project_id,
        "name": flag.name,
        "key": flag.key,
        "filters": flag.filters,
        "deleted": flag.deleted,
        "active": flag.active,
        "ensure_experience_continuity": flag.ensure_experience_continuity,
        "has_encrypted_payloads": flag.has_encrypted_payloads,
        "version": flag.version,
        "evaluation_runtime": flag.evaluation_runtime,
        "evaluation_tags": list(flag.evaluation_tags or []),
    }


class MinimalFeatureFlag(BaseModel):
    """The slim flag object embedded in experiments (PostHog's MinimalFeatureFlagSerializer)."""

    id: int
    team_id: int
    name: str
    key: str
    filters: Annotated[dict[str, Any], DocumentedAs(FeatureFlagFilters)]
    deleted: bool
    active: bool
    ensure_experience_continuity: bool | None
    has_encrypted_payloads: bool
    version: int
    evaluation_runtime: str
    evaluation_tags: list[str]

    @classmethod
    def of(cls, flag: FeatureFlag) -> "MinimalFeatureFlag":
        return cls(**_common_fields(flag))


class FeatureFlagOut(BaseModel):
    """The regular flag representation (flags API, eligible flags)."""

    id: int
    team_id: int
    name: str
    key: str
    filters: Annotated[dict[str, Any], DocumentedAs(FeatureFlagFilters)]
    deleted: bool
    active: bool
    created_by: UserBasic | None
    created_at: datetime
    updated_at: datetime
    version: int
    last_modified_by: UserBasic | None
    ensure_experience_continuity: bool | None
    has_encrypted_payloads: bool
    experiment_set: list[int]
    surveys: list[Any] = []
    features: list[Any] = []
    tags: list[str] = []
    evaluation_runtime: str
    evaluation_tags: list[str]
    evaluation_contexts: list[str]
    rollout_percentage: float | None = None
    is_simple_flag: bool
    user_access_level: str | None = "editor"

    @classmethod
    def of(cls, flag: FeatureFlag, users: dict[int, User], experiment_ids: list[int]) -> "FeatureFlagOut":
        groups = (flag.filters or {}).get("groups") or []
        is_simple = (
            len(groups) == 1
            and not (groups[0] or {}).get("properties")
            and not (flag.filters or {}).get("multivariate")
            and (flag.filters or {}).get("aggregation_group_type_index") is None
        )
        return cls(
            **_common_fields(flag),
            created_by=UserBasic.of(users.get(flag.created_by_id)) if flag.created_by_id else None,
            created_at=flag.created_at,
            updated_at=flag.updated_at,
            last_modified_by=UserBasic.of(users.get(flag.last_modified_by_id)) if flag.last_modified_by_id else None,
            experiment_set=experiment_ids,
            evaluation_contexts=list(flag.evaluation_tags or []),
            rollout_percentage=(groups[0] or {}).get("rollout_percentage") if is_simple else None,
            is_simple_flag=is_simple,
        )


# --- request bodies of the flags API and group types ------------------------------------------

EvaluationRuntime = Literal["server", "client", "all"]


Filters = Annotated[dict[str, Any] | None, DocumentedAs(FeatureFlagFilters | None)]


class FeatureFlagCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [FLAG_CREATE_EXAMPLE]})

    key: str = Field(max_length=400)
    name: str = ""
    filters: Filters = None
    active: bool = True
    ensure_experience_continuity: bool | None = False
    evaluation_runtime: EvaluationRuntime = "all"
    evaluation_tags: list[str] | None = None
    # Newer name of `evaluation_tags`; either is accepted.
    evaluation_contexts: list[str] | None = None


class FeatureFlagPatch(BaseModel):
    """Only the fields sent are changed; `deleted: true` is the soft delete."""

    key: str | None = Field(default=None, max_length=400)
    name: str | None = None
    filters: Filters = None
    active: bool | None = None
    deleted: bool | None = None
    ensure_experience_continuity: bool | None = None
    evaluation_runtime: EvaluationRuntime | None = None
    evaluation_tags: list[str] | None = None
    evaluation_contexts: list[str] | None = None


class GroupTypeCreate(BaseModel):
    group_type: str = Field(min_length=1, max_length=400)
    name_singular: str | None = Field(default=None, max_length=400)
    name_plural: str | None = Field(default=None, max_length=400)


class GroupTypeOut(BaseModel):
    group_type: str
    group_type_index: int
    name_singular: str | None
    name_plural: str | None
