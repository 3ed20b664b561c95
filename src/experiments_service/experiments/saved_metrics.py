"""Saved metrics: named `ExperimentMetric` queries that experiments can share.

The query's `uuid` is assigned once and never changes, because experiments list it in their
metric ordering.
"""

import copy
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from experiments_service.api_docs import DocumentedAs
from experiments_service.auth.schemas import UserBasic
from experiments_service.errors import ValidationError
from experiments_service.experiments.auxiliary_repository import AuxiliaryRepository
from experiments_service.experiments.metrics import LEGACY_METRIC_KINDS, validate_metric
from experiments_service.experiments.linked_objects import LinkedObjectService
from experiments_service.experiments.shapes import EXAMPLE_METRIC, ExperimentMetric
from experiments_service.models import ExperimentSavedMetric, User

METRIC_TYPES = ("mean", "funnel", "ratio", "retention")

SavedMetricName = Annotated[str, Field(min_length=1, max_length=400)]
SavedMetricDescription = Annotated[str | None, Field(max_length=400)]
Tags = list[Annotated[str, Field(max_length=255)]]


class SavedMetricCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Purchases", "query": EXAMPLE_METRIC, "tags": ["revenue"]}]}
    )

    name: SavedMetricName
    description: SavedMetricDescription = None
    query: Annotated[dict[str, Any] | None, DocumentedAs(ExperimentMetric)] = None
    tags: Tags | None = None
    metadata: dict[str, Any] | None = None


class SavedMetricUpdate(BaseModel):
    """Partial update: only the fields sent change; an explicit null name or query is rejected."""

    name: SavedMetricName = None  # type: ignore[assignment]
    description: SavedMetricDescription = None
    query: Annotated[dict[str, Any], DocumentedAs(ExperimentMetric)] = None  # type: ignore[assignment]
    tags: Tags | None = None
    metadata: dict[str, Any] | None = None


class SavedMetricOut(BaseModel):
    id: int
    name: str
    description: str | None
    query: Annotated[dict[str, Any], DocumentedAs(ExperimentMetric)]
    created_by: UserBasic | None
    created_at: datetime
    updated_at: datetime
    tags: list[str]
    metadata: dict[str, Any] | None

    @classmethod
    def of(cls, metric: ExperimentSavedMetric, created_by: User | None) -> "SavedMetricOut":
        return cls(
            id=metric.id,
            name=metric.name,
            description=metric.description,
            query=metric.query or {},
            created_by=UserBasic.of(created_by),
            created_at=metric.created_at,
            updated_at=metric.updated_at,
            tags=list(metric.tags or []),
            metadata=metric.metadata_,
        )


def validate_saved_metric_query(query: dict[str, Any] | None) -> None:
    """Accept only current `ExperimentMetric` queries (the reference's messages, `attr: query`)."""
    if not query:
        raise ValidationError("Query is required to create a saved metric", attr="query")
    kind = query.get("kind")
    if kind in LEGACY_METRIC_KINDS:
        raise ValidationError(
            f"Legacy metric kind '{kind}' is no longer supported for new saved metrics. "
            "Use 'ExperimentMetric' instead.",
            attr="query",
        )
    if kind != "ExperimentMetric":
        raise ValidationError("Metric query kind must be 'ExperimentMetric'", attr="query")
    if "metric_type" not in query:
        raise ValidationError("ExperimentMetric requires a metric_type", attr="query")
    if query["metric_type"] not in METRIC_TYPES:
        raise ValidationError(
            "ExperimentMetric metric_type must be 'mean', 'funnel', 'ratio', or 'retention'", attr="query"
        )
    validate_metric(query, 0, "query")


def _normalized_query(query: dict[str, Any], existing_uuid: str | None = None) -> dict[str, Any]:
    validate_saved_metric_query(query)
    normalized = copy.deepcopy(query)
    incoming = normalized.get("uuid")
    if existing_uuid and incoming and incoming != existing_uuid:
        raise ValidationError("Saved metric UUID cannot be changed", attr="query")
    normalized["uuid"] = existing_uuid or incoming or str(uuid.uuid4())
    return normalized


def _snapshot(metric: ExperimentSavedMetric) -> dict[str, Any]:
    return {
        "name": metric.name,
        "description": metric.description,
        "query": copy.deepcopy(metric.query),
        "tags": list(metric.tags or []),
        "metadata": copy.deepcopy(metric.metadata_),
    }


def _unique_tags(tags: list[str] | None) -> list[str]:
    """Tags as PostHog stores them: trimmed, lower-case, each once, in the order first sent."""
    return list(dict.fromkeys(tag.strip().lower() for tag in tags or [] if tag.strip()))


class SavedMetricService(LinkedObjectService[ExperimentSavedMetric, SavedMetricOut]):
    model = ExperimentSavedMetric
    rendering = SavedMetricOut
    activity_type = "saved_metric"

    async def _check_name_free(self, name: str, *, excluding_id: int | None = None) -> None:
        """Names are unique per project (PostHog's message, `attr: name`)."""
        if await AuxiliaryRepository(self.session, self.project_id).saved_metric_name_taken(
            name, excluding_id=excluding_id
        ):
            raise ValidationError("A shared metric with this name already exists", attr="name")

    async def create(self, data: SavedMetricCreate) -> ExperimentSavedMetric:
        await self._check_name_free(data.name)
        metric = ExperimentSavedMetric(
            project_id=self.project_id,
            name=data.name,
            description=data.description,
            query=_normalized_query(data.query),
            tags=_unique_tags(data.tags),
            metadata_=data.metadata,
            created_by_id=self.actor.id,
        )
        self.repo.add(metric)
        await self.session.flush()
        self.record(metric, "created", after=_snapshot(metric))
        return metric

    async def update(
        self, metric: ExperimentSavedMetric, data: SavedMetricCreate | SavedMetricUpdate
    ) -> ExperimentSavedMetric:
        """Apply the fields sent (PATCH, or PUT with the required ones); the query keeps its uuid."""
        changes = data.model_dump(exclude_unset=True)
        if changes.get("name") is not None and changes["name"] != metric.name:
            await self._check_name_free(changes["name"], excluding_id=metric.id)
        if "query" in changes:
            changes["query"] = _normalized_query(changes["query"], existing_uuid=(metric.query or {}).get("uuid"))
        if "tags" in changes:
            changes["tags"] = _unique_tags(changes["tags"])
        if "metadata" in changes:
            changes["metadata_"] = changes.pop("metadata")
        return await self.apply(metric, changes, _snapshot)

    async def delete(self, metric: ExperimentSavedMetric) -> None:
        """Delete the metric; experiment links go with it (FK cascade)."""
        self.record(metric, "deleted", before=_snapshot(metric))
        await self.repo.delete(metric)
        await self.session.flush()
