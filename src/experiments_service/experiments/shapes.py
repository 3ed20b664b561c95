"""PostHog's shapes of an experiment's JSON fields, for the OpenAPI document and generated clients.

Requests keep being checked by the service with the reference messages (`validation.py`,
`metrics.py`); these models only describe what is accepted and returned. Every object allows
extra keys, since PostHog keeps keys it does not know.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from experiments_service.flags.shapes import PropertyFilter

TimeUnit = Literal["second", "minute", "hour", "day", "week", "month"]
MathType = Literal["total", "sum", "unique_session", "min", "max", "avg", "dau", "unique_group", "hogql"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class EventsNode(_Open):
    """Events by name (`event: null` means any event), optionally filtered and aggregated."""

    kind: Literal["EventsNode"]
    event: str | None = Field(None, examples=["purchase"])
    name: str | None = None
    custom_name: str | None = None
    math: MathType | None = Field(None, description="`total` (count, default) or `sum` of `math_property`, ...")
    math_property: str | None = Field(None, description="The event property summed when `math` is `sum`.")
    properties: list[PropertyFilter] | None = None


class ActionsNode(_Open):
    """Events matching a saved action."""

    kind: Literal["ActionsNode"]
    id: int
    name: str | None = None
    math: MathType | None = None
    math_property: str | None = None
    properties: list[PropertyFilter] | None = None


class ExperimentDataWarehouseNode(_Open):
    """Rows of a data-warehouse table joined to persons."""

    kind: Literal["ExperimentDataWarehouseNode"]
    table_name: str
    timestamp_field: str | None = None
    events_join_key: str | None = None
    data_warehouse_join_key: str | None = None
    math: MathType | None = None
    math_property: str | None = None


MetricSource = Annotated[EventsNode | ActionsNode | ExperimentDataWarehouseNode, Field(discriminator="kind")]


class _MetricBase(_Open):
    kind: Literal["ExperimentMetric"]
    uuid: str | None = Field(None, description="Assigned by the service when missing; stable afterwards.")
    name: str | None = None
    goal: Literal["increase", "decrease"] | None = None
    conversion_window: int | None = None
    conversion_window_unit: TimeUnit | None = None
    fingerprint: str | None = Field(None, description="Read-only: SHA-256 of what changes the metric's results.")


class ExperimentMeanMetric(_MetricBase):
    """Per-person count (`math: total`) or sum of a property (`math: sum`) of the source's events."""

    metric_type: Literal["mean"]
    source: MetricSource
    lower_bound_percentile: float | None = None
    upper_bound_percentile: float | None = None
    ignore_zeros: bool | None = None


class ExperimentFunnelMetric(_MetricBase):
    """Share of exposed persons completing every step (the exposure is the implicit first step)."""

    metric_type: Literal["funnel"]
    series: list[MetricSource] = Field(min_length=1)
    funnel_order_type: Literal["ordered", "strict", "unordered"] | None = None


class ExperimentRatioMetric(_MetricBase):
    """Σ numerator / Σ denominator per variant."""

    metric_type: Literal["ratio"]
    numerator: MetricSource
    denominator: MetricSource


class ExperimentRetentionMetric(_MetricBase):
    """Share of persons doing `completion_event` within the window after `start_event`."""

    metric_type: Literal["retention"]
    start_event: MetricSource
    completion_event: MetricSource
    retention_window_start: int
    retention_window_end: int
    retention_window_unit: TimeUnit
    start_handling: Literal["first_seen", "last_seen"] | None = None


class ExperimentMetric(
    RootModel[
        Annotated[
            ExperimentMeanMetric | ExperimentFunnelMetric | ExperimentRatioMetric | ExperimentRetentionMetric,
            Field(discriminator="metric_type"),
        ]
    ]
):
    """A metric of an experiment (or a saved metric's query), by `metric_type`."""


class ExperimentVariant(_Open):
    """One variant of the experiment's flag; `split_percent` and `rollout_percentage` are the same number."""

    key: str = Field(examples=["control"])
    name: str | None = None
    split_percent: float | None = Field(None, ge=0, le=100, description="Share of users, in percent (preferred).")
    rollout_percentage: float | None = Field(None, ge=0, le=100, description="Older name of `split_percent`.")


class ExperimentParameters(_Open):
    """Flag configuration of the experiment (its variants, rollout and payloads) and planning figures."""

    feature_flag_variants: list[ExperimentVariant] | None = Field(
        None, description="2 to 20 variants, one with key `control`; 50/50 control/test when omitted."
    )
    rollout_percentage: float | None = Field(None, ge=0, le=100, description="Share of users in the experiment.")
    feature_flag_payloads: dict[str, Any] | None = Field(None, description="Payload per variant key.")
    aggregation_group_type_index: int | None = Field(None, description="Randomise groups of this type, not persons.")
    ensure_experience_continuity: bool | None = None
    excluded_variants: list[str] | None = Field(None, description="Variants left out of the results.")
    minimum_detectable_effect: float | None = None
    recommended_running_time: float | None = None
    recommended_sample_size: float | None = None
    exposure_estimate_config: dict[str, Any] | None = None


class ExperimentEventExposureConfig(_Open):
    """Count a person as exposed on this event instead of `$feature_flag_called`."""

    kind: Literal["ExperimentEventExposureConfig"] = "ExperimentEventExposureConfig"
    event: str = Field(examples=["$pageview"])
    properties: list[PropertyFilter]


class ExposureCriteria(_Open):
    """Who counts as exposed."""

    filterTestAccounts: bool | None = Field(None, description="Filled in as `true` when missing.")
    exposure_config: ExperimentEventExposureConfig | ActionsNode | None = None
    multiple_variant_handling: Literal["exclude", "first_seen"] | None = Field(
        None, description="Persons seen in several variants: excluded (`$multiple`, default) or first variant."
    )


class BayesianConfig(_Open):
    ci_level: float | None = Field(None, gt=0, lt=1, description="Credible interval level (default 0.95).")


class FrequentistConfig(_Open):
    alpha: float | None = Field(None, gt=0, lt=1, description="Significance level (default 0.05).")


class StatsConfig(_Open):
    """How results are computed."""

    method: Literal["bayesian", "frequentist"] | None = Field(None, description="Filled in as `bayesian`.")
    baseline_variant_key: str | None = Field(None, description="Variant the others compare against (`control`).")
    bayesian: BayesianConfig | None = None
    frequentist: FrequentistConfig | None = None


class SavedMetricLink(_Open):
    """An entry of `saved_metrics_ids`: a saved metric to attach, as primary or secondary."""

    id: int
    metadata: dict[str, Any] | None = Field(None, examples=[{"type": "primary"}])


EXAMPLE_METRIC = {
    "kind": "ExperimentMetric",
    "metric_type": "mean",
    "name": "Purchases",
    "goal": "increase",
    "source": {"kind": "EventsNode", "event": "purchase", "math": "total"},
}
EXPERIMENT_CREATE_EXAMPLE = {
    "name": "Checkout button colour",
    "description": "Does a green button sell more?",
    "feature_flag_key": "checkout-button-colour",
    "parameters": {
        "feature_flag_variants": [
            {"key": "control", "name": "Blue", "split_percent": 50},
            {"key": "test", "name": "Green", "split_percent": 50},
        ]
    },
    "metrics": [EXAMPLE_METRIC],
    "stats_config": {"method": "bayesian"},
    "exposure_criteria": {"filterTestAccounts": True},
    "allow_unknown_events": True,
}
