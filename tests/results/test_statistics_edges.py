"""Edge cases of the statistics on plain aggregates (the HTTP tests cover the same through the API)."""

import math

import numpy as np
import pytest
from scipy import stats

from experiments_service.results import statistics
from experiments_service.results.statistics import StatsSettings, VariantAggregate


def aggregate(key, n, total, squares=None):
    return VariantAggregate(key=key, number_of_samples=n, sum=total, sum_squares=total if squares is None else squares)


def from_values(key, values):
    values = np.asarray(values, dtype=float)
    return VariantAggregate(key=key, number_of_samples=len(values), sum=float(values.sum()), sum_squares=float((values**2).sum()))


@pytest.mark.parametrize("method", ["bayesian", "frequentist"])
def test_zero_variance_gives_no_statistics(method):
    control, test = from_values("control", [10.0] * 100), from_values("test", [11.0] * 100)

    _, [comparison] = statistics.compare("mean", control, [test], StatsSettings(method=method))

    assert comparison.validation_failures == ["zero_variance"]
    assert comparison.significant is None and comparison.chance_to_win is None and comparison.p_value is None


def test_variance_lost_to_rounding_counts_as_zero():
    rng = np.random.default_rng(3)
    control = from_values("control", 1e9 + rng.normal(0, 1, 200))
    test = from_values("test", 1e9 + 5 + rng.normal(0, 1, 200))

    _, [comparison] = statistics.compare("mean", control, [test], StatsSettings(method="frequentist"))

    assert comparison.validation_failures == ["zero_variance"] and comparison.significant is None


def test_goal_never_inverts_chance_to_win():
    control, test = aggregate("control", 500, 100.0), aggregate("test", 500, 130.0)

    [comparison] = statistics.compare("funnel", control, [test], StatsSettings())[1]

    assert comparison.chance_to_win > 0.95


def test_negative_baseline_is_refused_for_relative_effects_only():
    rng = np.random.default_rng(5)
    control, test = from_values("control", rng.normal(-10, 2, 300)), from_values("test", rng.normal(-5, 2, 300))

    relative_failures, [relative] = statistics.compare("mean", control, [test], StatsSettings())
    _, [absolute] = statistics.compare("mean", control, [test], StatsSettings(difference_type="absolute"))

    assert relative_failures == ["baseline_mean_is_negative"] and relative.significant is None
    assert absolute.chance_to_win > 0.999 and absolute.credible_interval[0] > 4


def test_ratio_with_empty_denominators_is_reported():
    empty = VariantAggregate("x", 60, 0.0, 0.0, denominator_sum=0.0, denominator_sum_squares=0.0, sum_of_products=0.0)
    full = VariantAggregate("y", 60, 5.0, 5.0, denominator_sum=10.0, denominator_sum_squares=12.0, sum_of_products=6.0)

    baseline_failures, [comparison] = statistics.compare("ratio", empty, [full], StatsSettings())
    _, [test_empty] = statistics.compare("ratio", full, [empty], StatsSettings())

    assert baseline_failures == ["baseline_mean_is_zero"] and comparison.chance_to_win is None
    assert test_empty.validation_failures == ["denominator_is_zero"] and test_empty.significant is None


def test_proportions_need_five_failures_per_arm():
    control, test = aggregate("control", 100, 50.0), aggregate("test", 100, 96.0)

    _, [comparison] = statistics.compare("funnel", control, [test], StatsSettings())

    assert comparison.validation_failures == ["not_enough_metric_data"]


def test_welch_degrees_of_freedom_come_from_the_raw_variances():
    rng = np.random.default_rng(8)
    a, b = rng.normal(10, 3, 80), rng.normal(11, 6, 120)

    [comparison] = statistics.compare("mean", from_values("c", a), [from_values("t", b)], StatsSettings(method="frequentist"))[1]

    # The absolute form is exactly scipy's Welch test; the relative one shares its df.
    welch = stats.ttest_ind(b, a, equal_var=False)
    [absolute] = statistics.compare(
        "mean", from_values("c", a), [from_values("t", b)], StatsSettings(method="frequentist", difference_type="absolute")
    )[1]
    assert absolute.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    effect = statistics.effect(statistics.estimate("mean", from_values("t", b)), statistics.estimate("mean", from_values("c", a)), "relative")
    assert effect.degrees_of_freedom == pytest.approx(welch.df, rel=1e-9)
    assert comparison.p_value == pytest.approx(2 * stats.t.sf(abs(effect.value) / math.sqrt(effect.variance), welch.df), rel=1e-9)


def test_srm_without_exposures_has_no_p_value():
    result = statistics.sample_ratio_mismatch({}, {"control": 50, "test": 50})

    assert (result.p_value, result.failed) == (None, False)
    assert result.expected == {"control": 0.0, "test": 0.0}
    assert result.observed == {"control": 0, "test": 0}


def test_srm_needs_a_hundred_exposures():
    assert statistics.sample_ratio_mismatch({"control": 90, "test": 9}, {"control": 50, "test": 50}).p_value is None
    assert statistics.sample_ratio_mismatch({"control": 91, "test": 9}, {"control": 50, "test": 50}).failed is True


def test_srm_flags_a_gross_imbalance():
    result = statistics.sample_ratio_mismatch({"control": 1000, "test": 800}, {"control": 50, "test": 50})

    assert result.failed is True and result.p_value < 0.001


def test_holm_and_benjamini_hochberg_adjustments():
    p_values = [0.01, 0.04, 0.03, 0.005]

    assert statistics.adjust_p_values(p_values, "holm-bonferroni") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert statistics.adjust_p_values(p_values, "benjamini-hochberg") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert statistics.adjust_p_values([], "holm-bonferroni") == []
