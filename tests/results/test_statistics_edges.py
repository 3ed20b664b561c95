"""Edge cases of the statistics that fixed data through the API does not reach."""

import pytest

from experiments_service.results import statistics
from experiments_service.results.statistics import StatsSettings, VariantAggregate


def aggregate(key, n, total, squares=None):
    return VariantAggregate(key=key, number_of_samples=n, sum=total, sum_squares=total if squares is None else squares)


def test_identical_constant_variants_are_not_significant():
    control, test = aggregate("control", 100, 100.0), aggregate("test", 100, 100.0)

    [bayes] = statistics.compare("mean", control, [test], StatsSettings())[1]
    [freq] = statistics.compare("mean", control, [test], StatsSettings(method="frequentist"))[1]

    assert (bayes.chance_to_win, bayes.credible_interval, bayes.significant) == (0.5, [0.0, 0.0], False)
    assert (freq.p_value, freq.confidence_interval, freq.significant) == (1.0, [0.0, 0.0], False)


def test_decrease_goal_flips_chance_to_win():
    control, test = aggregate("control", 500, 100.0), aggregate("test", 500, 130.0)

    [up] = statistics.compare("funnel", control, [test], StatsSettings())[1]
    [down] = statistics.compare("funnel", control, [test], StatsSettings(lower_is_better=True))[1]

    assert down.chance_to_win == pytest.approx(1 - up.chance_to_win, abs=1e-12)
    assert down.credible_interval == up.credible_interval


def test_ratio_with_empty_baseline_denominator_is_reported():
    control = VariantAggregate("control", 60, 0.0, 0.0, denominator_sum=0.0, denominator_sum_squares=0.0,
                               sum_of_products=0.0)
    test = VariantAggregate("test", 60, 5.0, 5.0, denominator_sum=10.0, denominator_sum_squares=12.0,
                            sum_of_products=6.0)

    failures, [comparison] = statistics.compare("ratio", control, [test], StatsSettings())

    assert failures == ["baseline_mean_is_zero"] and comparison.chance_to_win is None


def test_srm_without_exposures_has_no_p_value():
    result = statistics.sample_ratio_mismatch({}, {"control": 50, "test": 50})

    assert (result.p_value, result.failed) == (None, False)
    assert result.expected == {"control": 0.0, "test": 0.0}
    assert result.observed == {"control": 0, "test": 0}


def test_srm_flags_a_gross_imbalance():
    result = statistics.sample_ratio_mismatch({"control": 1000, "test": 800}, {"control": 50, "test": 50})

    assert result.failed is True and result.p_value < 0.001
