"""Metric fingerprints equal to PostHog's, metric shape checks and exposure criteria (PostHog's test cases)."""

import uuid
from typing import Any

import pytest

from tests.factories import make_kit

INITIAL = [
    {"uuid": "metric-1", "name": "Initial Mean Metric", "kind": "ExperimentMetric", "metric_type": "mean",
     "source": {"kind": "EventsNode", "event": "$session_duration"}},
    {"uuid": "metric-2", "name": "Initial Funnel Metric", "kind": "ExperimentMetric", "metric_type": "funnel",
     "series": [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "$autocapture"}]},
    {"uuid": "metric-3", "name": "Initial Ratio Metric", "kind": "ExperimentMetric", "metric_type": "ratio",
     "numerator": {"kind": "EventsNode", "event": "$session_duration"},
     "denominator": {"kind": "EventsNode", "event": "$autocapture"}},
]
UPDATED = [
    {"goal": "increase", "kind": "ExperimentMetric", "uuid": "964398d7-ec8a-424d-890b-4e6bbc9a5c84",
     "series": [{"kind": "EventsNode", "name": "$pageview", "event": "$pageview"}], "metric_type": "funnel",
     "conversion_window": 14, "conversion_window_unit": "day", "funnel_order_type": "unordered"},
    {"goal": "increase", "kind": "ExperimentMetric", "uuid": "824e38ae-f9d7-41f4-962c-74c9e744529a",
     "source": {"kind": "EventsNode", "name": "$pageview", "event": "$pageview"}, "metric_type": "mean",
     "conversion_window": 14, "conversion_window_unit": "day", "lower_bound_percentile": 0.05,
     "upper_bound_percentile": 0.95},
    {"goal": "decrease", "kind": "ExperimentMetric", "uuid": "70e0c887-1f32-4c7d-8405-0faded2e9722",
     "numerator": {"kind": "EventsNode", "name": "$pageview", "event": "$pageview"},
     "denominator": {"kind": "EventsNode", "math": "total", "name": "$pageview", "event": "$pageview"},
     "metric_type": "ratio", "conversion_window": 14, "conversion_window_unit": "day"},
]
DICT_PROPERTIES_METRIC = {
    "kind": "ExperimentMetric", "metric_type": "mean",
    "source": {"kind": "EventsNode", "event": "$pageview",
               "properties": {"$current_url": {"value": "/start", "operator": "icontains"}}},
}


async def create(kit, status: int = 201, **payload: Any) -> dict[str, Any]:
    body = {"name": "Metrics", "feature_flag_key": f"flag-{uuid.uuid4().hex[:8]}", "allow_unknown_events": True,
            **payload}
    response = await kit.client.post(f"{kit.base}/experiments/", json=body, headers=kit.headers)
    assert response.status_code == status, response.text
    return response.json()


async def patch(kit, experiment_id: int, status: int = 200, **body: Any) -> dict[str, Any]:
    response = await kit.client.patch(f"{kit.base}/experiments/{experiment_id}/", json=body, headers=kit.headers)
    assert response.status_code == status, response.text
    return response.json()


class TestFingerprints:
    async def test_hashes_equal_posthogs_on_create_and_update(self, kit):
        created = await create(kit, metrics=INITIAL, parameters={}, filters={},
                               primary_metrics_ordered_uuids=["metric-1", "metric-2", "metric-3"])
        assert {m["metric_type"]: m["fingerprint"] for m in created["metrics"]} == {
            "mean": "d2e1f06570c3ec0af658c6255890c0ee509e0a275cbc80f630d8e8718a1b8c25",
            "funnel": "dc70f252171bb66b8b40a28ba702ad2907c61d0962b54f332dee96afd67b240c",
            "ratio": "ac46d8229e2ec5558200082a3f5d2e4e6e5041585d4f07dbd28930ee90fad235",
        }
        updated = await patch(
            kit, created["id"],
            allow_unknown_events=True,
            metrics=UPDATED,
            primary_metrics_ordered_uuids=[m["uuid"] for m in UPDATED],
            start_date="2024-01-01T10:00:00Z",
            stats_config={"method": "frequentist"},
            exposure_criteria={"exposure_config": {"kind": "ExperimentEventExposureConfig",
                                                   "event": "$feature_flag_called", "properties": []}},
        )
        assert {m["metric_type"]: m["fingerprint"] for m in updated["metrics"]} == {
            "mean": "24bf7ca8d497f33ace065e9e5facd961a4a2cb68938263b4008266fb22055f98",
            "funnel": "c1325e7c9c494859e14901f144e99532745d6c22a8cb1536ef1cd9574cfa5672",
            "ratio": "9d74f7f895166c1ac12708a4bc2aa8c61c963bb98a9ad15fecf747b79e706631",
        }
        # An update stores the exposure criteria as sent: no filterTestAccounts filled in.
        assert "filterTestAccounts" not in updated["exposure_criteria"]

    async def test_name_and_uuid_do_not_change_the_hash_but_the_definition_does(self, kit):
        first = await create(kit, metrics=[INITIAL[0]])
        renamed = await create(kit, metrics=[{**INITIAL[0], "name": "Other", "uuid": "other"}])
        changed = await create(kit, metrics=[{**INITIAL[0], "source": {"kind": "EventsNode", "event": "x"}}])
        assert first["metrics"][0]["fingerprint"] == renamed["metrics"][0]["fingerprint"]
        assert first["metrics"][0]["fingerprint"] != changed["metrics"][0]["fingerprint"]


class TestMetricShape:
    async def test_dict_properties_are_refused_on_create(self, kit):
        body = await create(kit, 400, metrics=[DICT_PROPERTIES_METRIC])
        assert body["attr"] == "metrics"
        assert body["detail"].startswith("Invalid metric at index 0: [")
        assert "'loc': ('source', 'EventsNode', 'properties')" in body["detail"]

    async def test_dict_properties_are_refused_on_update_and_nothing_changes(self, kit):
        experiment = await create(kit)
        body = await patch(kit, experiment["id"], 400, metrics=[DICT_PROPERTIES_METRIC])
        assert body["attr"] == "metrics"
        detail = (await kit.client.get(f"{kit.base}/experiments/{experiment['id']}/", headers=kit.headers)).json()
        assert detail["metrics"] == []

    async def test_array_properties_are_accepted(self, kit):
        metric = {"kind": "ExperimentMetric", "metric_type": "mean", "source": {
            "kind": "EventsNode", "event": "$pageview",
            "properties": [{"key": "$current_url", "value": "/start", "operator": "icontains", "type": "event"}]}}
        created = await create(kit, metrics=[metric])
        assert created["metrics"][0]["source"]["properties"][0]["key"] == "$current_url"

    @pytest.mark.parametrize("missing", ["numerator", "denominator"])
    async def test_ratio_without_a_side_answers_pydantics_detail(self, kit, missing):
        metric = {"kind": "ExperimentMetric", "metric_type": "ratio",
                  "numerator": {"kind": "EventsNode", "event": "$purchase"},
                  "denominator": {"kind": "EventsNode", "event": "$pageview"}}
        del metric[missing]
        body = await create(kit, 400, metrics=[metric])
        assert body["attr"] == "metrics"
        assert f"'loc': ('{missing}',), 'msg': 'Field required'" in body["detail"]

        response = await kit.client.post(
            f"{kit.base}/experiment_saved_metrics/", json={"name": f"r-{uuid.uuid4().hex[:6]}", "query": metric},
            headers=kit.headers,
        )
        assert response.status_code == 400
        assert f"'loc': ('{missing}',), 'msg': 'Field required'" in response.json()["detail"]


class TestExposureCriteria:
    async def test_valid_event_config_is_stored(self, kit):
        experiment = await create(kit)
        criteria = {"filterTestAccounts": True, "exposure_config": {
            "event": "$pageview", "properties": [{"key": "plan", "operator": "is_not", "value": "free", "type": "event"}]}}
        updated = await patch(kit, experiment["id"], exposure_criteria=criteria)
        assert updated["exposure_criteria"] == criteria

    @pytest.mark.parametrize(
        "config",
        [
            {"event": "", "properties": [1]},
            {"event": "", "properties": []},
            {"event": "$pageview", "properties": [1]},
            {"event": "$pageview", "properties": {"plan": "free"}},
            {"properties": []},
        ],
    )
    async def test_invalid_event_config_is_refused(self, kit, config):
        experiment = await create(kit)
        body = await patch(kit, experiment["id"], 400,
                           exposure_criteria={"filterTestAccounts": True, "exposure_config": config})
        assert body["attr"] == "exposure_criteria"
        await create(kit, 400, exposure_criteria={"exposure_config": config})

    async def test_create_fills_in_filter_test_accounts(self, kit):
        created = await create(kit, exposure_criteria={"exposure_config": {"event": "$pageview", "properties": []}})
        assert created["exposure_criteria"]["filterTestAccounts"] is True


async def save_metric(kit, name: str, status: int = 201) -> dict[str, Any]:
    query = {"kind": "ExperimentMetric", "metric_type": "mean", "source": {"kind": "EventsNode", "event": "$pageview"}}
    response = await kit.client.post(f"{kit.base}/experiment_saved_metrics/", json={"name": name, "query": query},
                                     headers=kit.headers)
    assert response.status_code == status, response.text
    return response.json()


class TestSavedMetrics:
    async def test_names_are_unique_per_project(self, kit, app, client):
        first = await save_metric(kit, "Unique Metric Name")
        body = await save_metric(kit, "Unique Metric Name", 400)
        assert body == {"type": "validation_error", "code": "invalid_input",
                        "detail": "A shared metric with this name already exists", "attr": "name"}
        other = await save_metric(kit, "Other name")
        response = await kit.client.patch(f"{kit.base}/experiment_saved_metrics/{other['id']}/",
                                          json={"name": "Unique Metric Name"}, headers=kit.headers)
        assert response.status_code == 400
        assert response.json()["detail"] == "A shared metric with this name already exists"
        # Keeping one's own name is fine.
        response = await kit.client.patch(f"{kit.base}/experiment_saved_metrics/{first['id']}/",
                                          json={"name": "Unique Metric Name", "description": "Updated"},
                                          headers=kit.headers)
        assert response.status_code == 200
        listed = (await kit.client.get(f"{kit.base}/experiment_saved_metrics/", headers=kit.headers)).json()
        assert sorted(m["name"] for m in listed["results"]) == ["Other name", "Unique Metric Name"]

    async def test_the_same_name_in_another_project_is_fine(self, kit, app, client):
        await save_metric(kit, "Shared name")
        await save_metric(await make_kit(app, client), "Shared name")

    async def test_null_saved_metrics_ids_unlinks_all(self, kit):
        saved = await save_metric(kit, f"m-{uuid.uuid4().hex[:6]}")
        experiment = await create(kit, saved_metrics_ids=[{"id": saved["id"], "metadata": {"type": "secondary"}}])
        assert len(experiment["saved_metrics"]) == 1
        renamed = await patch(kit, experiment["id"], name="Still linked")
        assert len(renamed["saved_metrics"]) == 1
        unlinked = await patch(kit, experiment["id"], saved_metrics_ids=None)
        assert unlinked["saved_metrics"] == []
        assert unlinked["secondary_metrics_ordered_uuids"] in (None, [])
        relinked = await patch(kit, experiment["id"], saved_metrics_ids=[{"id": saved["id"]}])
        assert [link["saved_metric"] for link in relinked["saved_metrics"]] == [saved["id"]]


def mean(metric_uuid: str) -> dict[str, Any]:
    return {"kind": "ExperimentMetric", "metric_type": "mean", "uuid": metric_uuid,
            "source": {"kind": "EventsNode", "event": "$pageview"}}


class TestOrderingRule:
    """The reference rule: every metric uuid exactly once, requested order first; see README."""

    @pytest.mark.parametrize(
        ("payload", "status", "stored"),
        [
            (["uuid-b", "uuid-a"], 200, ["uuid-b", "uuid-a"]),
            (["uuid-b", "uuid-b", "uuid-a"], 200, ["uuid-b", "uuid-a"]),
            (["uuid-b"], 200, ["uuid-b", "uuid-a"]),
            (["not-a-metric", "uuid-b"], 200, ["uuid-b", "uuid-a"]),
            (None, 200, ["uuid-a", "uuid-b"]),
            (["uuid-a", ""], 400, ["uuid-a", "uuid-b"]),
            (["uuid-a", "  "], 400, ["uuid-a", "uuid-b"]),
            ("uuid-a", 400, ["uuid-a", "uuid-b"]),
        ],
    )
    async def test_patched_ordering(self, kit, payload, status, stored):
        experiment = await create(kit, metrics=[mean("uuid-a"), mean("uuid-b")],
                                  primary_metrics_ordered_uuids=["uuid-a", "uuid-b"])
        body = await patch(kit, experiment["id"], status, primary_metrics_ordered_uuids=payload)
        if status == 400:
            assert body["attr"].startswith("primary_metrics_ordered_uuids")
        detail = (await kit.client.get(f"{kit.base}/experiments/{experiment['id']}/", headers=kit.headers)).json()
        assert detail["primary_metrics_ordered_uuids"] == stored

    async def test_blank_entry_names_its_index(self, kit):
        experiment = await create(kit, metrics=[mean("uuid-a")])
        body = await patch(kit, experiment["id"], 400, secondary_metrics_ordered_uuids=["uuid-a", ""])
        assert body == {"type": "validation_error", "code": "blank", "detail": "This field may not be blank.",
                        "attr": "secondary_metrics_ordered_uuids__1"}

    async def test_added_and_removed_metrics_follow_and_null_stays_null_without_metrics(self, kit):
        experiment = await create(kit)
        assert experiment["primary_metrics_ordered_uuids"] is None
        updated = await patch(kit, experiment["id"], metrics=[mean("uuid-a"), mean("uuid-b")],
                              allow_unknown_events=True)
        assert updated["primary_metrics_ordered_uuids"] == ["uuid-a", "uuid-b"]
        updated = await patch(kit, experiment["id"], metrics=[mean("uuid-b"), mean("uuid-c")],
                              allow_unknown_events=True)
        assert updated["primary_metrics_ordered_uuids"] == ["uuid-b", "uuid-c"]

    async def test_create_with_saved_metrics_only_keeps_the_requested_order(self, kit):
        first = await save_metric(kit, f"m-{uuid.uuid4().hex[:6]}")
        second = await save_metric(kit, f"m-{uuid.uuid4().hex[:6]}")
        wanted = [second["query"]["uuid"], first["query"]["uuid"]]
        experiment = await create(
            kit, saved_metrics_ids=[{"id": first["id"], "metadata": {"type": "secondary"}},
                                    {"id": second["id"], "metadata": {"type": "secondary"}}],
            secondary_metrics_ordered_uuids=wanted,
        )
        assert experiment["secondary_metrics_ordered_uuids"] == wanted
