"""Statistics at the edges through HTTP: events captured with `POST /batch/`, experiments created
with the API, results read from `GET .../results/`."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def exposure(flag_key: str, user: str, variant: str, at: datetime) -> dict:
    return {
        "event": "$feature_flag_called", "distinct_id": user, "timestamp": at.isoformat(),
        "properties": {"$feature_flag": flag_key, "$feature_flag_response": variant},
    }


def action(name: str, user: str, at: datetime, **properties) -> dict:
    return {"event": name, "distinct_id": user, "timestamp": at.isoformat(), "properties": properties}


def arm(flag_key: str, variant: str, amounts, event: str = "purchase") -> list[dict]:
    """One exposed user per amount; a user with an amount (not None) buys once, after exposure."""
    rows = []
    for index, amount in enumerate(amounts):
        user = f"{flag_key}-{variant}-{index}"
        exposed_at = START + timedelta(minutes=1, seconds=index)
        rows.append(exposure(flag_key, user, variant, exposed_at))
        if amount is not None:
            rows.append(action(event, user, exposed_at + timedelta(minutes=5), amount=float(amount)))
    return rows


def mean(math: str = "sum", event: str = "purchase", **extra) -> dict:
    source = {"kind": "EventsNode", "event": event, "math": math}
    if math != "total":
        source["math_property"] = "amount"
    return {"kind": "ExperimentMetric", "metric_type": "mean", "uuid": str(uuid.uuid4()), "source": source, **extra}


async def capture(kit, rows: list[dict]) -> None:
    for first in range(0, len(rows), 2000):
        response = await kit.client.post("/batch/", json={"api_key": kit.project_api_key, "batch": rows[first : first + 2000]})
        assert response.status_code == 200, response.text


async def experiment(kit, metrics: list[dict], stats_config: dict | None = None, start: datetime = START) -> tuple[int, str]:
    key = f"stats-{uuid.uuid4().hex[:8]}"
    response = await kit.client.post(f"{kit.base}/experiments/", headers=kit.headers, json={
        "name": key,
        "feature_flag_key": key,
        "start_date": start.isoformat(),
        "parameters": {"feature_flag_variants": [
            {"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50},
        ]},
        "metrics": metrics,
        "stats_config": stats_config or {"method": "bayesian"},
        "allow_unknown_events": True,
    })
    assert response.status_code == 201, response.text
    return response.json()["id"], key


async def results(kit, experiment_id: int, **params) -> dict:
    response = await kit.client.get(f"{kit.base}/experiments/{experiment_id}/results/", headers=kit.headers, params=params)
    assert response.status_code == 200, response.text
    # Strict JSON: no NaN or Infinity anywhere in the answer.
    json.loads(response.text, parse_constant=lambda name: pytest.fail(f"{name} in the answer"))
    return response.json()


async def run(kit, metrics, rows_for, stats_config=None) -> list[dict]:
    experiment_id, key = await experiment(kit, metrics, stats_config)
    await capture(kit, rows_for(key))
    return (await results(kit, experiment_id))["results"]


def no_statistics(variant: dict, method: str) -> bool:
    fields = ("p_value", "confidence_interval") if method == "frequentist" else ("chance_to_win", "credible_interval")
    return variant["significant"] is None and all(variant[name] is None for name in fields)


class TestNoVerdictFromDegenerateData:
    @pytest.mark.parametrize("method", ["bayesian", "frequentist"])
    async def test_zero_variance_with_different_means(self, kit, method):
        [result] = await run(
            kit, [mean()], lambda key: arm(key, "control", [10] * 60) + arm(key, "test", [11] * 60), {"method": method}
        )

        [variant] = result["variant_results"]
        assert variant["method"] == method and variant["validation_failures"] == ["zero_variance"]
        assert no_statistics(variant, method)
        assert (variant["sum"], variant["sum_squares"]) == (660.0, 7260.0)

    async def test_values_near_a_billion_with_sd_one(self, kit):
        rng = np.random.default_rng(1)
        amounts = lambda shift: [float(1e9 + shift + round(x, 3)) for x in rng.normal(0, 1, 60)]  # noqa: E731
        [result] = await run(
            kit, [mean()], lambda key: arm(key, "control", amounts(0)) + arm(key, "test", amounts(3)),
            {"method": "frequentist"},
        )

        [variant] = result["variant_results"]
        assert variant["validation_failures"] == ["zero_variance"] and no_statistics(variant, "frequentist")

    async def test_ratio_whose_test_denominators_are_all_zero(self, kit):
        metric = {
            "kind": "ExperimentMetric", "metric_type": "ratio", "uuid": "ratio",
            "numerator": {"kind": "EventsNode", "event": "purchase", "math": "sum", "math_property": "amount"},
            "denominator": {"kind": "EventsNode", "event": "$pageview"},
        }

        def rows(key):
            data = arm(key, "control", [5] * 60) + arm(key, "test", [7] * 60)
            return data + [action("$pageview", f"{key}-control-{i}", START + timedelta(minutes=3)) for i in range(60)]

        [result] = await run(kit, [metric], rows)

        [variant] = result["variant_results"]
        assert result["baseline"]["validation_failures"] == []
        assert variant["validation_failures"] == ["denominator_is_zero"] and no_statistics(variant, "bayesian")
        assert variant["numerator_denominator_sum_product"] == 0.0 and variant["denominator_sum"] == 0.0
        assert result["baseline"]["numerator_denominator_sum_product"] == 300.0

    @pytest.mark.parametrize("method", ["bayesian", "frequentist"])
    async def test_negative_baseline_is_refused_for_a_relative_effect(self, kit, method):
        rng = np.random.default_rng(2)
        amounts = lambda centre: [round(float(x), 2) for x in rng.normal(centre, 1, 60)]  # noqa: E731
        [result] = await run(
            kit, [mean()], lambda key: arm(key, "control", amounts(-10)) + arm(key, "test", amounts(-5)),
            {"method": method},
        )

        assert result["baseline"]["validation_failures"] == ["baseline_mean_is_negative"]
        assert no_statistics(result["variant_results"][0], method)

    async def test_proportion_needs_five_failures_in_every_arm(self, kit):
        funnel = {
            "kind": "ExperimentMetric", "metric_type": "funnel", "uuid": "funnel",
            "series": [{"kind": "EventsNode", "event": "purchase"}],
        }
        [result] = await run(
            kit, [funnel], lambda key: arm(key, "control", [1] * 30 + [None] * 30) + arm(key, "test", [1] * 57 + [None] * 3)
        )

        [variant] = result["variant_results"]
        assert variant["validation_failures"] == ["not_enough_metric_data"] and no_statistics(variant, "bayesian")
        assert result["baseline"]["validation_failures"] == []


class TestWireMeaning:
    async def test_decrease_goal_does_not_invert_chance_to_win(self, kit):
        rng = np.random.default_rng(4)
        amounts = lambda centre: [round(float(x), 2) for x in rng.normal(centre, 3, 80)]  # noqa: E731
        metrics = [mean(uuid="up", goal="increase"), mean(uuid="down", goal="decrease")]

        up, down = await run(kit, metrics, lambda key: arm(key, "control", amounts(20)) + arm(key, "test", amounts(23)))

        assert up["variant_results"][0]["chance_to_win"] > 0.99
        assert down["variant_results"][0]["chance_to_win"] == up["variant_results"][0]["chance_to_win"]

    async def test_one_absurd_value_fails_its_metric_alone(self, kit):
        metrics = [mean(uuid="amount"), mean(math="total", event="$pageview", uuid="count")]
        rng = np.random.default_rng(6)
        amounts = [float(x) for x in rng.integers(1, 20, 60)]

        def rows(key):
            pageviews = [
                action("$pageview", f"{key}-{variant}-{i}", START + timedelta(minutes=9, seconds=k))
                for variant in ("control", "test") for i in range(60) for k in range(i % 4)
            ]
            return arm(key, "control", amounts) + arm(key, "test", [1e200] + amounts[1:]) + pageviews

        amount, count = await run(kit, metrics, rows)

        assert amount["error"] and "range" in amount["error"] and amount["baseline"] is None
        assert count["error"] is None and count["variant_results"][0]["validation_failures"] == []
        assert count["variant_results"][0]["number_of_samples"] == 60

    async def test_srm_needs_a_hundred_exposures(self, kit):
        experiment_id, key = await experiment(kit, [mean()])
        await capture(kit, arm(key, "control", [None] * 90) + arm(key, "test", [None] * 9))

        assert (await results(kit, experiment_id))["srm"]["p_value"] is None
        await capture(kit, [exposure(key, "late", "control", START + timedelta(hours=1))])
        srm = (await results(kit, experiment_id))["srm"]
        assert srm["p_value"] < 0.001 and srm["failed"] is True

    async def test_absolute_difference(self, kit):
        rng = np.random.default_rng(9)
        control, test = rng.normal(-10, 2, 70).round(2), rng.normal(-7, 2, 70).round(2)
        [result] = await run(
            kit, [mean()], lambda key: arm(key, "control", control) + arm(key, "test", test),
            {"method": "frequentist", "frequentist": {"difference_type": "absolute"}},
        )

        [variant] = result["variant_results"]
        assert result["difference_type"] == "absolute"
        low, high = variant["confidence_interval"]
        assert low < test.mean() - control.mean() < high and low > 0
        assert variant["p_value"] < 1e-6 and variant["significant"] is True

    async def test_invalid_stats_config_is_a_400(self, kit):
        experiment_id, _ = await experiment(kit, [mean()], {"method": "frequentist", "p_value_correction": "sidak"})

        response = await kit.client.get(f"{kit.base}/experiments/{experiment_id}/results/", headers=kit.headers)

        assert response.status_code == 400
        assert response.json()["attr"] == "stats_config" and "p_value_correction" in response.json()["detail"]


def entity_amounts(amounts) -> np.ndarray:
    return np.array([0.0 if amount is None else float(amount) for amount in amounts])


class TestOutlierHandling:
    @pytest.mark.parametrize("ignore_zeros", [False, True])
    async def test_values_are_capped_at_percentiles_of_all_entities(self, kit, ignore_zeros):
        rng = np.random.default_rng(10)
        control = [None] * 20 + [float(x) for x in rng.integers(5, 15, 39)] + [10_000.0]
        test = [None] * 25 + [float(x) for x in rng.integers(6, 16, 35)]
        metric = mean(lower_bound_percentile=0.1, upper_bound_percentile=0.9, ignore_zeros=ignore_zeros)

        [result] = await run(kit, [metric], lambda key: arm(key, "control", control) + arm(key, "test", test))

        pooled = np.sort(np.concatenate([entity_amounts(control), entity_amounts(test)]))
        lower = pooled[int(0.1 * len(pooled))]
        upper_population = pooled[pooled != 0] if ignore_zeros else pooled
        upper = upper_population[int(0.9 * len(upper_population))]
        for reported, amounts in ((result["baseline"], control), (result["variant_results"][0], test)):
            capped = np.clip(entity_amounts(amounts), lower, upper)
            assert reported["sum"] == pytest.approx(capped.sum(), rel=1e-12)
            assert reported["sum_squares"] == pytest.approx((capped**2).sum(), rel=1e-12)
        assert result["baseline"]["sum"] < 2000

    async def test_a_bound_outside_zero_to_one_is_the_metrics_error(self, kit):
        [result] = await run(kit, [mean(upper_bound_percentile=1.5)], lambda key: arm(key, "control", [1] * 3))

        assert "upper_bound_percentile" in result["error"] and result["baseline"] is None


class TestRetention:
    async def test_share_of_starters_who_return_inside_the_window(self, kit):
        metric = {
            "kind": "ExperimentMetric", "metric_type": "retention", "uuid": "retention",
            "start_event": {"kind": "EventsNode", "event": "signup"},
            "completion_event": {"kind": "EventsNode", "event": "login"},
            "retention_window_start": 1, "retention_window_end": 3, "retention_window_unit": "hour",
        }
        outcomes = {"control": [1] * 20 + [0] * 35 + [None] * 10, "test": [1] * 35 + [0] * 25 + [None] * 5}

        def rows(key):
            data = []
            for variant, users in outcomes.items():
                for index, outcome in enumerate(users):
                    user = f"{key}-{variant}-{index}"
                    exposed = START + timedelta(minutes=1)
                    data.append(exposure(key, user, variant, exposed))
                    if outcome is None:
                        continue  # never started: not in the denominator
                    started = exposed + timedelta(minutes=2)
                    data.append(action("signup", user, started))
                    # Returned in the same hour (too early), two hours on (retained), or six hours on (too late).
                    data.append(action("login", user, started + timedelta(minutes=5)))
                    data.append(action("login", user, started + timedelta(hours=2 if outcome else 6)))
            return data

        experiment_id, key = await experiment(kit, [metric], {"method": "frequentist"})
        await capture(kit, rows(key))
        body = await results(kit, experiment_id)

        [result] = body["results"]
        baseline, [variant] = result["baseline"], result["variant_results"]
        assert result["error"] is None and result["metric_type"] == "retention"
        assert (baseline["number_of_samples"], baseline["sum"], baseline["denominator_sum"]) == (55, 20.0, 55.0)
        assert (variant["number_of_samples"], variant["sum"], variant["denominator_sum"]) == (60, 35.0, 60.0)
        assert variant["numerator_denominator_sum_product"] == 35.0 and variant["denominator_sum_squares"] == 60.0
        p_c, p_t = 20 / 55, 35 / 60
        var_c, var_t = p_c * (1 - p_c) * 55 / 54, p_t * (1 - p_t) * 60 / 59
        se = np.sqrt(var_t / (60 * p_c**2) + p_t**2 * var_c / (55 * p_c**4))
        df = (var_t / 60 + var_c / 55) ** 2 / ((var_t / 60) ** 2 / 59 + (var_c / 55) ** 2 / 54)
        effect = p_t / p_c - 1
        from scipy import stats

        assert variant["p_value"] == pytest.approx(2 * stats.t.sf(effect / se, df), rel=1e-9)
        assert body["exposures"] == {"control": 65, "test": 65, "$multiple": 0}


    @pytest.mark.parametrize("start_handling, retained", [("first_seen", 0.0), ("last_seen", 3.0)])
    async def test_day_windows_compare_calendar_days(self, kit, start_handling, retained):
        midnight = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
        metric = {
            "kind": "ExperimentMetric", "metric_type": "retention", "uuid": "retention",
            "start_event": {"kind": "EventsNode", "event": "signup"},
            "completion_event": {"kind": "EventsNode", "event": "login"},
            "retention_window_start": 1, "retention_window_end": 1, "retention_window_unit": "day",
            "start_handling": start_handling,
        }
        experiment_id, key = await experiment(kit, [metric], start=midnight)
        rows = []
        for index in range(3):
            user = f"{key}-{index}"
            rows += [
                exposure(key, user, "control", midnight + timedelta(hours=1)),
                # Starts at 23:00 on day 0 and day 1; returns at 01:00 on day 2, two hours after the last start.
                action("signup", user, midnight + timedelta(hours=23)),
                action("signup", user, midnight + timedelta(hours=47)),
                action("login", user, midnight + timedelta(hours=49)),
            ]
        await capture(kit, rows)

        [result] = (await results(kit, experiment_id))["results"]

        # Day 2 is one calendar day after the last start (retained) and two after the first (not).
        assert (result["baseline"]["number_of_samples"], result["baseline"]["sum"]) == (3, retained)


def sequential_reference(effect: float, variance: float, n: int, alpha: float = 0.05, tuning: float = 5000.0):
    """Waudby-Smith et al. (2023) eqs. 9, 155, 161 written out independently of the service."""
    rho_squared = (-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / tuning
    evalue = np.exp(rho_squared * effect**2 * n / variance / (2 * (n * rho_squared + 1))) / np.sqrt(n * rho_squared + 1)
    halfwidth = np.sqrt(variance * n) * np.sqrt(
        2 * (n * rho_squared + 1) * np.log(np.sqrt(n * rho_squared + 1) / alpha) / (n**2 * rho_squared)
    )
    return min(1.0, 1 / evalue), [effect - halfwidth, effect + halfwidth]


class TestSequential:
    async def test_always_valid_p_value_and_confidence_sequence(self, kit):
        rng = np.random.default_rng(11)
        control, test = rng.normal(20, 4, 300).round(2), rng.normal(21.5, 4, 300).round(2)
        rows = lambda key: arm(key, "control", control) + arm(key, "test", test)  # noqa: E731
        fixed_config = {"method": "frequentist"}
        sequential_config = {"method": "frequentist", "frequentist": {"sequential_testing_enabled": True}}

        [fixed] = await run(kit, [mean()], rows, fixed_config)
        [sequential] = await run(kit, [mean()], rows, sequential_config)

        variant = sequential["variant_results"][0]
        mc, mt = control.mean(), test.mean()
        variance = test.var(ddof=1) / (300 * mc**2) + mt**2 * control.var(ddof=1) / (300 * mc**4)
        p_value, interval = sequential_reference(mt / mc - 1, variance, 600)
        assert variant["p_value"] == pytest.approx(p_value, rel=1e-9)
        assert variant["confidence_interval"] == pytest.approx(interval, rel=1e-9)
        assert variant["p_value"] > fixed["variant_results"][0]["p_value"]
        fixed_low, fixed_high = fixed["variant_results"][0]["confidence_interval"]
        assert interval[0] < fixed_low and interval[1] > fixed_high

    async def test_tuning_parameter_must_be_positive(self, kit):
        config = {"method": "frequentist", "frequentist": {"sequential_testing_enabled": True, "sequential_tuning_parameter": 0}}
        experiment_id, _ = await experiment(kit, [mean()], config)

        response = await kit.client.get(f"{kit.base}/experiments/{experiment_id}/results/", headers=kit.headers)

        assert response.status_code == 400 and "sequential_tuning_parameter" in response.json()["detail"]


class TestCuped:
    @pytest.mark.parametrize("metric_type", ["mean", "funnel"])
    async def test_pre_exposure_covariate_reduces_variance(self, kit, metric_type):
        lift = {"control": 0.0, "test": 1.0}
        metric = mean() if metric_type == "mean" else {
            "kind": "ExperimentMetric", "metric_type": "funnel", "uuid": "funnel",
            "series": [{"kind": "EventsNode", "event": "purchase"}],
        }
        post, pre = {}, {}

        def rows(key):
            """The same people and values for every experiment (a fixed seed), under the key's ids."""
            rng = np.random.default_rng(12)
            habit = {variant: rng.gamma(2.0, 5.0, 150) for variant in ("control", "test")}
            data = []
            for variant, habits in habit.items():
                post[variant], pre[variant] = [], []
                for index, level in enumerate(habits):
                    user = f"{key}-{variant}-{index}"
                    exposed = START + timedelta(minutes=1, seconds=index)
                    data.append(exposure(key, user, variant, exposed))
                    before = round(float(level + rng.normal(0, 1)), 2)
                    after = round(float(level + lift[variant] + rng.normal(0, 1)), 2)
                    converted = metric_type == "funnel" and level > 10
                    # Before exposure (inside the 14-day lookback, and one outside it that must not count).
                    data.append(action("purchase", user, exposed - timedelta(days=1), amount=before))
                    data.append(action("purchase", user, exposed - timedelta(days=20), amount=500.0))
                    if metric_type == "mean":
                        data.append(action("purchase", user, exposed + timedelta(minutes=5), amount=after))
                        post[variant].append(after)
                        pre[variant].append(before)
                    else:
                        buys = converted or rng.random() < 0.3
                        if buys:
                            data.append(action("purchase", user, exposed + timedelta(minutes=5), amount=after))
                        post[variant].append(float(buys))
                        pre[variant].append(1.0)
            return data

        config = {"method": "frequentist", "cuped": {"enabled": True}}
        [plain] = await run(kit, [metric], rows, {"method": "frequentist"})
        [adjusted] = await run(kit, [metric], rows, config)

        if metric_type == "funnel":
            # Everybody bought before exposure: the covariate is constant, so θ = 0 and nothing changes.
            variant = adjusted["variant_results"][0]
            assert variant["covariate_sum"] == 150.0 and variant["cuped"]["theta"] == 0.0
            assert variant["p_value"] == pytest.approx(plain["variant_results"][0]["p_value"], rel=1e-9)
            return
        y = {variant: np.array(values) for variant, values in post.items()}
        x = {variant: np.array(values) for variant, values in pre.items()}
        baseline, variant = adjusted["baseline"], adjusted["variant_results"][0]
        assert variant["covariate_sum"] == pytest.approx(x["test"].sum(), rel=1e-12)
        assert baseline["covariate_sum_product"] == pytest.approx((x["control"] * y["control"]).sum(), rel=1e-12)
        all_x, all_y = np.concatenate([x["control"], x["test"]]), np.concatenate([y["control"], y["test"]])
        theta = np.cov(all_y, all_x, ddof=1)[0, 1] / all_x.var(ddof=1)
        assert variant["cuped"]["theta"] == pytest.approx(theta, rel=1e-9)
        residual = y["test"] - theta * x["test"]
        assert variant["cuped"]["variance_reduction"] == pytest.approx(1 - residual.var(ddof=1) / y["test"].var(ddof=1), rel=1e-9)
        assert variant["cuped"]["variance_reduction"] > 0.5
        assert variant["p_value"] < plain["variant_results"][0]["p_value"]
        plain_low, plain_high = plain["variant_results"][0]["confidence_interval"]
        low, high = variant["confidence_interval"]
        assert high - low < (plain_high - plain_low) / 2


class TestCorrection:
    @pytest.mark.parametrize("correction", ["holm-bonferroni", "benjamini-hochberg"])
    async def test_p_values_adjusted_across_metrics_and_variants(self, kit, correction):
        rng = np.random.default_rng(13)
        lifts = {"a": 0.0, "b": 0.8, "c": 2.0}
        metrics = [mean(event=f"buy_{name}", uuid=name) for name in lifts]

        def rows(key):
            data = []
            for variant in ("control", "test"):
                for index in range(120):
                    user = f"{key}-{variant}-{index}"
                    exposed = START + timedelta(minutes=1, seconds=index)
                    data.append(exposure(key, user, variant, exposed))
                    for name, lift in lifts.items():
                        amount = round(float(rng.normal(20 + (lift if variant == "test" else 0), 4)), 2)
                        data.append(action(f"buy_{name}", user, exposed + timedelta(minutes=5), amount=amount))
            return data

        config = {"method": "frequentist", "p_value_correction": correction}
        experiment_id, key = await experiment(kit, metrics, config)
        await capture(kit, rows(key))
        body = await results(kit, experiment_id)

        variants = [result["variant_results"][0] for result in body["results"]]
        raw = np.array([variant["p_value"] for variant in variants])
        if correction == "holm-bonferroni":
            order = np.argsort(raw)
            expected = np.empty(3)
            expected[order] = np.minimum(np.maximum.accumulate(raw[order] * [3, 2, 1]), 1)
        else:
            from scipy import stats

            expected = stats.false_discovery_control(raw)
        assert [variant["p_value_adjusted"] for variant in variants] == pytest.approx(list(expected), rel=1e-12)
        assert [variant["significant"] for variant in variants] == [bool(p < 0.05) for p in expected]
        # One metric alone still reports the family's adjustment.
        [alone] = (await results(kit, experiment_id, metric_uuid="b"))["results"]
        assert alone["variant_results"][0]["p_value_adjusted"] == pytest.approx(expected[1], rel=1e-12)
