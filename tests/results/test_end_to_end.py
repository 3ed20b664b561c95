"""Through the public API only: capture with `POST /batch/`, create an experiment, read results."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from experiments_service.results.worker import run_pending_jobs


async def capture(kit, events):
    response = await kit.client.post("/batch/", json={"api_key": kit.project_api_key, "batch": events})
    assert response.status_code == 200, response.text


def captured(name, distinct_id, at, properties=None):
    return {"event": name, "distinct_id": distinct_id, "timestamp": at.isoformat(), "properties": properties or {}}


async def create_running_experiment(kit, key, start, metrics, stats_config=None):
    response = await kit.client.post(
        f"{kit.base}/experiments/",
        json={
            "name": f"Experiment {key}",
            "feature_flag_key": key,
            "start_date": start.isoformat(),
            "parameters": {"feature_flag_variants": [
                {"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50},
            ]},
            "metrics": metrics,
            "stats_config": stats_config or {"method": "frequentist"},
            "allow_unknown_events": True,
        },
        headers=kit.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_captured_events_drive_results_and_timeseries(app, kit):
    now = datetime.now(UTC)
    start = now - timedelta(days=1)
    key = "checkout-button"
    rng = np.random.default_rng(5)
    purchases = {"control": [], "test": []}
    events = []
    for variant, rate in (("control", 1.0), ("test", 1.6)):
        for i in range(80):
            user = f"{variant}-{i}"
            exposed_at = start + timedelta(hours=1, seconds=i)
            count = int(rng.poisson(rate))
            purchases[variant].append(count)
            events.append(captured("$feature_flag_called", user, exposed_at,
                                   {"$feature_flag": key, "$feature_flag_response": variant, f"$feature/{key}": variant}))
            events += [captured("purchase", user, exposed_at + timedelta(minutes=5 + k)) for k in range(count)]
    await capture(kit, events)
    experiment = await create_running_experiment(
        kit, key, start, [{"kind": "ExperimentMetric", "metric_type": "mean",
                           "source": {"kind": "EventsNode", "event": "purchase"}}],
    )
    metric = experiment["metrics"][0]

    response = await kit.client.get(f"{kit.base}/experiments/{experiment['id']}/results/", headers=kit.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["exposures"] == {"control": 80, "test": 80, "$multiple": 0}
    assert body["srm"]["p_value"] == pytest.approx(1.0) and body["srm"]["failed"] is False
    [result] = body["results"]
    assert result["metric_uuid"] == metric["uuid"] and result["fingerprint"] == metric["fingerprint"]
    assert result["baseline"]["sum"] == sum(purchases["control"])
    assert result["variant_results"][0]["sum"] == sum(purchases["test"])
    assert result["variant_results"][0]["p_value"] is not None

    recalculation = await kit.client.post(
        f"{kit.base}/experiments/{experiment['id']}/recalculate_timeseries/",
        json={"metric": metric, "fingerprint": metric["fingerprint"]}, headers=kit.headers,
    )
    assert recalculation.status_code == 201
    await run_pending_jobs(app.state.db)
    series = await kit.client.get(
        f"{kit.base}/experiments/{experiment['id']}/timeseries_results/",
        params={"metric_uuid": metric["uuid"], "fingerprint": recalculation.json()["fingerprint"]},
        headers=kit.headers,
    )
    assert series.status_code == 200
    days = series.json()["timeseries"]
    assert list(days) == [start.date().isoformat(), now.date().isoformat()]
    last = days[now.date().isoformat()]
    assert series.json()["status"] == "completed"
    assert last["baseline"]["sum"] == sum(purchases["control"])


class TestRequiresFlagImplementation:
    async def call(self, kit, **params):
        return await kit.client.get(
            f"{kit.base}/experiments/requires_flag_implementation/", params=params, headers=kit.headers
        )

    async def test_true_until_recent_events_carry_a_feature_property(self, kit):
        now = datetime.now(UTC)
        await capture(kit, [
            captured("purchase", "a", now - timedelta(hours=1)),
            captured("signup", "a", now - timedelta(days=8), {"$feature/new-flow": "test"}),
        ])

        purchase = await self.call(kit, events='[{"id": "purchase", "type": "events"}]')
        old_signup = await self.call(kit, events='[{"id": "signup"}]')
        assert purchase.status_code == 200 and purchase.json() == {"result": True}
        assert old_signup.json() == {"result": True}

        await capture(kit, [captured("signup", "b", now - timedelta(hours=2), {"$feature/new-flow": "control"})])

        assert (await self.call(kit, events='[{"id": "signup"}]')).json() == {"result": False}
        assert (await self.call(kit, events='[{"id": "purchase"}, {"id": "signup"}]')).json() == {"result": False}
        assert (await self.call(kit)).json() == {"result": True}

    async def test_sample_is_limited_to_the_newest_events(self, kit):
        now = datetime.now(UTC)
        await capture(kit, [
            captured("signup", "a", now - timedelta(hours=5), {"$feature/new-flow": "test"}),
            captured("signup", "b", now - timedelta(hours=1)),
        ])

        assert (await self.call(kit, events='[{"id": "signup"}]', limit=1)).json() == {"result": True}
        assert (await self.call(kit, events='[{"id": "signup"}]', limit=2)).json() == {"result": False}

    async def test_bad_filters_and_scopes(self, kit):
        malformed = await self.call(kit, events="not json")
        headers, _ = await kit.key(["feature_flag:read"])
        forbidden = await kit.client.get(
            f"{kit.base}/experiments/requires_flag_implementation/", headers=headers
        )

        assert malformed.status_code == 400
        assert malformed.json() == {"type": "validation_error", "code": "invalid_input",
                                    "detail": "events must be a JSON list.", "attr": "events"}
        assert forbidden.status_code == 403
