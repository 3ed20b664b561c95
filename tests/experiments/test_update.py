"""PATCH/PUT of experiments (spec §2.6, §7.1 "Update", §7.2)."""

import uuid

import pytest

from experiments_service.models import Experiment
from tests.experiments.helpers import (
    action,
    activities,
    error,
    make_event_definition,
    make_holdout,
    make_saved_metric,
    mean_metric,
    patch,
    stored_experiment,
    stored_flag,
)
from tests.factories import create_experiment, make_flag

VARIANTS_75_25 = [
    {"key": "control", "name": "Control", "rollout_percentage": 75},
    {"key": "test", "name": "Test", "rollout_percentage": 25},
]


class TestBasicFields:
    async def test_update_basic_fields(self, kit, app):
        experiment = await create_experiment(kit, name="Before")
        body = await patch(kit, experiment["id"], name="After", description="Why", end_date="2024-01-01T00:00:00Z",
                           scheduling_config={"timeseries": True}, conclusion_comment="note",
                           only_count_matured_users=True)
        assert (body["name"], body["description"]) == ("After", "Why")
        assert body["end_date"] == "2024-01-01T00:00:00Z" and body["status"] == "draft"
        assert body["scheduling_config"] == {"timeseries": True} and body["conclusion_comment"] == "note"
        assert body["only_count_matured_users"] is True
        row = await stored_experiment(app, experiment["id"])
        assert (row.name, row.description, row.status) == ("After", "Why", "draft")
        updated = [a for a in await activities(app, kit.project_id, experiment["id"]) if a.activity == "updated"]
        assert updated[0].detail["before"]["name"] == "Before" and updated[0].detail["after"]["name"] == "After"

    async def test_put_behaves_like_patch(self, kit):
        experiment = await create_experiment(kit, name="Before", description="kept")
        response = await kit.client.put(f"{kit.base}/experiments/{experiment['id']}/", json={"name": "After"},
                                        headers=kit.headers)
        assert response.status_code == 200
        assert response.json()["name"] == "After" and response.json()["description"] == "kept"

    async def test_archived_toggles_without_preconditions(self, kit, app):
        experiment = await create_experiment(kit)
        assert (await patch(kit, experiment["id"], archived=True))["archived"] is True
        assert (await stored_experiment(app, experiment["id"])).archived is True
        assert (await patch(kit, experiment["id"], archived=False))["archived"] is False

    @pytest.mark.parametrize(
        ("body", "detail"),
        [
            ({"type": "web"}, "Can't update keys: type on Experiment"),
            ({"feature_flag_key": "another-key"}, "Can't update keys: get_feature_flag_key on Experiment"),
            ({"feature_flag_key": "another-key", "type": "product", "name": "x"},
             "Can't update keys: get_feature_flag_key, type on Experiment"),
            ({"filters": {"properties": [{"key": "email", "value": "x"}]}},
             "Experiments do not support global filter properties"),
            ({"start_date": "2024-02-01T00:00:00Z", "end_date": "2024-01-01T00:00:00Z"},
             "End date must be after start date"),
        ],
    )
    async def test_refused_changes_write_nothing(self, kit, app, body, detail):
        experiment = await create_experiment(kit, name="Unchanged")
        assert await patch(kit, experiment["id"], 400, **body) == error(detail)
        row = await stored_experiment(app, experiment["id"])
        assert (row.name, row.type, row.status, row.filters) == ("Unchanged", "product", "draft", {})

    async def test_same_feature_flag_key_is_accepted(self, kit):
        experiment = await create_experiment(kit)
        body = await patch(kit, experiment["id"], feature_flag_key=experiment["feature_flag_key"], name="Renamed")
        assert body["name"] == "Renamed"

    async def test_invalid_types_are_field_errors(self, kit):
        experiment = await create_experiment(kit)
        body = await patch(kit, experiment["id"], 400, conclusion="amazing")
        assert body == error('"amazing" is not a valid choice.', code="invalid_choice", attr="conclusion")
        body = await patch(kit, experiment["id"], 400, archived="maybe")
        assert body["attr"] == "archived" and body["type"] == "validation_error"

    async def test_unknown_experiment_is_not_found(self, kit):
        response = await kit.client.patch(f"{kit.base}/experiments/987654321/", json={"name": "x"},
                                          headers=kit.headers)
        assert response.status_code == 404


class TestFlagSync:
    async def test_draft_variants_are_pushed_to_the_flag_keeping_the_rollout(self, kit, app):
        experiment = await create_experiment(kit, parameters={"rollout_percentage": 80})
        body = await patch(kit, experiment["id"], parameters={"feature_flag_variants": VARIANTS_75_25})
        flag = await stored_flag(app, experiment["feature_flag"]["id"])
        assert flag.filters["multivariate"]["variants"] == VARIANTS_75_25
        assert flag.filters["groups"] == [{"properties": [], "rollout_percentage": 80}]
        assert body["feature_flag"]["filters"] == flag.filters
        assert body["parameters"] == {"feature_flag_variants": [{**v, "split_percent": v["rollout_percentage"]}
                                                                for v in VARIANTS_75_25]}

    async def test_draft_rollout_percentage_is_applied(self, kit, app):
        experiment = await create_experiment(kit)
        await patch(kit, experiment["id"], parameters={"feature_flag_variants": VARIANTS_75_25,
                                                       "rollout_percentage": 30})
        flag = await stored_flag(app, experiment["feature_flag"]["id"])
        assert flag.filters["groups"][0]["rollout_percentage"] == 30

    async def test_draft_payloads_and_aggregation_are_pushed_to_the_flag(self, kit, app):
        experiment = await create_experiment(kit)
        body = await patch(kit, experiment["id"], parameters={
            "feature_flag_payloads": {"test": "{\"color\": \"red\"}"}, "aggregation_group_type_index": 0})
        flag = await stored_flag(app, experiment["feature_flag"]["id"])
        assert flag.filters["payloads"] == {"test": "{\"color\": \"red\"}"}
        assert flag.filters["aggregation_group_type_index"] == 0
        assert flag.filters["groups"] == [{"properties": [], "rollout_percentage": 100}]
        assert [v["key"] for v in flag.filters["multivariate"]["variants"]] == ["control", "test"]
        assert body["feature_flag"]["filters"] == flag.filters

    async def test_running_experiment_does_not_sync_without_the_opt_in(self, kit, app, running):
        for extra in ({}, {"update_feature_flag_params": False}):
            body = await patch(kit, running["id"], parameters={"feature_flag_variants": VARIANTS_75_25}, **extra)
            assert body["parameters"]["feature_flag_variants"][0]["rollout_percentage"] == 75
            flag = await stored_flag(app, running["feature_flag"]["id"])
            assert [v["rollout_percentage"] for v in flag.filters["multivariate"]["variants"]] == [50, 50]

    async def test_running_experiment_syncs_with_the_opt_in_and_keeps_other_groups(self, kit, app):
        groups = [{"properties": [{"key": "plan", "value": "pro", "type": "person"}], "rollout_percentage": 100},
                  {"properties": [], "rollout_percentage": 10}]
        await make_flag(kit, "multi-group", {"groups": groups, "multivariate": {"variants": [
            {"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50}]}})
        experiment = await create_experiment(kit, feature_flag_key="multi-group")
        await action(kit, experiment["id"], "launch")
        await patch(kit, experiment["id"], parameters={"feature_flag_variants": VARIANTS_75_25,
                                                       "rollout_percentage": 50}, update_feature_flag_params=True)
        flag = await stored_flag(app, experiment["feature_flag"]["id"])
        assert flag.filters["multivariate"]["variants"] == VARIANTS_75_25
        assert flag.filters["groups"] == [{**groups[0], "rollout_percentage": 50}, groups[1]]

    @pytest.mark.parametrize(
        "variants",
        [
            [{"key": "control", "rollout_percentage": 34}, {"key": "test", "rollout_percentage": 33},
             {"key": "new", "rollout_percentage": 33}],
            [{"key": "control", "rollout_percentage": 50}, {"key": "other", "rollout_percentage": 50}],
        ],
    )
    async def test_running_experiment_cannot_change_variant_keys(self, kit, app, running, variants):
        body = await patch(kit, running["id"], 400, parameters={"feature_flag_variants": variants},
                           update_feature_flag_params=True)
        assert body == error("Can't update feature_flag_variants on Experiment")
        flag = await stored_flag(app, running["feature_flag"]["id"])
        assert [v["key"] for v in flag.filters["multivariate"]["variants"]] == ["control", "test"]

    async def test_holdout_on_a_draft_rewrites_the_flag_holdout(self, kit, app):
        experiment = await create_experiment(kit)
        holdout_id = await make_holdout(kit, 10)
        body = await patch(kit, experiment["id"], holdout_id=holdout_id)
        assert body["holdout_id"] == holdout_id and body["holdout"]["id"] == holdout_id
        flag = await stored_flag(app, experiment["feature_flag"]["id"])
        assert flag.filters["holdout"] == {"id": holdout_id, "exclusion_percentage": 10}
        assert flag.filters["multivariate"] == experiment["feature_flag"]["filters"]["multivariate"]
        body = await patch(kit, experiment["id"], holdout_id=None)
        assert body["holdout"] is None
        assert (await stored_flag(app, experiment["feature_flag"]["id"])).filters["holdout"] is None
        body = await patch(kit, experiment["id"], 400, holdout_id=123456)
        assert body == error('Invalid pk "123456" - object does not exist.', code="does_not_exist",
                             attr="holdout_id")

    async def test_holdout_cannot_change_after_launch(self, kit, app, running):
        holdout_id = await make_holdout(kit, 10)
        body = await patch(kit, running["id"], 400, holdout_id=holdout_id)
        assert body == error("Can't update holdout on running Experiment")
        assert (await stored_experiment(app, running["id"])).holdout_id is None

    async def test_failed_update_leaves_flag_and_experiment_untouched(self, kit, app):
        experiment = await create_experiment(kit)
        body = await patch(kit, experiment["id"], 400, parameters={"feature_flag_variants": VARIANTS_75_25},
                           metrics=[{"kind": "ExperimentTrendsQuery"}])
        assert body["attr"] == "metrics"
        flag = await stored_flag(app, experiment["feature_flag"]["id"])
        assert flag.filters == experiment["feature_flag"]["filters"] and flag.version == 1
        assert (await stored_experiment(app, experiment["id"])).parameters is None

    async def test_baseline_is_checked_against_the_updated_variants(self, kit, app):
        experiment = await create_experiment(kit)
        body = await patch(kit, experiment["id"], 400, stats_config={"baseline_variant_key": "b"})
        assert body == error("Invalid baseline_variant_key: 'b'. Must be one of: control, test")
        variants = [{"key": "control", "rollout_percentage": 50}, {"key": "b", "rollout_percentage": 50}]
        body = await patch(kit, experiment["id"], stats_config={"baseline_variant_key": "b"},
                           parameters={"feature_flag_variants": variants})
        assert body["stats_config"] == {"baseline_variant_key": "b", "method": "bayesian"}


class TestDatesMoveTheStatus:
    async def test_start_date_launches_a_draft(self, kit, app):
        experiment = await create_experiment(kit)
        body = await patch(kit, experiment["id"], start_date="2024-06-01T00:00:00Z")
        assert body["status"] == "running" and body["start_date"] == "2024-06-01T00:00:00Z"
        assert body["feature_flag"]["active"] is True
        assert (await stored_experiment(app, experiment["id"])).status == "running"
        assert (await stored_flag(app, experiment["feature_flag"]["id"])).active is True
        logged = [a.activity for a in await activities(app, kit.project_id, experiment["id"])]
        assert logged == ["created", "launched", "updated"]

    async def test_start_date_with_a_deleted_flag_is_refused(self, kit, app):
        experiment = await create_experiment(kit)
        async with app.state.db.transaction() as session:
            from experiments_service.models import FeatureFlag

            (await session.get(FeatureFlag, experiment["feature_flag"]["id"])).deleted = True
        body = await patch(kit, experiment["id"], 400, start_date="2024-06-01T00:00:00Z")
        assert body == error("Experiment cannot be launched because its feature flag has been deleted.")
        row = await stored_experiment(app, experiment["id"])
        assert row.status == "draft" and row.start_date is None
        assert (await stored_flag(app, experiment["feature_flag"]["id"])).active is False

    async def test_end_date_ends_a_running_experiment_leaving_the_flag(self, kit, app, running):
        body = await patch(kit, running["id"], end_date="2030-01-01T00:00:00Z")
        assert body["status"] == "stopped" and body["end_date"] == "2030-01-01T00:00:00Z"
        assert body["feature_flag"]["active"] is True
        assert (await stored_experiment(app, running["id"])).status == "stopped"


class TestMetrics:
    async def test_fingerprints_ordering_and_uuids_follow_the_metrics(self, kit, app):
        await make_event_definition(kit, "purchase", "signup")
        experiment = await create_experiment(kit, metrics=[mean_metric(uuid="a"), mean_metric("signup", uuid="b")])
        assert experiment["primary_metrics_ordered_uuids"] == ["a", "b"]
        body = await patch(kit, experiment["id"], metrics=[mean_metric("signup", uuid="b"), mean_metric()])
        new_uuid = body["metrics"][1]["uuid"]
        assert new_uuid and new_uuid not in ("a", "b")
        assert body["primary_metrics_ordered_uuids"] == ["b", new_uuid]
        old = {m["uuid"]: m["fingerprint"] for m in experiment["metrics"]}
        assert body["metrics"][0]["fingerprint"] == old["b"]
        body = await patch(kit, experiment["id"], stats_config={"method": "frequentist"})
        assert body["metrics"][0]["fingerprint"] != old["b"]
        assert (await stored_experiment(app, experiment["id"])).metrics == body["metrics"]

    async def test_unknown_event_on_update_is_refused(self, kit):
        experiment = await create_experiment(kit)
        body = await patch(kit, experiment["id"], 400, metrics=[mean_metric("$pagevew")])
        assert body["detail"].startswith("Event(s) '$pagevew' not found.")

    async def test_saved_metric_links_are_replaced(self, kit, app):
        first = await make_saved_metric(kit, {**mean_metric(), "uuid": "first"})
        second = await make_saved_metric(kit, {**mean_metric(), "uuid": "second"})
        experiment = await create_experiment(kit, saved_metrics_ids=[{"id": first, "metadata": {"type": "primary"}}])
        assert experiment["primary_metrics_ordered_uuids"] == ["first"]
        body = await patch(kit, experiment["id"], saved_metrics_ids=[
            {"id": second, "metadata": {"type": "secondary"}}])
        assert [s["saved_metric"] for s in body["saved_metrics"]] == [second]
        assert body["primary_metrics_ordered_uuids"] == []
        assert body["secondary_metrics_ordered_uuids"] == ["second"]
        body = await patch(kit, experiment["id"], saved_metrics_ids=[])
        assert body["saved_metrics"] == []


class TestRestoreAndLegacy:
    async def test_restore_sees_the_soft_deleted_row(self, kit, app):
        experiment = await create_experiment(kit)
        await patch(kit, experiment["id"], deleted=True)
        await patch(kit, experiment["id"], 404, name="Still hidden")
        body = await patch(kit, experiment["id"], deleted=False)
        assert body["deleted"] is False
        assert (await stored_experiment(app, experiment["id"])).deleted is False

    async def test_restore_with_a_deleted_flag_is_refused(self, kit, app):
        experiment = await create_experiment(kit)
        await patch(kit, experiment["id"], deleted=True)
        async with app.state.db.transaction() as session:
            from experiments_service.models import FeatureFlag

            (await session.get(FeatureFlag, experiment["feature_flag"]["id"])).deleted = True
        body = await patch(kit, experiment["id"], 400, deleted=False)
        assert body == error(
            "Cannot restore experiment: the linked feature flag has been deleted. Restore the feature flag first, "
            "then restore the experiment."
        )
        assert (await stored_experiment(app, experiment["id"])).deleted is True

    async def test_legacy_experiments_only_change_name_description_end_date(self, kit, app):
        experiment = await create_experiment(kit)
        async with app.state.db.transaction() as session:
            row = await session.get(Experiment, experiment["id"])
            row.metrics = [{"kind": "ExperimentTrendsQuery", "uuid": str(uuid.uuid4()), "count_query": {}}]
        body = await patch(kit, experiment["id"], 400, name="ok", parameters={}, stats_config={})
        assert body == error(
            "This experiment uses legacy metric formats and can only have its name, description, or end_date "
            "updated. Cannot update: parameters, stats_config"
        )
        body = await patch(kit, experiment["id"], name="Renamed", description="d")
        assert body["name"] == "Renamed"
