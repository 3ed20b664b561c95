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
        user = f"{variant}-{index}"
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


async def experiment(kit, metrics: list[dict], stats_config: dict | None = None) -> tuple[int, str]:
    key = f"stats-{uuid.uuid4().hex[:8]}"
    response = await kit.client.post(f"{kit.base}/experiments/", headers=kit.headers, json={
        "name": key,
        "feature_flag_key": key,
        "start_date": START.isoformat(),
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
            return data + [action("$pageview", f"control-{i}", START + timedelta(minutes=3)) for i in range(60)]

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
                action("$pageview", f"{variant}-{i}", START + timedelta(minutes=9, seconds=k))
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
