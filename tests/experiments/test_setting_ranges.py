"""Numeric settings and dates are held to their meaningful ranges when saved (400, nothing stored)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from experiments_service.models import Experiment, ExperimentTimeseriesRecalculation


async def create(kit, **fields):
    body = {"name": "Ranges", "feature_flag_key": f"ranges-{uuid.uuid4().hex[:8]}", **fields}
    return await kit.client.post(f"{kit.base}/experiments/", json=body, headers=kit.headers)


async def count(app, model, project_id: int) -> int:
    async with app.state.db.sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(model).where(model.project_id == project_id))).scalar_one()


def refused(response, detail: str, attr: str | None) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "validation_error"
    assert detail in body["detail"]
    assert body["attr"] == attr


class TestStatsConfig:
    @pytest.mark.parametrize(
        ("config", "detail"),
        [
            ({"method": "bayesian", "bayesian": {"ci_level": 5}}, "stats_config.bayesian.ci_level must be a number between 0 and 1."),
            ({"bayesian": {"ci_level": 0}}, "stats_config.bayesian.ci_level"),
            ({"bayesian": {"ci_level": 1}}, "stats_config.bayesian.ci_level"),
            ({"bayesian": {"ci_level": "0.9"}}, "stats_config.bayesian.ci_level"),
            ({"method": "frequentist", "frequentist": {"alpha": 2}}, "stats_config.frequentist.alpha must be a number between 0 and 1."),
            ({"frequentist": {"alpha": -0.05}}, "stats_config.frequentist.alpha"),
            ({"frequentist": {"alpha": True}}, "stats_config.frequentist.alpha"),
            ({"frequentist": 3}, "Expected a dictionary"),
        ],
    )
    async def test_out_of_range_levels_are_refused_on_create(self, kit, config, detail):
        refused(await create(kit, stats_config=config), detail, "stats_config")
        assert await count(kit.app, Experiment, kit.project_id) == 0

    async def test_out_of_range_levels_are_refused_on_patch(self, kit):
        created = await create(kit)
        url = f"{kit.base}/experiments/{created.json()['id']}/"
        response = await kit.client.patch(url, json={"stats_config": {"bayesian": {"ci_level": 5}}}, headers=kit.headers)
        refused(response, "ci_level", "stats_config")
        assert (await kit.client.get(url, headers=kit.headers)).json()["stats_config"] == {"method": "bayesian"}

    async def test_levels_in_range_are_stored(self, kit):
        config = {"method": "frequentist", "frequentist": {"alpha": 0.1}, "bayesian": {"ci_level": 0.9}}
        response = await create(kit, stats_config=config)
        assert response.status_code == 201, response.text
        assert response.json()["stats_config"] == config


class TestDates:
    @pytest.mark.parametrize("field", ["start_date", "end_date"])
    @pytest.mark.parametrize("value", ["0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "9999-12-31T00:00:00Z"])
    async def test_dates_out_of_range_are_refused(self, kit, field, value):
        refused(await create(kit, **{field: value}), "must be between 2000-01-01 and 2100-01-01", field)
        assert await count(kit.app, Experiment, kit.project_id) == 0

    async def test_end_before_the_stored_start_is_refused(self, kit):
        created = await create(kit, start_date="2026-06-01T00:00:00Z")
        assert created.status_code == 201, created.text
        url = f"{kit.base}/experiments/{created.json()['id']}/"
        response = await kit.client.patch(url, json={"end_date": "2026-05-01T00:00:00Z"}, headers=kit.headers)
        refused(response, "End date must be after start date", None)
        assert (await kit.client.get(url, headers=kit.headers)).json()["end_date"] is None

    async def test_end_before_start_in_one_body_is_refused(self, kit):
        response = await create(kit, start_date="2026-06-01T00:00:00Z", end_date="2026-05-01T00:00:00Z")
        refused(response, "End date must be after start date", None)


class TestTimeseriesJobSize:
    async def test_a_job_spanning_more_than_three_years_is_refused(self, kit):
        start = (datetime.now(UTC) - timedelta(days=1200)).isoformat()
        created = await create(kit, start_date=start)
        assert created.status_code == 201, created.text
        response = await kit.client.post(
            f"{kit.base}/experiments/{created.json()['id']}/recalculate_timeseries/",
            json={"metric": {"uuid": "m", "kind": "ExperimentMetric"}, "fingerprint": "f"},
            headers=kit.headers,
        )
        refused(response, "timeseries are computed for at most 1096", None)
        assert await count(kit.app, ExperimentTimeseriesRecalculation, kit.project_id) == 0


class TestParameterNumbers:
    @pytest.mark.parametrize("key", ["minimum_detectable_effect", "recommended_running_time", "recommended_sample_size"])
    async def test_negative_estimates_are_refused(self, kit, key):
        refused(await create(kit, parameters={key: -1}), f"{key} must not be negative", "parameters")

    async def test_a_negative_retention_window_is_refused(self, kit):
        metric = {
            "kind": "ExperimentMetric", "metric_type": "retention", "uuid": "r",
            "start_event": {"kind": "EventsNode", "event": "a"}, "completion_event": {"kind": "EventsNode", "event": "b"},
            "retention_window_start": -5, "retention_window_end": 7, "retention_window_unit": "day",
        }
        response = await create(kit, metrics=[metric])
        assert response.status_code == 400, response.text
        assert response.json()["attr"] == "metrics"


class TestApprovalPolicyDuration:
    @pytest.mark.parametrize("expires_after", [10**13, 2**31, "999999 00:00:00"])
    async def test_a_duration_the_column_cannot_hold_is_refused_on_both_databases(self, kit, expires_after):
        body = {"action_key": "feature_flag.enable", "approver_config": {"quorum": 1, "users": [kit.user_id]}, "expires_after": expires_after}
        response = await kit.client.post(f"{kit.base}/approval_policies/", json=body, headers=kit.headers)
        refused(response, "Ensure this value is at most 2147483647 seconds.", "expires_after")
        assert (await kit.client.get(f"{kit.base}/approval_policies/", headers=kit.headers)).json()["count"] == 0
