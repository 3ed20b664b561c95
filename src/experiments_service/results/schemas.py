"""Response bodies of the results domain.

Metric results follow PostHog's `ExperimentQueryResponse`: a `baseline` with its sufficient
statistics and one entry per other variant in `variant_results`, carrying the chosen method's
statistics (or `validation_failures` explaining why they are missing).
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from experiments_service.api_docs import DocumentedAs


class BaselineResult(BaseModel):
    """The baseline variant's sufficient statistics (per-entity values summed per variant)."""

    key: str
    number_of_samples: int = Field(description="Exposed entities in the variant.")
    sum: float = Field(description="Σ of per-entity values (conversions for funnels, numerators for ratios).")
    sum_squares: float = Field(description="Σ of squared per-entity values.")
    sum_of_products: float | None = Field(None, description="Ratio metrics: Σ numerator × denominator.")
    denominator_sum: float | None = Field(None, description="Ratio metrics: Σ per-entity denominators.")
    denominator_sum_squares: float | None = Field(None, description="Ratio metrics: Σ squared denominators.")
    step_counts: list[int] | None = Field(None, description="Funnel metrics: entities reaching each step.")
    validation_failures: list[str] = Field(
        default_factory=list,
        description="`not_enough_exposures`, `not_enough_metric_data`, `baseline_mean_is_zero`.",
    )


class BayesianVariantResult(BaselineResult):
    chance_to_win: float | None = Field(None, description="P(relative effect > 0) (< 0 when the goal is decrease).")
    credible_interval: list[float] | None = Field(None, description="Relative effect interval at `ci_level`.")
    significant: bool = False


class FrequentistVariantResult(BaselineResult):
    p_value: float | None = Field(None, description="Two-sided Welch t-test on the relative effect.")
    confidence_interval: list[float] | None = Field(None, description="Relative effect interval at 1 − α.")
    significant: bool = False


class MetricResult(BaseModel):
    """One metric's comparison of every variant against the baseline."""

    metric_uuid: str | None
    fingerprint: str | None = None
    metric_type: str | None
    role: Literal["primary", "secondary"]
    saved_metric_id: int | None = None
    method: Literal["bayesian", "frequentist"]
    baseline: BaselineResult | None = None
    variant_results: list[BayesianVariantResult] | list[FrequentistVariantResult] = Field(default_factory=list)
    error: str | None = Field(None, description="Why this metric could not be computed (its definition).")


class SampleRatioMismatchOut(BaseModel):
    """χ² test of exposure counts against the flag's configured split (fails when p < 0.001)."""

    p_value: float | None
    failed: bool
    expected: dict[str, float]
    observed: dict[str, int]


class ExperimentResultsOut(BaseModel):
    experiment_id: int
    results: list[MetricResult]
    exposures: dict[str, int] = Field(
        description="Exposed entities per variant; `$multiple` counts those seen in more than one variant."
    )
    srm: SampleRatioMismatchOut
    computed_at: datetime
    data_through: datetime = Field(description="Events up to this instant are included.")


class RecalculationOut(BaseModel):
    id: str
    experiment_id: int
    metric_uuid: str | None
    fingerprint: str
    status: str
    created_at: str = Field(description="`isoformat()` with an explicit `+00:00` offset.")


class TimeseriesDay(BaseModel):
    """The metric's cumulative result through the end of one day."""

    model_config = ConfigDict(extra="allow")

    baseline: BaselineResult | None = None
    variant_results: list[BayesianVariantResult] | list[FrequentistVariantResult] = Field(default_factory=list)


class TimeseriesOut(BaseModel):
    experiment_id: int
    metric_uuid: str
    status: Literal["pending", "partial", "completed", "failed"]
    timeseries: Annotated[dict[str, dict[str, Any] | None], DocumentedAs(dict[str, TimeseriesDay | None])] = Field(
        description="Result per project-timezone day (`YYYY-MM-DD`); null while not computed or failed."
    )
    errors: dict[str, str] | None
    computed_at: str | None
    created_at: str
    updated_at: str
    recalculation_status: str | None
    recalculation_created_at: str | None


class RequiresFlagImplementationOut(BaseModel):
    result: bool
