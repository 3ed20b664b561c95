"""POST experiments/calculate_running_time/: PostHog's sample-size and running-time figures."""

import pytest

RATIO_STATS = {
    "number_of_samples": 10000, "sum": 500000, "sum_squares": 30000000, "denominator_sum": 50000,
    "denominator_sum_squares": 300000, "numerator_denominator_sum_product": 2600000,
}


async def calculate(kit, payload: dict, status: int = 200, headers: dict | None = None) -> dict:
    response = await kit.client.post(f"{kit.base}/experiments/calculate_running_time/", json=payload,
                                     headers=headers or kit.headers)
    assert response.status_code == status, response.text
    return response.json()


class TestCalculateRunningTime:
    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            ({"metric_type": "mean_count", "baseline_value": 4, "minimum_detectable_effect": 5}, 6400),
            ({"metric_type": "mean_sum_or_avg", "baseline_value": 50, "minimum_detectable_effect": 5}, 3200),
            ({"metric_type": "funnel", "baseline_value": 0.1, "minimum_detectable_effect": 50}, 1152),
        ],
    )
    async def test_sample_size_from_baseline_value(self, kit, payload, expected):
        body = await calculate(kit, payload)
        assert body["recommended_sample_size"] == expected
        assert body["recommended_running_time_days"] is None

    async def test_running_time_from_the_exposure_rate(self, kit):
        body = await calculate(kit, {"metric_type": "mean_count", "baseline_value": 4, "minimum_detectable_effect": 5,
                                     "exposure_rate_per_day": 100})
        assert (body["recommended_sample_size"], body["recommended_running_time_days"]) == (6400, 64)
        body = await calculate(kit, {"metric_type": "mean_count", "baseline_value": 4, "minimum_detectable_effect": 5,
                                     "exposure_rate_per_day": 300})
        assert body["recommended_running_time_days"] == 22  # ceil(21.33)

    async def test_ratio_from_baseline_stats(self, kit):
        body = await calculate(kit, {"metric_type": "ratio", "minimum_detectable_effect": 10,
                                     "baseline_stats": RATIO_STATS})
        assert body["baseline_value"] == pytest.approx(10)
        assert body["variance"] == pytest.approx(32)
        assert body["recommended_sample_size"] == 1024

    async def test_retention_from_baseline_stats(self, kit):
        stats = {"number_of_samples": 10000, "sum": 7000, "sum_squares": 7000, "denominator_sum": 10000,
                 "denominator_sum_squares": 10000, "numerator_denominator_sum_product": 7000}
        body = await calculate(kit, {"metric_type": "retention", "minimum_detectable_effect": 10,
                                     "baseline_stats": stats})
        assert body["variance"] == pytest.approx(0.21)
        assert body["recommended_sample_size"] == 1372

    async def test_funnel_from_step_counts_and_more_variants(self, kit):
        body = await calculate(kit, {"metric_type": "funnel", "minimum_detectable_effect": 50,
                                     "baseline_stats": {"number_of_samples": 1000, "sum": 100,
                                                        "step_counts": [1000, 100]}})
        assert body["baseline_value"] == pytest.approx(0.1)
        assert body["variance"] is None
        assert body["recommended_sample_size"] == 1152
        body = await calculate(kit, {"metric_type": "funnel", "baseline_value": 0.1, "minimum_detectable_effect": 50,
                                     "number_of_variants": 3})
        assert body["recommended_sample_size"] == 1728

    @pytest.mark.parametrize(
        ("payload", "attr"),
        [
            ({"metric_type": "funnel", "minimum_detectable_effect": 5}, "baseline_value"),
            ({"metric_type": "funnel", "baseline_value": 0.1, "minimum_detectable_effect": 0},
             "minimum_detectable_effect"),
            ({"metric_type": "ratio", "baseline_value": 10, "minimum_detectable_effect": 10}, "baseline_stats"),
            ({"metric_type": "ratio", "minimum_detectable_effect": 10,
              "baseline_stats": {"number_of_samples": 10000, "sum": 500000, "sum_squares": 30000000}},
             "baseline_value"),
            ({"metric_type": "funnel", "baseline_value": 1.5, "minimum_detectable_effect": 10}, "baseline_value"),
            ({"metric_type": "trends", "baseline_value": 1, "minimum_detectable_effect": 10}, "metric_type"),
            ({"baseline_value": 1, "minimum_detectable_effect": 10}, "metric_type"),
        ],
    )
    async def test_unusable_input_is_refused(self, kit, payload, attr):
        body = await calculate(kit, payload, status=400)
        assert body["type"] == "validation_error"
        assert body["attr"] == attr

    async def test_needs_experiment_read(self, kit):
        headers, _ = await kit.key(["feature_flag:read"])
        body = await calculate(kit, {"metric_type": "funnel", "baseline_value": 0.1, "minimum_detectable_effect": 50},
                               status=403, headers=headers)
        assert body["detail"] == "API key missing required scope 'experiment:read'"
