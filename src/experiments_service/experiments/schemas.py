"""Request and response shapes of the Experiments API (PostHog's field names and order)."""

import copy
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from experiments_service.api_docs import DocumentedAs
from experiments_service.auth.schemas import UserBasic
from experiments_service.experiments.shapes import (
    EXPERIMENT_CREATE_EXAMPLE,
    ExperimentMetric,
    ExperimentParameters,
    ExposureCriteria,
    SavedMetricLink,
    StatsConfig,
)
from experiments_service.flags.shapes import FeatureFlagGroup
from experiments_service.flags.schemas import MinimalFeatureFlag
from experiments_service.models import (
    Experiment,
    ExperimentHoldout,
    ExperimentSavedMetric,
    ExperimentToSavedMetric,
    FeatureFlag,
    User,
)

Conclusion = Literal["won", "lost", "inconclusive", "stopped_early", "invalid"]
ExperimentType = Literal["web", "product"]
Status = Literal["draft", "running", "paused", "stopped"]


def _as_utc(value: datetime) -> datetime:
    """Naive input such as `2021-12-01T10:23` means UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UTCDatetime = Annotated[datetime, AfterValidator(_as_utc)]
# An entry of a metric ordering list: a metric uuid, never blank.
MetricUUID = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class HoldoutOut(BaseModel):
    """An experiment holdout: the group of users kept out of every variant."""

    id: int
    name: str
    description: str | None
    filters: Annotated[list[Any], DocumentedAs(list[FeatureFlagGroup])]
    created_by: UserBasic | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, holdout: ExperimentHoldout, created_by: User | None) -> "HoldoutOut":
        return cls(
            id=holdout.id,
            name=holdout.name,
            description=holdout.description,
            filters=holdout.filters or [],
            created_by=UserBasic.of(created_by),
            created_at=holdout.created_at,
            updated_at=holdout.updated_at,
        )


class ExperimentToSavedMetricOut(BaseModel):
    """One saved metric linked to an experiment, with the metric's query inlined."""

    id: int
    experiment: int
    saved_metric: int
    metadata: dict[str, Any] | None
    created_at: datetime
    query: Annotated[dict[str, Any], DocumentedAs(ExperimentMetric)]
    name: str

    @classmethod
    def of(
        cls, link: ExperimentToSavedMetric, saved_metric: ExperimentSavedMetric, query: dict[str, Any]
    ) -> "ExperimentToSavedMetricOut":
        return cls(
            id=link.id,
            experiment=link.experiment_id,
            saved_metric=link.saved_metric_id,
            metadata=link.metadata_,
            created_at=link.created_at,
            query=query,
            name=saved_metric.name,
        )


def parameters_for_output(parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Echo each variant's `rollout_percentage` as `split_percent` too (output only)."""
    if not isinstance(parameters, dict):
        return parameters
    variants = parameters.get("feature_flag_variants")
    if not isinstance(variants, list):
        return parameters
    rendered = copy.deepcopy(parameters)
    for variant in rendered["feature_flag_variants"]:
        if isinstance(variant, dict) and "rollout_percentage" in variant:
            variant["split_percent"] = variant["rollout_percentage"]
    return rendered


class ExperimentOut(BaseModel):
    """The full experiment representation (detail, create, update and every lifecycle action)."""

    id: int
    name: str
    description: str | None
    start_date: datetime | None
    end_date: datetime | None
    feature_flag_key: str
    feature_flag: MinimalFeatureFlag | None
    holdout: HoldoutOut | None
    holdout_id: int | None
    exposure_cohort: int | None = None
    parameters: Annotated[dict[str, Any] | None, DocumentedAs(ExperimentParameters | None)]
    secondary_metrics: list[Any] | None
    saved_metrics: list[ExperimentToSavedMetricOut]
    saved_metrics_ids: list[Any] | None = None
    filters: dict[str, Any] | None
    archived: bool
    deleted: bool
    created_by: UserBasic | None
    created_at: datetime
    updated_at: datetime
    type: ExperimentType | None
    exposure_criteria: Annotated[dict[str, Any] | None, DocumentedAs(ExposureCriteria | None)]
    metrics: Annotated[list[Any] | None, DocumentedAs(list[ExperimentMetric] | None)]
    metrics_secondary: Annotated[list[Any] | None, DocumentedAs(list[ExperimentMetric] | None)]
    stats_config: Annotated[dict[str, Any] | None, DocumentedAs(StatsConfig | None)]
    scheduling_config: dict[str, Any] | None
    conclusion: Conclusion | None
    conclusion_comment: str | None
    primary_metrics_ordered_uuids: list[Any] | None
    secondary_metrics_ordered_uuids: list[Any] | None
    only_count_matured_users: bool
    status: Status
    user_access_level: str | None = "editor"
    tags: list[str] = Field(default_factory=list)

    @classmethod
    def of(
        cls,
        experiment: Experiment,
        *,
        flag: FeatureFlag,
        holdout: HoldoutOut | None,
        saved_metrics: list[ExperimentToSavedMetricOut],
        created_by: User | None,
        tags: list[str] | None = None,
    ) -> "ExperimentOut":
        return cls(
            id=experiment.id,
            name=experiment.name,
            description=experiment.description,
            start_date=experiment.start_date,
            end_date=experiment.end_date,
            feature_flag_key=flag.key,
            feature_flag=MinimalFeatureFlag.of(flag),
            holdout=holdout,
            holdout_id=experiment.holdout_id,
            parameters=parameters_for_output(experiment.parameters),
            secondary_metrics=experiment.secondary_metrics,
            saved_metrics=saved_metrics,
            filters=experiment.filters,
            archived=experiment.archived,
            deleted=experiment.deleted,
            created_by=UserBasic.of(created_by),
            created_at=experiment.created_at,
            updated_at=experiment.updated_at,
            type=experiment.type,
            exposure_criteria=experiment.exposure_criteria,
            metrics=experiment.metrics,
            metrics_secondary=experiment.metrics_secondary,
            stats_config=experiment.stats_config,
            scheduling_config=experiment.scheduling_config,
            conclusion=experiment.conclusion,
            conclusion_comment=experiment.conclusion_comment,
            primary_metrics_ordered_uuids=experiment.primary_metrics_ordered_uuids,
            secondary_metrics_ordered_uuids=experiment.secondary_metrics_ordered_uuids,
            only_count_matured_users=experiment.only_count_matured_users,
            status=experiment.status,
            tags=tags or [],
        )


class ExperimentList(BaseModel):
    """A LimitOffset page."""

    count: int
    next: str | None
    previous: str | None
    results: list[ExperimentOut]


class _ExperimentWrite(BaseModel):
    """Fields a client may send; free-form JSON fields are checked by the service with the reference messages."""

    model_config = ConfigDict(extra="ignore")

    description: str | None = Field(default=None, max_length=3000)
    start_date: UTCDatetime | None = None
    end_date: UTCDatetime | None = None
    feature_flag_key: str | None = None
    holdout_id: int | None = None
    parameters: Annotated[Any, DocumentedAs(ExperimentParameters | None)] = None
    secondary_metrics: list[Any] | None = None
    saved_metrics_ids: Annotated[Any, DocumentedAs(list[SavedMetricLink] | None)] = None
    filters: dict[str, Any] | None = None
    archived: bool = False
    deleted: bool = False
    type: ExperimentType | None = "product"
    exposure_criteria: Annotated[Any, DocumentedAs(ExposureCriteria | None)] = None
    metrics: Annotated[Any, DocumentedAs(list[ExperimentMetric] | None)] = None
    metrics_secondary: Annotated[Any, DocumentedAs(list[ExperimentMetric] | None)] = None
    stats_config: Annotated[Any, DocumentedAs(StatsConfig | None)] = None
    scheduling_config: dict[str, Any] | None = None
    conclusion: Conclusion | None = None
    conclusion_comment: str | None = None
    primary_metrics_ordered_uuids: list[MetricUUID] | None = None
    secondary_metrics_ordered_uuids: list[MetricUUID] | None = None
    only_count_matured_users: bool | None = None
    allow_unknown_events: bool = False
    update_feature_flag_params: bool = False
    tags: list[str] | None = None


class ExperimentCreate(_ExperimentWrite):
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [EXPERIMENT_CREATE_EXAMPLE]})

    name: str = Field(min_length=1, max_length=400)
    feature_flag_key: str


class ExperimentUpdate(_ExperimentWrite):
    """Partial update: only the keys present in the body (`model_fields_set`) are applied."""

    name: str = Field(default=None, min_length=1, max_length=400)


class EndRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"conclusion": "won", "conclusion_comment": "Green sells 8% more."}]},
    )

    conclusion: Conclusion | None = None
    conclusion_comment: str | None = None


class ShipVariantRequest(EndRequest):
    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"variant_key": "test", "conclusion": "won"}]}
    )

    variant_key: str
    release_to_everyone: bool = True
