"""Request and list bodies of the flags API and group types."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from experiments_service.api_docs import DocumentedAs
from experiments_service.flags.shapes import FLAG_CREATE_EXAMPLE, FeatureFlagFilters


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
