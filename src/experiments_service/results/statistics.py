"""Per-variant statistics from sufficient aggregates (n, sums, sums of squares), via numpy/scipy.

Everything here is plain maths over plain data: the database hands back per-variant aggregates and
these functions turn them into the Bayesian or frequentist comparison against the baseline.
"""

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats

MIN_EXPOSURES = 50
MIN_FUNNEL_CONVERSIONS = 5
SRM_FAILURE_P_VALUE = 0.001

MetricType = Literal["mean", "funnel", "ratio"]


@dataclass(frozen=True)
class VariantAggregate:
    """Sufficient statistics of one variant: per-entity values summed in the database."""

    key: str
    number_of_samples: int
    sum: float
    sum_squares: float
    # Ratio metrics only: the per-entity denominator and the numerator x denominator products.
    denominator_sum: float | None = None
    denominator_sum_squares: float | None = None
    sum_of_products: float | None = None
    # Funnel metrics only: entities reaching each step, in order.
    step_counts: list[int] | None = None


@dataclass(frozen=True)
class Estimate:
    """A variant's point estimate and the variance of one entity's contribution to it."""

    mean: float
    variance: float
    n: int


@dataclass
class Comparison:
    """The statistics of one variant against the baseline (None when validation failed)."""

    chance_to_win: float | None = None
    credible_interval: list[float] | None = None
    p_value: float | None = None
    confidence_interval: list[float] | None = None
    significant: bool = False
    validation_failures: list[str] = field(default_factory=list)


def estimate(metric_type: MetricType, agg: VariantAggregate) -> Estimate:
    """Mean and per-entity variance: sample variance, p(1-p), or the delta method for ratios."""
    n = agg.number_of_samples
    if metric_type == "funnel":
        p = agg.sum / n
        return Estimate(mean=p, variance=p * (1 - p), n=n)
    if metric_type == "ratio":
        den_sum = agg.denominator_sum or 0.0
        mean_num, mean_den = agg.sum / n, den_sum / n
        var_num = _sample_variance(n, agg.sum, agg.sum_squares)
        var_den = _sample_variance(n, den_sum, agg.denominator_sum_squares or 0.0)
        covariance = ((agg.sum_of_products or 0.0) - agg.sum * den_sum / n) / (n - 1) if n > 1 else 0.0
        if mean_den == 0:
            return Estimate(mean=0.0, variance=0.0, n=n)
        ratio = mean_num / mean_den
        variance = (
            var_num / mean_den**2
            - 2 * mean_num * covariance / mean_den**3
            + mean_num**2 * var_den / mean_den**4
        )
        return Estimate(mean=ratio, variance=max(variance, 0.0), n=n)
    return Estimate(mean=agg.sum / n, variance=_sample_variance(n, agg.sum, agg.sum_squares), n=n)


def _sample_variance(n: int, total: float, total_squares: float) -> float:
    if n < 2:
        return 0.0
    return max((total_squares - total**2 / n) / (n - 1), 0.0)


def relative_effect(test: Estimate, control: Estimate) -> tuple[float, float, float, float]:
    """(μT−μC)/μC with its delta-method variance, split into the test and control terms."""
    effect = (test.mean - control.mean) / control.mean
    test_term = test.variance / (test.n * control.mean**2)
    control_term = test.mean**2 * control.variance / (control.n * control.mean**4)
    return effect, test_term + control_term, test_term, control_term


def bayesian(test: Estimate, control: Estimate, ci_level: float, lower_is_better: bool = False) -> Comparison:
    """Non-informative Gaussian prior: the posterior of the relative effect is the likelihood."""
    effect, variance, _, _ = relative_effect(test, control)
    scale = float(np.sqrt(variance))
    if scale == 0.0:
        chance = 0.5 if effect == 0 else float(effect > 0)
        interval = [effect, effect]
    else:
        posterior = stats.norm(loc=effect, scale=scale)
        chance = float(posterior.sf(0.0))
        tail = (1 - ci_level) / 2
        interval = [float(posterior.ppf(tail)), float(posterior.ppf(1 - tail))]
    if lower_is_better:
        chance = 1.0 - chance
    return Comparison(
        chance_to_win=chance,
        credible_interval=interval,
        significant=bool(chance > ci_level or chance < 1 - ci_level),
    )


def frequentist(test: Estimate, control: Estimate, alpha: float) -> Comparison:
    """Two-sided Welch t-test on the relative effect, Welch–Satterthwaite degrees of freedom."""
    effect, variance, test_term, control_term = relative_effect(test, control)
    standard_error = float(np.sqrt(variance))
    if standard_error == 0.0:
        p_value = 1.0 if effect == 0 else 0.0
        return Comparison(p_value=p_value, confidence_interval=[effect, effect], significant=p_value < alpha)
    denominator = test_term**2 / (test.n - 1) + control_term**2 / (control.n - 1)
    degrees_of_freedom = variance**2 / denominator
    t_statistic = effect / standard_error
    p_value = float(2 * stats.t.sf(abs(t_statistic), degrees_of_freedom))
    margin = float(stats.t.ppf(1 - alpha / 2, degrees_of_freedom)) * standard_error
    return Comparison(
        p_value=p_value,
        confidence_interval=[effect - margin, effect + margin],
        significant=bool(p_value < alpha),
    )


def validation_failures(metric_type: MetricType, agg: VariantAggregate, is_baseline: bool) -> list[str]:
    """Why a variant cannot be analysed yet (PostHog's names)."""
    failures = []
    if agg.number_of_samples < MIN_EXPOSURES:
        failures.append("not_enough_exposures")
    if metric_type == "funnel" and agg.sum < MIN_FUNNEL_CONVERSIONS:
        failures.append("not_enough_metric_data")
    if is_baseline and agg.number_of_samples > 0 and _baseline_mean(metric_type, agg) == 0:
        failures.append("baseline_mean_is_zero")
    return failures


def _baseline_mean(metric_type: MetricType, agg: VariantAggregate) -> float:
    if metric_type == "ratio" and not agg.denominator_sum:
        return 0.0
    return estimate(metric_type, agg).mean


@dataclass(frozen=True)
class StatsSettings:
    method: Literal["bayesian", "frequentist"] = "bayesian"
    ci_level: float = 0.95
    alpha: float = 0.05
    lower_is_better: bool = False


def compare(
    metric_type: MetricType,
    baseline: VariantAggregate,
    variants: list[VariantAggregate],
    settings: StatsSettings,
) -> tuple[list[str], list[Comparison]]:
    """Baseline validation failures and one comparison per variant, in the given order."""
    baseline_failures = validation_failures(metric_type, baseline, is_baseline=True)
    comparisons = []
    for variant in variants:
        failures = validation_failures(metric_type, variant, is_baseline=False)
        if baseline_failures or failures:
            comparisons.append(Comparison(validation_failures=failures))
            continue
        test, control = estimate(metric_type, variant), estimate(metric_type, baseline)
        if settings.method == "frequentist":
            comparison = frequentist(test, control, settings.alpha)
        else:
            comparison = bayesian(test, control, settings.ci_level, settings.lower_is_better)
        comparisons.append(comparison)
    return baseline_failures, comparisons


@dataclass(frozen=True)
class SampleRatioMismatch:
    p_value: float | None
    failed: bool
    expected: dict[str, float]
    observed: dict[str, int]


def sample_ratio_mismatch(observed: dict[str, int], split_percent: dict[str, float]) -> SampleRatioMismatch:
    """Pearson χ² of the exposure counts against the flag's configured variant split."""
    keys = [key for key in split_percent if split_percent[key] > 0]
    total = sum(observed.get(key, 0) for key in keys)
    weights = np.array([split_percent[key] for key in keys], dtype=float)
    expected_counts = total * weights / weights.sum() if len(keys) else weights
    expected = {key: float(count) for key, count in zip(keys, expected_counts, strict=True)}
    counts = {key: int(observed.get(key, 0)) for key in split_percent}
    if total == 0 or len(keys) < 2:
        return SampleRatioMismatch(p_value=None, failed=False, expected=expected, observed=counts)
    observed_counts = np.array([observed.get(key, 0) for key in keys], dtype=float)
    p_value = float(stats.chisquare(observed_counts, expected_counts).pvalue)
    return SampleRatioMismatch(p_value=p_value, failed=p_value < SRM_FAILURE_P_VALUE, expected=expected, observed=counts)
