"""Golden vectors: the numeric expectations of PostHog's stats tests (`products/experiments/stats/
tests/`) and GrowthBook's gbstats tests (`packages/stats/tests/frequentist/test_tests.py`), asserted
to each suite's own tolerance (PostHog: 4 decimal places; gbstats: equal after rounding to 5).

Only the numbers come from those suites; the inputs are sufficient statistics, so these run on
the statistics module alone (the HTTP tests cover the way there).
"""

import numpy as np
import pytest

from experiments_service.results import statistics
from experiments_service.results.statistics import StatsSettings, VariantAggregate

POSTHOG = {"abs": 5e-5}


def mean_arm(key, total, squares, n):
    return VariantAggregate(key=key, number_of_samples=n, sum=total, sum_squares=squares)


def proportion_arm(key, successes, n):
    return VariantAggregate(key=key, number_of_samples=n, sum=float(successes), sum_squares=float(successes))


def ratio_arm(key, n, numerator, numerator_squares, denominator, denominator_squares, products):
    return VariantAggregate(
        key=key, number_of_samples=n, sum=numerator, sum_squares=numerator_squares, denominator_sum=denominator,
        denominator_sum_squares=denominator_squares, sum_of_products=products,
    )


def difference(metric_type, test, control, difference_type="relative"):
    return statistics.effect(
        statistics.estimate(metric_type, test), statistics.estimate(metric_type, control), difference_type
    )


# PostHog's `test_frequentist.py`: run_test(treatment, control).
POSTHOG_FREQUENTIST = [
    pytest.param(
        "mean", mean_arm("t", 1922.7, 94698.29, 2461), mean_arm("c", 1196.87, 37377.9767, 2507),
        0.63646, [-0.0875, 1.36048], 0.08487, id="sample-mean",
    ),
    pytest.param(
        "funnel", proportion_arm("t", 62, 1471), proportion_arm("c", 87, 1529),
        -0.25925, [-0.49475, -0.02376], 0.030960, id="proportion",
    ),
    pytest.param(
        "ratio",
        ratio_arm("t", 2034, 99673.9364269569, 11298745.182728939, 947, 947, 99673.9364269569),
        ratio_arm("c", 1966, 94605.79858780127, 10463129.505392816, 936, 936, 94605.79858780127),
        0.041333, [0.01378609, 0.0689], 0.0032826, id="ratio",
    ),
]


@pytest.mark.parametrize("metric_type, test, control, expected, interval, p_value", POSTHOG_FREQUENTIST)
def test_posthog_frequentist(metric_type, test, control, expected, interval, p_value):
    _, [comparison] = statistics.compare(metric_type, control, [test], StatsSettings(method="frequentist"))

    assert difference(metric_type, test, control).value == pytest.approx(expected, **POSTHOG)
    assert comparison.p_value == pytest.approx(p_value, **POSTHOG)
    assert comparison.confidence_interval == pytest.approx(interval, **POSTHOG)
    assert comparison.significant is (p_value < 0.05)


def test_posthog_bayesian_realistic_example():
    test, control = mean_arm("t", 1922.7, 94698.29, 2461), mean_arm("c", 1196.87, 37377.9767, 2507)

    _, [comparison] = statistics.compare("mean", control, [test], StatsSettings())

    assert difference("mean", test, control).value == pytest.approx(0.63646, **POSTHOG)
    assert comparison.credible_interval == pytest.approx([-0.0873, 1.36026], **POSTHOG)
    assert comparison.chance_to_win == pytest.approx(0.95759, **POSTHOG)


def test_posthog_absolute_effect_size():
    test, control = mean_arm("t", 550, 3050, 100), mean_arm("c", 500, 2550, 100)

    result = difference("mean", test, control, "absolute")

    assert result.value == pytest.approx(0.5, abs=1e-10)
    assert result.variance == pytest.approx((3050 - 550**2 / 100) / 99 / 100 + (2550 - 500**2 / 100) / 99 / 100, abs=1e-6)


@pytest.mark.parametrize(
    "test, control",
    [
        # PostHog's numerical-stability cases: tiny but real variances must survive the rounding check.
        (mean_arm("t", 10_500_000, 110_250_001, 1_000_000), mean_arm("c", 10_000_000, 100_000_001, 1_000_000)),
        (mean_arm("t", 10001, 10002.0002, 10000), mean_arm("c", 10000, 10000.0001, 10000)),
        (mean_arm("t", 10000, 100001, 1000), mean_arm("c", 9999, 99990.001, 1000)),
    ],
    ids=["large-numbers", "small-differences", "very-small-variances"],
)
def test_posthog_small_variances_still_give_statistics(test, control):
    _, [comparison] = statistics.compare("mean", control, [test], StatsSettings())

    assert comparison.validation_failures == [] and 0 <= comparison.chance_to_win <= 1
    assert comparison.chance_to_win > 0.5


def gbstats(value):
    return round(value, 5)


# gbstats' TwoSidedTTest(stat_a=control, stat_b=treatment).
GB_CONTROL, GB_TREATMENT = mean_arm("c", 1396.87, 52377.9767, 3407), mean_arm("t", 2422.7, 134698.29, 3461)


@pytest.mark.parametrize(
    "difference_type, expected, interval, stddev, p_value",
    [("relative", 0.70732, [-0.03526, 1.44989], 0.37879, 0.06191), ("absolute", 0.29, [0.04538, 0.53462], 0.12478, 0.02016)],
)
def test_gbstats_two_sided_ttest(difference_type, expected, interval, stddev, p_value):
    settings = StatsSettings(method="frequentist", difference_type=difference_type)

    _, [comparison] = statistics.compare("mean", GB_CONTROL, [GB_TREATMENT], settings)
    result = difference("mean", GB_TREATMENT, GB_CONTROL, difference_type)

    assert gbstats(result.value) == expected and gbstats(result.variance**0.5) == stddev
    assert [gbstats(bound) for bound in comparison.confidence_interval] == interval
    assert gbstats(comparison.p_value) == p_value


def test_gbstats_two_sided_ttest_binomial():
    # 28 and 30 entities: below the service's 50-exposure minimum, so the test itself is called.
    result = difference("funnel", proportion_arm("t", 16, 30), proportion_arm("c", 14, 28))

    comparison = statistics.frequentist(result, alpha=0.05)

    assert gbstats(result.value) == 0.06667 and gbstats(result.variance**0.5) == 0.2717
    assert [gbstats(bound) for bound in comparison.confidence_interval] == [-0.47767, 0.61101]
    assert gbstats(comparison.p_value) == 0.80707


@pytest.mark.parametrize(
    "metric_type, control, treatment, tuning, expected, interval, stddev, p_value",
    [
        (
            "mean", mean_arm("c", 1396.87, 52377.9767, 3000), mean_arm("t", 2422.7, 134698.29, 3461), 1000,
            0.50336, [-0.55844, 1.56516], 0.33341, 1.0,
        ),
        (
            "funnel", proportion_arm("c", 1396, 3000), proportion_arm("t", 2422, 3461), 5000,
            0.50386, [0.40098, 0.60675], 0.03386, 0.0,
        ),
    ],
    ids=["sample-mean", "proportion"],
)
def test_gbstats_sequential_ttest(metric_type, control, treatment, tuning, expected, interval, stddev, p_value):
    settings = StatsSettings(method="frequentist", sequential=True, sequential_tuning_parameter=tuning)

    _, [comparison] = statistics.compare(metric_type, control, [treatment], settings)
    result = difference(metric_type, treatment, control)

    assert gbstats(result.value) == expected and gbstats(result.variance**0.5) == stddev
    assert [gbstats(bound) for bound in comparison.confidence_interval] == interval
    assert gbstats(comparison.p_value) == p_value


def test_gbstats_sequential_interval_is_tightest_near_the_tuning_parameter():
    control, treatment = mean_arm("c", 1396.87, 52377.9767, 3000), mean_arm("t", 2422.7, 134698.29, 3461)

    def width(tuning):
        settings = StatsSettings(method="frequentist", sequential=True, sequential_tuning_parameter=tuning)
        low, high = statistics.compare("mean", control, [treatment], settings)[1][0].confidence_interval
        return high - low

    assert width(6461) < width(10000) < width(10)


def cuped_arm(key, post, pre):
    return VariantAggregate(
        key=key, number_of_samples=len(post), sum=float(post.sum()), sum_squares=float((post**2).sum()),
        covariate_sum=float(pre.sum()), covariate_sum_squares=float((pre**2).sum()),
        covariate_sum_product=float((post * pre).sum()),
    )


def test_posthog_cuped_theta_and_variance_reduction_with_correlated_data():
    # PostHog's test_variance_reduction_with_correlated_data: post = 2·pre + noise, θ ≈ 2, > 50 % reduced.
    rng = np.random.default_rng(42)
    pre_t, pre_c = rng.normal(10, 3, 1000), rng.normal(10, 3, 1000)
    post_t, post_c = 2 * pre_t + rng.normal(0.5, 1, 1000), 2 * pre_c + rng.normal(0, 1, 1000)

    test, control, cuped = statistics.cuped_adjust("mean", cuped_arm("t", post_t, pre_t), cuped_arm("c", post_c, pre_c))

    assert cuped.theta == pytest.approx(2.0, abs=0.05)
    assert cuped.variance_reduction > 0.5 and cuped.baseline_variance_reduction > 0.5
    assert test.variance < post_t.var(ddof=1) and control.variance < post_c.var(ddof=1)
    # The adjusted difference is the raw one less θ times the covariate's difference.
    assert test.mean - control.mean == pytest.approx(post_t.mean() - post_c.mean() - cuped.theta * (pre_t.mean() - pre_c.mean()))


def test_posthog_cuped_no_adjustment_when_pre_variance_is_zero():
    test = VariantAggregate("t", 100, 500.0, 3000.0, covariate_sum=500.0, covariate_sum_squares=2500.0, covariate_sum_product=2500.0)
    control = VariantAggregate("c", 100, 480.0, 2800.0, covariate_sum=500.0, covariate_sum_squares=2500.0, covariate_sum_product=2400.0)

    adjusted_test, adjusted_control, cuped = statistics.cuped_adjust("mean", test, control)

    assert (cuped.theta, cuped.variance_reduction, cuped.baseline_variance_reduction) == (0.0, 0.0, 0.0)
    assert (adjusted_test.mean, adjusted_control.mean) == (5.0, 4.8)
