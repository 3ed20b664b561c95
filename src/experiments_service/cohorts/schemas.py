"""Request and response shapes of `/api/projects/{project_id}/cohorts/` (PostHog's CohortSerializer)."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from experiments_service.auth.schemas import UserBasic


class CohortCreate(BaseModel):
    """A new cohort: dynamic (`filters`, or legacy `groups`) or static (`is_static`, with members
    from `distinct_ids` or a `csv` file part in a multipart body)."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, max_length=400)
    description: str = Field("", max_length=1000)
    groups: list[Any] | None = None
    filters: dict[str, Any] | None = None
    query: dict[str, Any] | None = None
    is_static: bool = False
    deleted: bool = False
    cohort_type: str | None = None
    distinct_ids: list[str] | None = Field(None, description="Distinct ids to add to a static cohort.")


class CohortUpdate(BaseModel):
    """Partial update: only the fields sent change. `deleted: true` soft-deletes the cohort."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, max_length=400)
    description: str | None = Field(None, max_length=1000)
    groups: list[Any] | None = None
    filters: dict[str, Any] | None = None
    query: dict[str, Any] | None = None
    is_static: bool | None = None
    deleted: bool | None = None
    cohort_type: str | None = None
    distinct_ids: list[str] | None = Field(None, description="Distinct ids to add to a static cohort.")


class CohortOut(BaseModel):
    id: int
    name: str | None
    description: str
    groups: list[Any]
    deleted: bool
    filters: dict[str, Any]
    query: dict[str, Any] | None = None
    is_calculating: bool = False
    created_by: UserBasic | None
    created_at: datetime
    last_calculation: datetime | None
    errors_calculating: int = 0
    count: int | None
    is_static: bool
    cohort_type: str
    experiment_set: list[int] = Field(default_factory=list)
