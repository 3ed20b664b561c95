"""GET .../results/: every statistic checked against an independent computation on the raw data."""

import numpy as np
import pytest
from scipy import stats

from tests.results.helpers import (
    START,
    create_experiment,
    event,
    flag_called,
    insert_events,
    mean_metric,
    minutes,
    results_for,
)

TOLERANCE = {"rel": 1e-9, "abs": 1e-12}


def expected_bayesian(effect: float, variance: float, ci: float = 0.95):
    sd = np.sqrt(variance)
    chance = 1 - stats.norm.cdf(0, loc=effect, scale=sd)
    low, high = stats.norm.interval(ci, loc=effect, scale=sd)
    return chance, [low, high]


def expected_frequentist(effect: float, variance: float, df: float, alpha: float = 0.05):
    se = np.sqrt(variance)
    p = 2 * (1 - stats.t.cdf(abs(effect / se), df))
    q = stats.t.ppf(1 - alpha / 2, df)
    return p, [effect - q * se, effect + q * se]


def assert_statistics(variant, method, effect, test_term, control_term, n_test, n_control, raw, alpha=0.05):
    """The reported statistics against plain formulas on the delta-method variance terms; Welch's
    df from the raw per-arm variances over n (`raw`), as PostHog's."""
    variance = test_term + control_term
    if method == "bayesian":
        chance, interval = expected_bayesian(effect, variance)
        assert variant["chance_to_win"] == pytest.approx(chance, **TOLERANCE)
        assert variant["credible_interval"] == pytest.approx(interval, **TOLERANCE)
        assert variant["significant"] == bool(chance > 0.95 or chance < 0.05)
    else:
        raw_test, raw_control = raw
        df = (raw_test + raw_control) ** 2 / (raw_test**2 / (n_test - 1) + raw_control**2 / (n_control - 1))
        p_value, interval = expected_frequentist(effect, variance, df, alpha)
        assert variant["p_value"] == pytest.approx(p_value, **TOLERANCE)
        assert variant["confidence_interval"] == pytest.approx(interval, **TOLERANCE)
        assert variant["significant"] == bool(p_value < alpha)


def build_population(seed: int, flag_key: str, sizes=(("control", 120), ("test", 140))):
    """Exposed users with purchases (count and amounts), pageviews, cart adds and noise around them."""
    rng = np.random.default_rng(seed)
    rows, people = [], {}
    for variant, size in sizes:
        lift = 1.0 if variant == "control" else 1.35
        for i in range(size):
            user = f"{variant}-{i}"
            exposed_at = START + minutes(i + 1)
            rows.append(flag_called(user, flag_key, variant, exposed_at))
            rows.append(flag_called(user, flag_key, variant, exposed_at + minutes(30)))  # repeat: same variant
            rows.append(event("purchase", user, exposed_at - minutes(5), {"amount": 1000}))  # before exposure
            amounts = [float(a) for a in np.round(rng.gamma(2.0, 10.0 * lift, rng.poisson(1.2 * lift)), 2)]
            for k, amount in enumerate(amounts):
                rows.append(event("purchase", user, exposed_at + minutes(10 + 7 * k), {"amount": amount}))
            pageviews = int(rng.poisson(3)) + 1
            for k in range(pageviews):
                rows.append(event("$pageview", user, exposed_at + minutes(2 + k)))
            # funnel: cart at +1 min for some; those who also purchase after it convert
            carted = bool(rng.random() < 0.7)
            if carted:
                rows.append(event("add_to_cart", user, exposed_at + minutes(1)))
            people[user] = {
                "variant": variant,
                "purchases": len(amounts),
                "amount": sum(amounts),
                "pageviews": pageviews,
                "converted": carted and len(amounts) > 0,
            }
    # Someone who saw both variants is excluded, and nobody counts before exposure.
    for i in range(7):
        user = f"both-{i}"
        rows.append(flag_called(user, flag_key, "control", START + minutes(1)))
        rows.append(flag_called(user, flag_key, "test", START + minutes(2)))
        rows.append(event("purchase", user, START + minutes(3), {"amount": 5}))
    return rows, people


def values(people, variant, field):
    return np.array([float(p[field]) for p in people.values() if p["variant"] == variant])


@pytest.mark.parametrize("method", ["bayesian", "frequentist"])
@pytest.mark.parametrize(
    "source, field",
    [({}, "purchases"), ({"math": "sum", "math_property": "amount"}, "amount")],
    ids=["count", "property-sum"],
)
async def test_mean_metric_matches_independent_statistics(app, kit, method, source, field):
    metric = mean_metric("purchase", **source)
    created = await create_experiment(app, kit.project_id, metrics=[metric], stats_config={"method": method})
    rows, people = build_population(11, created.flag_key)
    await insert_events(app, kit.project_id, rows)

    body = await results_for(kit, created.id)

    assert body["exposures"] == {"control": 120, "test": 140, "$multiple": 7}
    [result] = body["results"]
    assert result["metric_uuid"] == metric["uuid"] and result["metric_type"] == "mean"
    assert result["method"] == method and result["error"] is None
    control, test = values(people, "control", field), values(people, "test", field)
    baseline = result["baseline"]
    assert baseline["key"] == "control" and baseline["number_of_samples"] == 120
    assert baseline["sum"] == pytest.approx(control.sum(), **TOLERANCE)
    assert baseline["sum_squares"] == pytest.approx((control**2).sum(), **TOLERANCE)
    [variant] = result["variant_results"]
    assert variant["key"] == "test" and variant["number_of_samples"] == 140
    assert variant["sum"] == pytest.approx(test.sum(), **TOLERANCE)
    assert variant["sum_squares"] == pytest.approx((test**2).sum(), **TOLERANCE)
    mean_t, mean_c = test.mean(), control.mean()
    test_term = test.var(ddof=1) / (len(test) * mean_c**2)
    control_term = mean_t**2 * control.var(ddof=1) / (len(control) * mean_c**4)
    raw = (test.var(ddof=1) / len(test), control.var(ddof=1) / len(control))
    assert_statistics(variant, method, mean_t / mean_c - 1, test_term, control_term, len(test), len(control), raw)
    assert ("p_value" in variant) == (method == "frequentist")
    assert ("chance_to_win" in variant) == (method == "bayesian")
    assert variant["validation_failures"] == [] and baseline["validation_failures"] == []


@pytest.mark.parametrize("method", ["bayesian", "frequentist"])
async def test_funnel_metric_is_a_proportion_of_ordered_conversions(app, kit, method):
    metric = {
        "kind": "ExperimentMetric",
        "metric_type": "funnel",
        "uuid": "funnel-1",
        "series": [{"kind": "EventsNode", "event": "add_to_cart"}, {"kind": "EventsNode", "event": "purchase"}],
    }
    created = await create_experiment(app, kit.project_id, metrics=[metric], stats_config={"method": method})
    rows, people = build_population(12, created.flag_key)
    # A purchase before the cart add, then a cart add: not converted (steps out of order).
    rows += [
        flag_called("out-of-order", created.flag_key, "test", START),
        event("purchase", "out-of-order", START + minutes(1)),
        event("add_to_cart", "out-of-order", START + minutes(2)),
    ]
    await insert_events(app, kit.project_id, rows)

    [result] = (await results_for(kit, created.id))["results"]

    control = values(people, "control", "converted")
    test = np.append(values(people, "test", "converted"), 0.0)
    baseline, [variant] = result["baseline"], result["variant_results"]
    assert (baseline["number_of_samples"], baseline["sum"]) == (len(control), control.sum())
    assert (variant["number_of_samples"], variant["sum"], variant["sum_squares"]) == (len(test), test.sum(), test.sum())
    assert variant["step_counts"][1] == test.sum()
    p_c, p_t = control.mean(), test.mean()
    var_c, var_t = p_c * (1 - p_c), p_t * (1 - p_t)
    a, b = var_t / (len(test) * p_c**2), p_t**2 * var_c / (len(control) * p_c**4)
    raw = (var_t / len(test), var_c / len(control))
    assert_statistics(variant, method, p_t / p_c - 1, a, b, len(test), len(control), raw)


@pytest.mark.parametrize("method", ["bayesian", "frequentist"])
async def test_ratio_metric_uses_the_delta_method_with_covariance(app, kit, method):
    metric = {
        "kind": "ExperimentMetric",
        "metric_type": "ratio",
        "uuid": "ratio-1",
        "numerator": {"kind": "EventsNode", "event": "purchase", "math": "sum", "math_property": "amount"},
        "denominator": {"kind": "EventsNode", "event": "$pageview"},
    }
    created = await create_experiment(
        app, kit.project_id, metrics=[metric], stats_config={"method": method, "frequentist": {"alpha": 0.1}}
    )
    rows, people = build_population(13, created.flag_key)
    await insert_events(app, kit.project_id, rows)

    [result] = (await results_for(kit, created.id))["results"]

    baseline, [variant] = result["baseline"], result["variant_results"]
    estimates = {}
    for name, reported in (("control", baseline), ("test", variant)):
        num, den = values(people, name, "amount"), values(people, name, "pageviews")
        assert reported["sum"] == pytest.approx(num.sum(), **TOLERANCE)
        assert reported["denominator_sum"] == pytest.approx(den.sum(), **TOLERANCE)
        assert reported["denominator_sum_squares"] == pytest.approx((den**2).sum(), **TOLERANCE)
        assert reported["numerator_denominator_sum_product"] == pytest.approx((num * den).sum(), **TOLERANCE)
        covariance = np.cov(num, den, ddof=1)
        m_num, m_den = num.mean(), den.mean()
        variance = (
            covariance[0, 0] / m_den**2 - 2 * m_num * covariance[0, 1] / m_den**3 + m_num**2 * covariance[1, 1] / m_den**4
        )
        estimates[name] = (num.sum() / den.sum(), variance, len(num))
    (mu_c, v_c, n_c), (mu_t, v_t, n_t) = estimates["control"], estimates["test"]
    a, b = v_t / (n_t * mu_c**2), mu_t**2 * v_c / (n_c * mu_c**4)
    assert_statistics(variant, method, mu_t / mu_c - 1, a, b, n_t, n_c, (v_t / n_t, v_c / n_c), alpha=0.1)


async def test_srm_is_a_chi_square_against_the_configured_split(app, kit):
    created = await create_experiment(
        app, kit.project_id, variants=(("control", 50), ("test", 25), ("test2", 25)), metrics=[mean_metric()]
    )
    counts = {"control": 300, "test": 100, "test2": 160}
    rows = [
        flag_called(f"{variant}-{i}", created.flag_key, variant, START + minutes(i))
        for variant, size in counts.items()
        for i in range(size)
    ]
    await insert_events(app, kit.project_id, rows)

    body = await results_for(kit, created.id)

    observed = np.array([300, 100, 160])
    expected = observed.sum() * np.array([0.5, 0.25, 0.25])
    chi2 = ((observed - expected) ** 2 / expected).sum()
    p_value = stats.chi2.sf(chi2, df=2)
    assert body["srm"]["p_value"] == pytest.approx(p_value, **TOLERANCE)
    assert body["srm"]["failed"] is bool(p_value < 0.001)
    assert body["srm"]["observed"] == counts
    assert body["srm"]["expected"] == pytest.approx(dict(zip(counts, expected)), **TOLERANCE)
    assert [v["key"] for v in body["results"][0]["variant_results"]] == ["test", "test2"]
