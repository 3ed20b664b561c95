"""Sample size and running time an experiment needs to detect a minimum effect (PostHog's calculator).

Per variant, n = 16·σ²/δ² (≈ 80 % power at a 5 % two-sided significance level), where δ is the
minimum detectable effect as an absolute change of the baseline value and σ² the metric's
variance; the recommended sample size is n times the number of variants, and the running time
that total divided by the daily exposure rate, both rounded up.

Variance per metric type: `mean_count` 2·baseline (a Poisson count compared across two groups),
`mean_sum_or_avg` (0.5·baseline)², `funnel` p·(1 − p) with p the conversion rate, `ratio` and
`retention` by the delta method from the baseline's sums.
"""

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from experiments_service.errors import ValidationError

MetricType = Literal["mean_count", "mean_sum_or_avg", "funnel", "ratio", "retention"]
# Four standard deviations squared: (z_{1-α/2} + z_{1-β})² ≈ (1.96 + 0.84)² rounded up, as PostHog does.
SAMPLE_SIZE_CONSTANT = 16
# Rounding guard so that 1152.0000000000002 counts as 1152 before the ceiling.
ROUNDING_DIGITS = 6


class BaselineStats(BaseModel):
    """Per-entity sums of the baseline period, in the shape experiment results use."""

    model_config = ConfigDict(extra="ignore")

    number_of_samples: int = Field(ge=0)
    sum: float
    sum_squares: float | None = None
    denominator_sum: float | None = None
    denominator_sum_squares: float | None = None
    numerator_denominator_sum_product: float | None = None
    step_counts: list[float] = Field(default_factory=list)


class RunningTimeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metric_type: MetricType
    minimum_detectable_effect: float = Field(description="Smallest relative change worth detecting, in percent.")
    baseline_value: float | None = Field(default=None, description="Mean, conversion rate or ratio of the baseline.")
    baseline_stats: BaselineStats | None = None
    variance: float | None = None
    exposure_rate_per_day: float | None = Field(default=None, description="Entities exposed per day.")
    number_of_variants: int = Field(default=2, ge=2, le=21)


class RunningTimeResult(BaseModel):
    metric_type: MetricType
    baseline_value: float
    variance: float | None
    minimum_detectable_effect: float
    number_of_variants: int
    recommended_sample_size: int
    recommended_running_time_days: int | None


def baseline_value_from_stats(stats: BaselineStats, metric_type: str) -> float | None:
    if stats.number_of_samples <= 0:
        return None
    if metric_type in ("ratio", "retention"):
        if not stats.denominator_sum:
            return None
        return stats.sum / stats.denominator_sum
    if metric_type == "funnel" and stats.step_counts:
        return stats.step_counts[-1] / stats.number_of_samples
    return stats.sum / stats.number_of_samples


def variance_from_baseline(metric_type: str, baseline_value: float) -> float | None:
    """The variance simple metrics imply from their baseline value (None: funnel, ratio, retention)."""
    if metric_type == "mean_count":
        return 2 * baseline_value
    if metric_type == "mean_sum_or_avg":
        return (0.5 * baseline_value) ** 2
    return None


def ratio_variance(ratio: float, stats: BaselineStats) -> float | None:
    """Delta-method variance of numerator/denominator per entity."""
    n = stats.number_of_samples
    if n <= 0 or not stats.denominator_sum:
        return None
    mean_numerator = stats.sum / n
    mean_denominator = stats.denominator_sum / n
    var_numerator = (stats.sum_squares or 0) / n - mean_numerator**2
    var_denominator = (stats.denominator_sum_squares or 0) / n - mean_denominator**2
    covariance = (stats.numerator_denominator_sum_product or 0) / n - mean_numerator * mean_denominator
    variance = (var_numerator - 2 * ratio * covariance + ratio**2 * var_denominator) / mean_denominator**2
    return max(variance, 0.0)


def sample_size(metric_type: str, baseline_value: float, mde_percent: float, variants: int,
                variance: float | None = None) -> int | None:
    """The total entities needed across all variants (None when the inputs support no answer)."""
    if mde_percent <= 0 or baseline_value <= 0:
        return None
    delta = baseline_value * mde_percent / 100
    if metric_type == "funnel":
        if baseline_value >= 1:
            return None
        variance = baseline_value * (1 - baseline_value)
    elif metric_type in ("mean_count", "mean_sum_or_avg"):
        variance = variance_from_baseline(metric_type, baseline_value)
    if variance is None:
        return None
    per_variant = SAMPLE_SIZE_CONSTANT * variance / delta**2
    return variants * math.ceil(round(per_variant, ROUNDING_DIGITS))


def running_time_days(total: int | None, exposure_rate_per_day: float | None) -> int | None:
    if total is None or not exposure_rate_per_day or exposure_rate_per_day <= 0:
        return None
    return math.ceil(round(total / exposure_rate_per_day, ROUNDING_DIGITS))


def calculate_running_time(request: RunningTimeRequest) -> RunningTimeResult:
    """Answer the calculator, or a 400 naming the input that is missing or unusable."""
    if request.minimum_detectable_effect <= 0:
        raise ValidationError("minimum_detectable_effect must be greater than 0", attr="minimum_detectable_effect")
    baseline = request.baseline_value
    if baseline is None and request.baseline_stats is not None:
        baseline = baseline_value_from_stats(request.baseline_stats, request.metric_type)
    if baseline is None:
        raise ValidationError(
            "Send baseline_value, or baseline_stats with at least one sample"
            + (" and a non-zero denominator_sum" if request.metric_type in ("ratio", "retention") else ""),
            attr="baseline_value",
        )
    if baseline <= 0:
        raise ValidationError("baseline_value must be greater than 0", attr="baseline_value")
    variance = request.variance
    if variance is None and request.metric_type in ("ratio", "retention") and request.baseline_stats is not None:
        variance = ratio_variance(baseline, request.baseline_stats)
    if variance is None and request.metric_type in ("mean_count", "mean_sum_or_avg"):
        variance = variance_from_baseline(request.metric_type, baseline)
    if request.metric_type in ("ratio", "retention") and variance is None:
        raise ValidationError(
            f"A {request.metric_type} metric needs its variance: send variance, or baseline_stats with "
            "sum_squares, denominator_sum, denominator_sum_squares and numerator_denominator_sum_product",
            attr="baseline_stats",
        )
    total = sample_size(
        request.metric_type, baseline, request.minimum_detectable_effect, request.number_of_variants, variance
    )
    if total is None:
        raise ValidationError("These inputs support no sample size (a conversion rate must be below 1)",
                              attr="baseline_value")
    return RunningTimeResult(
        metric_type=request.metric_type,
        baseline_value=baseline,
        variance=None if request.metric_type == "funnel" else variance,
        minimum_detectable_effect=request.minimum_detectable_effect,
        number_of_variants=request.number_of_variants,
        recommended_sample_size=total,
        recommended_running_time_days=running_time_days(total, request.exposure_rate_per_day),
    )
