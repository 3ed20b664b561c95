"""Per-variant statistics from sufficient aggregates (n, sums, sums of squares), via numpy/scipy.

Everything here is plain maths over plain data: the database hands back per-variant aggregates and
these functions turn them into the Bayesian or frequentist comparison against the baseline. Data
that supports no verdict (too few entities or outcomes, zero or unresolvable variance, a baseline
the relative effect cannot divide by) yields no statistics and a `validation_failures` reason.
"""

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy import stats

MIN_EXPOSURES = 50
# A proportion's normal approximation needs this many successes and failures in every arm.
MIN_PROPORTION_OUTCOMES = 5
MIN_SRM_EXPOSURES = 100
SRM_FAILURE_P_VALUE = 0.001
DEFAULT_SEQUENTIAL_TUNING_PARAMETER = 5000.0
# Below this share of Σx², (Σx² − (Σx)²/n) is rounding noise of the float sums, not variance.
_ROUNDING = 4 * np.finfo(float).eps

MetricType = Literal["mean", "funnel", "ratio", "retention"]
Method = Literal["bayesian", "frequentist"]
DifferenceType = Literal["relative", "absolute"]
Correction = Literal["holm-bonferroni", "benjamini-hochberg"]

NOT_ENOUGH_EXPOSURES = "not_enough_exposures"
NOT_ENOUGH_METRIC_DATA = "not_enough_metric_data"
BASELINE_MEAN_IS_ZERO = "baseline_mean_is_zero"
BASELINE_MEAN_IS_NEGATIVE = "baseline_mean_is_negative"
DENOMINATOR_IS_ZERO = "denominator_is_zero"
ZERO_VARIANCE = "zero_variance"


@dataclass(frozen=True)
class VariantAggregate:
    """Sufficient statistics of one variant: per-entity values summed in the database."""

    key: str
    number_of_samples: int
    sum: float
    sum_squares: float
    # Ratio and retention metrics: the per-entity denominator and the numerator x denominator products.
    denominator_sum: float | None = None
    denominator_sum_squares: float | None = None
    sum_of_products: float | None = None
    # Funnel metrics only: entities reaching each step, in order.
    step_counts: list[int] | None = None
    # CUPED: the pre-exposure covariate's sums and Σ value × covariate.
    covariate_sum: float | None = None
    covariate_sum_squares: float | None = None
    covariate_sum_product: float | None = None

    def is_finite(self) -> bool:
        numbers = [
            self.sum, self.sum_squares, self.denominator_sum, self.denominator_sum_squares, self.sum_of_products,
            self.covariate_sum, self.covariate_sum_squares, self.covariate_sum_product,
        ]
        return all(math.isfinite(value) for value in numbers if value is not None)


@dataclass(frozen=True)
class Estimate:
    """A variant's point estimate and the variance of one entity's contribution to it."""

    mean: float
    variance: float
    n: int


@dataclass(frozen=True)
class Cuped:
    """The CUPED adjustment of one comparison: θ and the share of variance it removed per arm."""

    theta: float
    variance_reduction: float
    baseline_variance_reduction: float


@dataclass
class Comparison:
    """The statistics of one variant against the baseline (all None when validation failed)."""

    method: Method = "bayesian"
    chance_to_win: float | None = None
    credible_interval: list[float] | None = None
    p_value: float | None = None
    confidence_interval: list[float] | None = None
    significant: bool | None = None
    validation_failures: list[str] = field(default_factory=list)
    cuped: Cuped | None = None


@dataclass(frozen=True)
class StatsSettings:
    method: Method = "bayesian"
    ci_level: float = 0.95
    alpha: float = 0.05
    difference_type: DifferenceType = "relative"
    sequential: bool = False
    sequential_tuning_parameter: float = DEFAULT_SEQUENTIAL_TUNING_PARAMETER
    cuped: bool = False


# --- per-arm estimates ---------------------------------------------------------------------------


def _sum_of_squared_deviations(n: int, total: float, total_squares: float) -> float:
    """Σ(x − x̄)², or 0 when it is within the rounding error of the sums (values like 1e9 ± 1)."""
    if n < 2:
        return 0.0
    deviations = total_squares - total * total / n
    if deviations <= _ROUNDING * n * abs(total_squares):
        return 0.0
    return deviations


def sample_variance(n: int, total: float, total_squares: float) -> float:
    return _sum_of_squared_deviations(n, total, total_squares) / (n - 1) if n > 1 else 0.0


def _sample_covariance(n: int, sum_x: float, sum_y: float, sum_xy: float) -> float:
    return (sum_xy - sum_x * sum_y / n) / (n - 1) if n > 1 else 0.0


def estimate(metric_type: MetricType, agg: VariantAggregate) -> Estimate:
    """Mean and per-entity variance: sample variance, p(1-p), or the delta method for ratios."""
    n = agg.number_of_samples
    if metric_type == "funnel":
        p = agg.sum / n
        return Estimate(mean=p, variance=p * (1 - p), n=n)
    if metric_type in ("ratio", "retention"):
        den_sum = agg.denominator_sum or 0.0
        mean_num, mean_den = agg.sum / n, den_sum / n
        if mean_den == 0:
            return Estimate(mean=0.0, variance=0.0, n=n)
        var_num = sample_variance(n, agg.sum, agg.sum_squares)
        var_den = sample_variance(n, den_sum, agg.denominator_sum_squares or 0.0)
        covariance = _sample_covariance(n, agg.sum, den_sum, agg.sum_of_products or 0.0)
        ratio = mean_num / mean_den
        variance = (
            var_num / mean_den**2
            - 2 * mean_num * covariance / mean_den**3
            + mean_num**2 * var_den / mean_den**4
        )
        return Estimate(mean=ratio, variance=max(variance, 0.0), n=n)
    return Estimate(mean=agg.sum / n, variance=sample_variance(n, agg.sum, agg.sum_squares), n=n)


# --- CUPED ---------------------------------------------------------------------------------------


def _covariate(agg: VariantAggregate) -> tuple[float, float, float]:
    return agg.covariate_sum or 0.0, agg.covariate_sum_squares or 0.0, agg.covariate_sum_product or 0.0


def cuped_adjust(
    metric_type: MetricType, test: VariantAggregate, control: VariantAggregate
) -> tuple[Estimate, Estimate, Cuped]:
    """Deng et al. (2013): Y − θ(X − X̄) with θ = Cov(Y, X)/Var(X) pooled over both arms.

    The covariate is centred on the pooled pre-exposure mean, so each arm's adjusted mean stays on
    the metric's scale (differences between arms are the same as uncentred CUPED's).
    """
    arms = (test, control)
    estimates = [estimate(metric_type, arm) for arm in arms]
    n_all = sum(arm.number_of_samples for arm in arms)
    sums = [_covariate(arm) for arm in arms]
    pre_sum = sum(item[0] for item in sums)
    pre_squares = sum(item[1] for item in sums)
    post_sum = sum(arm.sum for arm in arms)
    pre_variance = sample_variance(n_all, pre_sum, pre_squares)
    theta = 0.0
    if pre_variance > 0:
        theta = _sample_covariance(n_all, post_sum, pre_sum, sum(item[2] for item in sums)) / pre_variance
    pooled_pre_mean = pre_sum / n_all
    adjusted, reductions = [], []
    for arm, (arm_pre_sum, arm_pre_squares, arm_product), original in zip(arms, sums, estimates, strict=True):
        n = arm.number_of_samples
        covariance = _sample_covariance(n, arm.sum, arm_pre_sum, arm_product)
        variance = original.variance + theta**2 * sample_variance(n, arm_pre_sum, arm_pre_squares) - 2 * theta * covariance
        variance = max(variance, 0.0)
        adjusted.append(Estimate(mean=original.mean - theta * (arm_pre_sum / n - pooled_pre_mean), variance=variance, n=n))
        reductions.append(1 - variance / original.variance if original.variance > 0 else 0.0)
    return adjusted[0], adjusted[1], Cuped(theta=theta, variance_reduction=reductions[0], baseline_variance_reduction=reductions[1])


# --- effect and tests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """The difference between arms, its variance, and Welch–Satterthwaite df from the raw variances."""

    value: float
    variance: float
    degrees_of_freedom: float
    n: int


def effect(test: Estimate, control: Estimate, difference_type: DifferenceType, control_mean: float | None = None) -> Effect:
    """Relative (μT−μC)/μC with its delta-method variance, or absolute μT−μC.

    `control_mean` is the relative effect's denominator when it differs from the control estimate
    (the unadjusted mean under CUPED).
    """
    if difference_type == "absolute":
        value = test.mean - control.mean
        variance = test.variance / test.n + control.variance / control.n
    else:
        base = control.mean if control_mean is None else control_mean
        value = (test.mean - control.mean) / base
        variance = test.variance / (test.n * base**2) + test.mean**2 * control.variance / (control.n * base**4)
    test_term, control_term = test.variance / test.n, control.variance / control.n
    denominator = test_term**2 / (test.n - 1) + control_term**2 / (control.n - 1)
    degrees_of_freedom = (test_term + control_term) ** 2 / denominator if denominator > 0 else math.inf
    return Effect(value=value, variance=variance, degrees_of_freedom=degrees_of_freedom, n=test.n + control.n)


def bayesian(difference: Effect, ci_level: float) -> Comparison:
    """Non-informative Gaussian prior: the posterior of the effect is the likelihood.

    `chance_to_win` is P(effect > 0) whatever the metric's goal: a client reads it against the goal.
    """
    posterior = stats.norm(loc=difference.value, scale=math.sqrt(difference.variance))
    chance = float(posterior.sf(0.0))
    tail = (1 - ci_level) / 2
    return Comparison(
        method="bayesian",
        chance_to_win=chance,
        credible_interval=[float(posterior.ppf(tail)), float(posterior.ppf(1 - tail))],
        significant=bool(chance > ci_level or chance < 1 - ci_level),
    )


def frequentist(difference: Effect, alpha: float) -> Comparison:
    """Two-sided Welch t-test on the effect."""
    standard_error = math.sqrt(difference.variance)
    t_statistic = difference.value / standard_error
    p_value = float(2 * stats.t.sf(abs(t_statistic), difference.degrees_of_freedom))
    margin = float(stats.t.ppf(1 - alpha / 2, difference.degrees_of_freedom)) * standard_error
    return Comparison(
        method="frequentist",
        p_value=p_value,
        confidence_interval=[difference.value - margin, difference.value + margin],
        significant=bool(p_value < alpha),
    )


def sequential_rho(alpha: float, tuning_parameter: float) -> float:
    """The normal mixture's ρ that makes the confidence sequence tightest near `tuning_parameter`
    entities (Waudby-Smith et al. 2023, eq. 161, two-sided)."""
    log_alpha = math.log(alpha)
    return math.sqrt((-2 * log_alpha + math.log(-2 * log_alpha + 1)) / tuning_parameter)


def sequential(difference: Effect, alpha: float, tuning_parameter: float) -> Comparison:
    """Always-valid p-value and confidence sequence (Waudby-Smith et al. 2023, eqs. 9 and 155):
    they stay valid however often the results are read, at the price of a wider interval."""
    rho = sequential_rho(alpha, tuning_parameter)
    n = difference.n
    spread = n * rho**2 + 1
    log_evalue = rho**2 * difference.value**2 * n / difference.variance / (2 * spread) - 0.5 * math.log(spread)
    p_value = 1.0 if log_evalue <= 0 else min(math.exp(-log_evalue), 1.0)
    per_entity_variance = difference.variance * n
    halfwidth = math.sqrt(per_entity_variance * 2 * spread * math.log(math.sqrt(spread) / alpha) / (n * rho) ** 2)
    return Comparison(
        method="frequentist",
        p_value=p_value,
        confidence_interval=[difference.value - halfwidth, difference.value + halfwidth],
        significant=bool(p_value < alpha),
    )


# --- validation ----------------------------------------------------------------------------------


def validation_failures(metric_type: MetricType, agg: VariantAggregate, is_baseline: bool) -> list[str]:
    """Why a variant cannot be analysed yet (PostHog's reasons, plus the proportion's failures)."""
    failures = []
    n = agg.number_of_samples
    if n < MIN_EXPOSURES:
        failures.append(NOT_ENOUGH_EXPOSURES)
    if metric_type == "funnel" and (agg.sum < MIN_PROPORTION_OUTCOMES or n - agg.sum < MIN_PROPORTION_OUTCOMES):
        failures.append(NOT_ENOUGH_METRIC_DATA)
    if metric_type == "retention" and agg.sum < MIN_PROPORTION_OUTCOMES:
        failures.append(NOT_ENOUGH_METRIC_DATA)
    if n > 0 and metric_type in ("ratio", "retention") and not agg.denominator_sum:
        failures.append(BASELINE_MEAN_IS_ZERO if is_baseline else DENOMINATOR_IS_ZERO)
    elif is_baseline and n > 0 and estimate(metric_type, agg).mean == 0:
        failures.append(BASELINE_MEAN_IS_ZERO)
    return failures


def compare(
    metric_type: MetricType,
    baseline: VariantAggregate,
    variants: list[VariantAggregate],
    settings: StatsSettings,
) -> tuple[list[str], list[Comparison]]:
    """Baseline validation failures and one comparison per variant, in the given order."""
    baseline_failures = validation_failures(metric_type, baseline, is_baseline=True)
    if (
        settings.difference_type == "relative"
        and baseline.number_of_samples > 0
        and BASELINE_MEAN_IS_ZERO not in baseline_failures
        and estimate(metric_type, baseline).mean < 0
    ):
        # The relative effect divides by the baseline: a negative one flips the effect's sign.
        baseline_failures.append(BASELINE_MEAN_IS_NEGATIVE)
    comparisons = []
    for variant in variants:
        failures = validation_failures(metric_type, variant, is_baseline=False)
        if baseline_failures or failures:
            comparisons.append(Comparison(method=settings.method, validation_failures=failures))
            continue
        comparisons.append(_compare_one(metric_type, baseline, variant, settings))
    return baseline_failures, comparisons


def _compare_one(
    metric_type: MetricType, baseline: VariantAggregate, variant: VariantAggregate, settings: StatsSettings
) -> Comparison:
    cuped = None
    control_mean = None
    if settings.cuped and metric_type in ("mean", "funnel") and variant.covariate_sum is not None:
        test, control, cuped = cuped_adjust(metric_type, variant, baseline)
        control_mean = estimate(metric_type, baseline).mean
    else:
        test, control = estimate(metric_type, variant), estimate(metric_type, baseline)
    difference = effect(test, control, settings.difference_type, control_mean)
    if not difference.variance > 0 or not math.isfinite(difference.variance):
        return Comparison(method=settings.method, validation_failures=[ZERO_VARIANCE])
    if settings.method == "bayesian":
        comparison = bayesian(difference, settings.ci_level)
    elif settings.sequential:
        comparison = sequential(difference, settings.alpha, settings.sequential_tuning_parameter)
    else:
        comparison = frequentist(difference, settings.alpha)
    return replace(comparison, cuped=cuped)


# --- multiple testing ----------------------------------------------------------------------------


def adjust_p_values(p_values: list[float], correction: Correction) -> list[float]:
    """Holm–Bonferroni (family-wise error) or Benjamini–Hochberg (false discovery rate) adjusted
    p-values, in the given order."""
    if not p_values:
        return []
    values = np.asarray(p_values, dtype=float)
    if correction == "benjamini-hochberg":
        return [float(value) for value in stats.false_discovery_control(values, method="bh")]
    order = np.argsort(values, kind="stable")
    m = len(values)
    stepped = np.maximum.accumulate((m - np.arange(m)) * values[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(value) for value in adjusted]


# --- sample ratio mismatch -----------------------------------------------------------------------


@dataclass(frozen=True)
class SampleRatioMismatch:
    p_value: float | None
    failed: bool
    expected: dict[str, float]
    observed: dict[str, int]


def sample_ratio_mismatch(observed: dict[str, int], split_percent: dict[str, float]) -> SampleRatioMismatch:
    """Pearson χ² of the exposure counts against the flag's configured variant split (from 100
    exposures on, as PostHog's check)."""
    keys = [key for key in split_percent if split_percent[key] > 0]
    total = sum(observed.get(key, 0) for key in keys)
    weights = np.array([split_percent[key] for key in keys], dtype=float)
    expected_counts = total * weights / weights.sum() if len(keys) else weights
    expected = {key: float(count) for key, count in zip(keys, expected_counts, strict=True)}
    counts = {key: int(observed.get(key, 0)) for key in split_percent}
    if total < MIN_SRM_EXPOSURES or len(keys) < 2:
        return SampleRatioMismatch(p_value=None, failed=False, expected=expected, observed=counts)
    observed_counts = np.array([observed.get(key, 0) for key in keys], dtype=float)
    p_value = float(stats.chisquare(observed_counts, expected_counts).pvalue)
    return SampleRatioMismatch(p_value=p_value, failed=p_value < SRM_FAILURE_P_VALUE, expected=expected, observed=counts)
