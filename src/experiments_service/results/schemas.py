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
    numerator_denominator_sum_product: float | None = Field(
        None, description="Ratio and retention metrics: Σ numerator × denominator."
    )
    denominator_sum: float | None = Field(None, description="Ratio and retention metrics: Σ per-entity denominators.")
    denominator_sum_squares: float | None = Field(
        None, description="Ratio and retention metrics: Σ squared denominators."
    )
    step_counts: list[int] | None = Field(None, description="Funnel metrics: entities reaching each step, in order.")
    covariate_sum: float | None = Field(None, description="CUPED: Σ of per-entity pre-exposure values.")
    covariate_sum_squares: float | None = Field(None, description="CUPED: Σ of squared pre-exposure values.")
    covariate_sum_product: float | None = Field(None, description="CUPED: Σ value × pre-exposure value.")
    validation_failures: list[str] = Field(
        default_factory=list,
        description=(
            "Why there are no statistics: `not_enough_exposures`, `not_enough_metric_data` (fewer than 5"
            " successes or, for funnels, 5 failures), `baseline_mean_is_zero`, `baseline_mean_is_negative`"
            " (relative effects), `denominator_is_zero` (ratio), `zero_variance`."
        ),
    )


class CupedOut(BaseModel):
    """The CUPED adjustment applied to this comparison."""

    theta: float = Field(description="Cov(value, covariate) / Var(covariate), pooled over both arms.")
    variance_reduction: float = Field(description="Share of this variant's per-entity variance removed (1 − adjusted/original).")
    baseline_variance_reduction: float = Field(description="The same share for the baseline.")


class _VariantStatistics(BaselineResult):
    significant: bool | None = Field(None, description="Null when there are no statistics (see `validation_failures`).")
    cuped: CupedOut | None = Field(None, description="Present when CUPED adjusted this comparison.")


class BayesianVariantResult(_VariantStatistics):
    method: Literal["bayesian"] = "bayesian"
    chance_to_win: float | None = Field(
        None, description="P(effect > 0), whatever the metric's goal (read it against the goal)."
    )
    credible_interval: list[float] | None = Field(None, description="Effect interval at `ci_level`.")


class FrequentistVariantResult(_VariantStatistics):
    method: Literal["frequentist"] = "frequentist"
    p_value: float | None = Field(
        None, description="Two-sided Welch t-test on the effect (always-valid when sequential testing is on)."
    )
    confidence_interval: list[float] | None = Field(
        None, description="Effect interval at 1 − α (a confidence sequence when sequential testing is on)."
    )
    p_value_adjusted: float | None = Field(
        None, description="With `stats_config.p_value_correction`: the p-value adjusted across metrics × variants."
    )


class MetricResult(BaseModel):
    """One metric's comparison of every variant against the baseline."""

    metric_uuid: str | None
    fingerprint: str | None = None
    metric_type: str | None
    role: Literal["primary", "secondary"]
    saved_metric_id: int | None = None
    method: Literal["bayesian", "frequentist"]
    difference_type: Literal["relative", "absolute"] = "relative"
    baseline: BaselineResult | None = None
    variant_results: list[BayesianVariantResult] | list[FrequentistVariantResult] = Field(default_factory=list)
    error: str | None = Field(
        None, description="Why this metric could not be computed (its definition, or values out of range)."
    )


class SampleRatioMismatchOut(BaseModel):
    """χ² test of exposure counts against the flag's configured split (fails when p < 0.001; no
    p-value below 100 exposures)."""

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
