"""Create, retrieve, list and delete of experiments (spec §2.1–2.5, §2.7–2.8, §7.1–7.2)."""

import re
import uuid

import pytest

from tests.experiments.helpers import (
    action,
    activities,
    error,
    experiments_named,
    flags_with_key,
    make_event_definition,
    make_holdout,
    make_saved_metric,
    mean_metric,
    patch,
    stored_experiment,
    stored_flag,
)
from tests.factories import TWO_VARIANTS, create_experiment, make_flag, make_kit

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class TestCreateDefaults:
    async def test_minimal_create_is_a_draft_with_reference_defaults(self, kit, app):
        response = await kit.client.post(
            f"{kit.base}/experiments/", json={"name": "Checkout", "feature_flag_key": "checkout"}, headers=kit.headers
        )
        assert response.status_code == 201
        body = response.json()
        assert list(body) == [
            "id", "name", "description", "start_date", "end_date", "feature_flag_key", "feature_flag", "holdout",
            "holdout_id", "exposure_cohort", "parameters", "secondary_metrics", "saved_metrics", "saved_metrics_ids",
            "filters", "archived", "deleted", "created_by", "created_at", "updated_at", "type", "exposure_criteria",
            "metrics", "metrics_secondary", "stats_config", "scheduling_config", "conclusion", "conclusion_comment",
            "primary_metrics_ordered_uuids", "secondary_metrics_ordered_uuids", "only_count_matured_users",
            "status", "user_access_level",
        ]
        assert body["status"] == "draft"
        assert body["description"] == ""
        assert body["type"] == "product"
        assert body["parameters"] is None
        assert body["metrics"] == body["metrics_secondary"] == body["secondary_metrics"] == []
        assert body["filters"] == {}
        assert body["scheduling_config"] is None
        assert body["archived"] is body["deleted"] is False
        assert body["conclusion"] is body["conclusion_comment"] is None
        assert body["primary_metrics_ordered_uuids"] is body["secondary_metrics_ordered_uuids"] is None
        assert body["stats_config"] == {"method": "bayesian"}
        assert body["exposure_criteria"] == {"filterTestAccounts": True}
        assert body["saved_metrics"] == [] and body["saved_metrics_ids"] is None
        assert body["holdout"] is None and body["holdout_id"] is None and body["exposure_cohort"] is None
        assert body["only_count_matured_users"] is False
        assert body["user_access_level"] == "editor"
        assert body["created_by"]["id"] == kit.user_id
        assert body["created_at"].endswith("Z") and body["updated_at"].endswith("Z")
        assert body["feature_flag_key"] == "checkout"

        flag = body["feature_flag"]
        assert flag["name"] == "Feature Flag for Experiment Checkout"
        assert flag["active"] is False
        assert flag["filters"]["groups"] == [{"properties": [], "rollout_percentage": 100}]
        assert flag["filters"]["multivariate"]["variants"] == [
            {"key": "control", "name": "Control Group", "rollout_percentage": 50},
            {"key": "test", "name": "Test Variant", "rollout_percentage": 50},
        ]
        assert flag["filters"]["aggregation_group_type_index"] is None
        assert flag["filters"]["holdout"] is None
        stored = await stored_flag(app, flag["id"])
        assert stored.creation_context == "experiments" and stored.active is False
        row = await stored_experiment(app, body["id"])
        assert row.status == "draft" and row.feature_flag_id == flag["id"]
        assert [entry.activity for entry in await activities(app, kit.project_id, body["id"])] == ["created"]

    async def test_start_date_creates_a_running_experiment_with_an_active_flag(self, kit, app):
        body = await create_experiment(kit, start_date="2024-06-01T10:23")
        assert body["status"] == "running"
        assert body["start_date"] == "2024-06-01T10:23:00Z"
        assert body["feature_flag"]["active"] is True
        assert (await stored_experiment(app, body["id"])).status == "running"

    async def test_start_and_end_date_create_a_stopped_experiment(self, kit, app):
        body = await create_experiment(kit, start_date="2024-06-01T00:00:00Z", end_date="2024-06-10T00:00:00Z")
        assert body["status"] == "stopped"
        assert (await stored_experiment(app, body["id"])).status == "stopped"

    async def test_parameters_shape_the_new_flag(self, kit):
        body = await create_experiment(
            kit,
            parameters={
                "feature_flag_variants": [
                    {"key": "Control", "name": "Baseline", "split_percent": 34},
                    {"key": "a", "rollout_percentage": 33},
                    {"key": "b", "split_percent": 33, "rollout_percentage": 10},
                ],
                "rollout_percentage": 50,
                "aggregation_group_type_index": 1,
                "feature_flag_payloads": {"a": "{\"color\": \"blue\"}"},
                "ensure_experience_continuity": True,
                "minimum_detectable_effect": 20,
            },
        )
        filters = body["feature_flag"]["filters"]
        assert filters["groups"] == [{"properties": [], "rollout_percentage": 50}]
        assert filters["multivariate"]["variants"] == [
            {"key": "control", "name": "Baseline", "rollout_percentage": 34},
            {"key": "a", "rollout_percentage": 33},
            {"key": "b", "rollout_percentage": 33},
        ]
        assert filters["aggregation_group_type_index"] == 1
        assert filters["payloads"] == {"a": "{\"color\": \"blue\"}"}
        assert body["feature_flag"]["ensure_experience_continuity"] is True
        assert body["parameters"]["feature_flag_variants"][0] == {
            "key": "control", "name": "Baseline", "rollout_percentage": 34, "split_percent": 34,
        }
        assert body["parameters"]["minimum_detectable_effect"] == 20

    async def test_excluded_variants_are_kept_and_change_fingerprints(self, kit):
        await make_event_definition(kit, "purchase")
        variants = [{"key": "control", "rollout_percentage": 34}, {"key": "a", "rollout_percentage": 33},
                    {"key": "b", "rollout_percentage": 33}]
        plain = await create_experiment(kit, parameters={"feature_flag_variants": variants},
                                        metrics=[mean_metric(uuid="m")])
        excluded = await create_experiment(kit, parameters={"feature_flag_variants": variants,
                                                            "excluded_variants": ["b"]},
                                           metrics=[mean_metric(uuid="m")])
        assert excluded["parameters"]["excluded_variants"] == ["b"]
        assert excluded["metrics"][0]["fingerprint"] != plain["metrics"][0]["fingerprint"]
        body = await create_experiment(kit, 400, parameters={"feature_flag_variants": variants,
                                                             "excluded_variants": ["a", "b"]})
        assert body == error("excluded_variants must leave at least one test variant", attr="parameters")

    async def test_web_experiment_gets_a_variants_map(self, kit, app):
        body = await create_experiment(kit, type="web")
        row = await stored_experiment(app, body["id"])
        assert row.variants == {"control": {"rollout_percentage": 50}, "test": {"rollout_percentage": 50}}

    async def test_holdout_is_written_to_the_new_flag(self, kit):
        holdout_id = await make_holdout(kit, 10)
        body = await create_experiment(kit, holdout_id=holdout_id)
        assert body["holdout_id"] == holdout_id
        assert body["holdout"]["id"] == holdout_id and body["holdout"]["name"] == "Holdout"
        assert body["feature_flag"]["filters"]["holdout"] == {"id": holdout_id, "exclusion_percentage": 10}

    async def test_stats_config_keeps_what_was_sent(self, kit):
        body = await create_experiment(
            kit, stats_config={"method": "frequentist", "frequentist": {"alpha": 0.1}}
        )
        assert body["stats_config"] == {"method": "frequentist", "frequentist": {"alpha": 0.1}}
        body = await create_experiment(kit, stats_config={"bayesian": {"ci_level": 0.9}})
        assert body["stats_config"] == {"bayesian": {"ci_level": 0.9}, "method": "bayesian"}

    async def test_only_count_matured_users_explicit_value(self, kit):
        body = await create_experiment(kit, only_count_matured_users=True)
        assert body["only_count_matured_users"] is True


class TestCreateLinksExistingFlag:
    async def test_existing_flag_is_linked_unchanged(self, kit, app):
        filters = {
            "groups": [{"properties": [{"key": "email", "value": "x", "type": "person"}], "rollout_percentage": 30}],
            "multivariate": {"variants": [{"key": "test", "rollout_percentage": 40},
                                          {"key": "control", "rollout_percentage": 60}]},
        }
        flag_id = (await make_flag(kit, "existing", filters, active=False)).id
        before = await stored_flag(app, flag_id)
        body = await create_experiment(kit, feature_flag_key="existing", parameters={
            "feature_flag_variants": TWO_VARIANTS})
        assert body["feature_flag"]["id"] == flag_id
        after = await stored_flag(app, flag_id)
        assert after.filters == before.filters and after.active is False and after.version == before.version

    async def test_existing_flag_without_control_is_refused(self, kit, app):
        await make_flag(kit, "no-control", {"groups": [], "multivariate": {"variants": [
            {"key": "a", "rollout_percentage": 50}, {"key": "b", "rollout_percentage": 50}]}})
        body = await create_experiment(kit, 400, name="No control", feature_flag_key="no-control")
        assert body == error("Feature flag must have a variant with key 'control'")
        assert await experiments_named(app, kit.project_id, "No control") == []

    async def test_existing_flag_with_one_variant_is_refused(self, kit):
        await make_flag(kit, "single", {"groups": [], "multivariate": {"variants": [
            {"key": "control", "rollout_percentage": 100}]}})
        body = await create_experiment(kit, 400, feature_flag_key="single")
        assert body == error("Feature flag must have at least 2 variants (control and at least one test variant)")

    async def test_created_running_on_an_inactive_linked_flag_is_paused(self, kit, app):
        flag_id = (await make_flag(kit, "off-flag", {"groups": [], "multivariate": {"variants": TWO_VARIANTS}},
                                  active=False)).id
        body = await create_experiment(kit, feature_flag_key="off-flag", start_date="2024-06-01T00:00:00Z")
        assert body["status"] == "paused" and body["feature_flag"]["active"] is False
        assert (await stored_experiment(app, body["id"])).status == "paused"
        assert (await stored_flag(app, flag_id)).active is False

    async def test_deleted_flag_with_the_key_is_ignored(self, kit, app):
        deleted_id = (await make_flag(kit, "reused", {"groups": [], "multivariate": {"variants": TWO_VARIANTS}},
                                     deleted=True)).id
        body = await create_experiment(kit, feature_flag_key="reused")
        assert body["feature_flag"]["id"] != deleted_id
        assert body["feature_flag"]["deleted"] is False
        assert len(await flags_with_key(app, kit.project_id, "reused")) == 2


class TestCreateValidation:
    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            ({"feature_flag_key": "k"}, error("This field is required.", code="required", attr="name")),
            ({"name": "x" * 401, "feature_flag_key": "k"},
             error("Ensure this field has no more than 400 characters.", code="max_length", attr="name")),
            ({"name": "n"}, error("This field is required.", code="required", attr="feature_flag_key")),
            ({"name": "n", "feature_flag_key": "k", "type": "desktop"},
             error('"desktop" is not a valid choice.', code="invalid_choice", attr="type")),
            ({"name": "n", "feature_flag_key": "k", "conclusion": "amazing"},
             error('"amazing" is not a valid choice.', code="invalid_choice", attr="conclusion")),
            ({"name": "n", "feature_flag_key": "bad key!"},
             error("Only letters, numbers, hyphens (-) & underscores (_) are allowed.", code="invalid_key",
                   attr="key")),
            ({"name": "n", "feature_flag_key": "k", "start_date": "2024-02-01T00:00:00Z",
              "end_date": "2024-01-01T00:00:00Z"}, error("End date must be after start date")),
            ({"name": "n", "feature_flag_key": "k", "holdout_id": 123456},
             error('Invalid pk "123456" - object does not exist.', code="does_not_exist", attr="holdout_id")),
        ],
    )
    async def test_field_errors(self, kit, app, payload, expected):
        response = await kit.client.post(f"{kit.base}/experiments/", json=payload, headers=kit.headers)
        assert response.status_code == 400
        assert response.json() == expected
        assert await flags_with_key(app, kit.project_id, payload.get("feature_flag_key", "k")) == []

    @pytest.mark.parametrize(
        ("parameters", "detail"),
        [
            ({"feature_flag_variants": ["control", "test"]}, "Feature flag variant at index 0 must be an object"),
            ({"feature_flag_variants": [{"rollout_percentage": 50}, {"key": "t", "rollout_percentage": 50}]},
             "Feature flag variant at index 0 must have a 'key' field"),
            ({"feature_flag_variants": [{"key": "control"}, {"key": "test"}]},
             "Each variant must include split_percent (recommended) or rollout_percentage (deprecated)."),
            ({"feature_flag_variants": [{"key": f"v{i}", "rollout_percentage": 5} for i in range(21)]},
             "Feature flag variants must be less than 21"),
            ({"feature_flag_variants": [{"key": "control", "rollout_percentage": 100}]},
             "Feature flag must have at least 2 variants (control and at least one test variant)"),
            ({"feature_flag_variants": [{"key": "a", "rollout_percentage": 50}, {"key": "b", "rollout_percentage": 50}]},
             "Feature flag variants must contain a variant with key 'control' (lowercase, exactly). "
             "Got keys: ['a', 'b']. Rename the baseline variant's 'key' to 'control'."),
            ({"feature_flag_variants": TWO_VARIANTS, "excluded_variants": ["control"]},
             "excluded_variants cannot include the baseline variant 'control'"),
            ({"excluded_variants": ["test"]},
             "excluded_variants requires feature_flag_variants in the same parameters payload"),
            ({"minimum_detectable_effect": "big"}, "minimum_detectable_effect must be a number"),
        ],
    )
    async def test_parameters_errors(self, kit, app, parameters, detail):
        key = unique("params")
        body = await create_experiment(kit, 400, feature_flag_key=key, parameters=parameters)
        assert body == error(detail, attr="parameters")
        assert await flags_with_key(app, kit.project_id, key) == []

    async def test_variant_percentages_must_sum_to_100(self, kit):
        body = await create_experiment(kit, 400, parameters={"feature_flag_variants": [
            {"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 40}]})
        assert body == error("Invalid variant definitions: Variant rollout percentages must sum to 100.",
                             attr="filters")

    @pytest.mark.parametrize("method", ["", "garbage", 42])
    async def test_invalid_stats_method(self, kit, method):
        body = await create_experiment(kit, 400, stats_config={"method": method})
        assert body == error(f"Invalid stats method: '{method}'. Must be one of: bayesian, frequentist",
                             attr="stats_config")

    async def test_exposure_criteria_must_be_an_object(self, kit):
        body = await create_experiment(kit, 400, exposure_criteria="all")
        assert body["attr"] == "exposure_criteria"
        assert body["detail"].startswith("exposure_criteria must be an object, got str. Expected shape: ")

    @pytest.mark.parametrize(
        "criteria",
        [{"filterTestAccounts": "yes"}, {"exposure_config": {"kind": "Nope"}},
         {"exposure_config": {"kind": "ExperimentEventExposureConfig", "event": "$pageview"}},
         {"exposure_config": {"kind": "ActionsNode"}}],
    )
    async def test_exposure_criteria_rejections(self, kit, criteria):
        body = await create_experiment(kit, 400, exposure_criteria=criteria)
        assert body["attr"] == "exposure_criteria" and body["code"] == "invalid_input"

    async def test_exposure_criteria_accepted_and_defaulted(self, kit):
        config = {"kind": "ExperimentEventExposureConfig", "event": "$pageview", "properties": []}
        body = await create_experiment(kit, exposure_criteria={"exposure_config": config})
        assert body["exposure_criteria"] == {"exposure_config": config, "filterTestAccounts": True}
        body = await create_experiment(kit, exposure_criteria={"filterTestAccounts": False})
        assert body["exposure_criteria"] == {"filterTestAccounts": False}

    @pytest.mark.parametrize(
        ("metrics", "detail"),
        [
            ({"kind": "ExperimentMetric"}, "Metrics must be a list"),
            (["purchase"], "Invalid metric at index 0: must be a dict"),
            ([{"kind": "ExperimentTrendsQuery"}],
             "Invalid metric at index 0: legacy metric kind 'ExperimentTrendsQuery' is no longer supported for new "
             "experiments. Use 'ExperimentMetric' instead."),
            ([{"kind": "TrendsQuery"}], "Invalid metric at index 0: metric kind must be 'ExperimentMetric'"),
            ([{"kind": "ExperimentMetric", "metric_type": "funnel", "series": []}],
             "Invalid metric at index 0: funnel metrics require at least one step. The experiment exposure event "
             "is added as the initial step automatically."),
        ],
    )
    async def test_metric_errors(self, kit, metrics, detail):
        body = await create_experiment(kit, 400, metrics=metrics)
        assert body == error(detail, attr="metrics")

    async def test_metric_schema_errors_are_bounded_and_never_echo_input(self, kit):
        body = await create_experiment(kit, 400, metrics_secondary=[
            mean_metric(), {"kind": "ExperimentMetric", "metric_type": "ratio", "numerator": "SECRET-INPUT"}])
        assert body["attr"] == "metrics_secondary"
        assert body["detail"].startswith("Invalid metric at index 1: [")
        assert "SECRET-INPUT" not in body["detail"] and "denominator" in body["detail"]

    async def test_unknown_event_is_refused_unless_allowed(self, kit, app):
        await make_event_definition(kit, "$pageview")
        body = await create_experiment(kit, 400, name="Typo", metrics=[mean_metric("$pagevew")])
        assert body["detail"].startswith("Event(s) '$pagevew' not found.")
        assert await experiments_named(app, kit.project_id, "Typo") == []
        created = await create_experiment(kit, metrics=[mean_metric("$pageview")])
        assert created["metrics"][0]["source"]["event"] == "$pageview"
        allowed = await create_experiment(kit, metrics=[mean_metric("$pagevew")], allow_unknown_events=True)
        assert allowed["metrics"][0]["source"]["event"] == "$pagevew"

    async def test_every_unknown_event_is_named_in_first_seen_order(self, kit):
        await make_event_definition(kit, "$pageview")
        body = await create_experiment(
            kit, 400,
            metrics=[mean_metric("$pageview"), mean_metric("signup")],
            metrics_secondary=[mean_metric("$pagevew"), mean_metric("signup")],
        )
        assert body["detail"].startswith("Event(s) 'signup', '$pagevew' not found.")

    async def test_unknown_action_is_refused_with_its_id(self, kit):
        metric = {"kind": "ExperimentMetric", "metric_type": "mean", "source": {"kind": "ActionsNode", "id": 999999}}
        body = await create_experiment(kit, 400, metrics=[metric])
        assert body == error(
            "Action(s) with ID 999999 not found or deleted. Each ActionsNode must reference an existing action "
            "belonging to this project."
        )

    @pytest.mark.parametrize(
        ("payload", "detail"),
        [
            ({"id": 1}, "Saved metrics must be a list"),
            ([1], "Saved metric must be an object"),
            ([{"metadata": {"type": "primary"}}], "Saved metric must have an id"),
            ([{"id": 1, "metadata": "primary"}], "Metadata must be an object"),
            ([{"id": 1, "metadata": {"kind": "primary"}}], "Metadata must have a type key"),
            ([{"id": 987654321}], "Saved metric does not exist or does not belong to this project"),
        ],
    )
    async def test_saved_metrics_payload_errors(self, kit, payload, detail):
        body = await create_experiment(kit, 400, saved_metrics_ids=payload)
        assert body == error(detail, attr="saved_metrics_ids")

    async def test_saved_metric_of_another_project_is_refused(self, kit, app, client):
        other = await make_kit(app, client)
        saved_id = await make_saved_metric(other, {**mean_metric(), "uuid": str(uuid.uuid4())})
        body = await create_experiment(kit, 400, saved_metrics_ids=[{"id": saved_id}])
        assert body == error("Saved metric does not exist or does not belong to this project",
                             attr="saved_metrics_ids")

    async def test_holdout_of_another_project_is_refused(self, kit, app, client):
        other = await make_kit(app, client)
        holdout_id = await make_holdout(other, 20)
        body = await create_experiment(kit, 400, holdout_id=holdout_id)
        assert body == error(f'Invalid pk "{holdout_id}" - object does not exist.', code="does_not_exist",
                             attr="holdout_id")

    async def test_late_failure_leaves_no_flag_and_no_experiment(self, kit, app):
        """The baseline is checked after the flag is created: the whole request must roll back."""
        key = unique("late")
        body = await create_experiment(kit, 400, name="Late failure", feature_flag_key=key,
                                       stats_config={"baseline_variant_key": "nope"})
        assert body == error("Invalid baseline_variant_key: 'nope'. Must be one of: control, test")
        assert await flags_with_key(app, kit.project_id, key) == []
        assert await experiments_named(app, kit.project_id, "Late failure") == []


class TestCreateMetrics:
    async def test_uuids_fingerprints_and_ordering(self, kit):
        await make_event_definition(kit, "purchase", "signup")
        body = await create_experiment(
            kit,
            metrics=[mean_metric(uuid="dup"), mean_metric("signup", uuid="dup"), mean_metric(uuid="")],
            metrics_secondary=[mean_metric(uuid="dup")],
            primary_metrics_ordered_uuids=["unknown"],
        )
        uuids = [m["uuid"] for m in body["metrics"]]
        secondary = [m["uuid"] for m in body["metrics_secondary"]]
        assert uuids[0] == "dup"
        assert len(set(uuids + secondary)) == 4 and all(uuids + secondary)
        assert all(HEX64.match(m["fingerprint"]) for m in body["metrics"] + body["metrics_secondary"])
        assert body["primary_metrics_ordered_uuids"] == uuids
        assert body["secondary_metrics_ordered_uuids"] == secondary

    async def test_requested_ordering_is_kept(self, kit):
        await make_event_definition(kit, "purchase")
        body = await create_experiment(
            kit,
            metrics=[mean_metric(uuid="a"), mean_metric(uuid="b")],
            primary_metrics_ordered_uuids=["b", "a"],
        )
        assert body["primary_metrics_ordered_uuids"] == ["b", "a"]

    async def test_saved_metrics_are_linked_and_ordered(self, kit, app):
        await make_event_definition(kit, "purchase")
        primary_id = await make_saved_metric(kit, {**mean_metric(), "uuid": "saved-primary"})
        secondary_id = await make_saved_metric(kit, {**mean_metric(), "uuid": "saved-secondary"})
        body = await create_experiment(
            kit,
            metrics=[mean_metric(uuid="saved-primary")],
            saved_metrics_ids=[{"id": primary_id, "metadata": {"type": "primary"}},
                               {"id": secondary_id, "metadata": {"type": "secondary"}}],
        )
        inline = body["metrics"][0]["uuid"]
        assert inline != "saved-primary"  # collided with a saved metric's uuid, so regenerated
        assert body["primary_metrics_ordered_uuids"] == [inline, "saved-primary"]
        assert body["secondary_metrics_ordered_uuids"] == ["saved-secondary"]
        assert [(s["saved_metric"], s["metadata"], s["name"]) for s in body["saved_metrics"]] == [
            (primary_id, {"type": "primary"}, "Saved"), (secondary_id, {"type": "secondary"}, "Saved")]
        assert all(HEX64.match(s["query"]["fingerprint"]) for s in body["saved_metrics"])
        assert body["saved_metrics"][0]["experiment"] == body["id"]


class TestRetrieveAndDelete:
    async def test_retrieve(self, kit):
        created = await create_experiment(kit)
        response = await kit.client.get(f"{kit.base}/experiments/{created['id']}", headers=kit.headers)
        assert response.status_code == 200
        assert response.json() == created

    async def test_other_project_experiment_is_not_found(self, kit, app, client):
        other = await make_kit(app, client)
        theirs = await create_experiment(other)
        response = await kit.client.get(f"{kit.base}/experiments/{theirs['id']}/", headers=kit.headers)
        assert response.status_code == 404
        assert response.json() == {"type": "invalid_request", "code": "not_found", "detail": "Not found.",
                                   "attr": None}

    async def test_delete_is_not_allowed_and_has_an_empty_body(self, kit, app):
        created = await create_experiment(kit)
        response = await kit.client.delete(f"{kit.base}/experiments/{created['id']}/", headers=kit.headers)
        assert response.status_code == 405
        assert response.content == b""
        assert (await stored_experiment(app, created["id"])).deleted is False

    async def test_soft_deleted_experiment_is_not_found(self, kit):
        created = await create_experiment(kit)
        await patch(kit, created["id"], deleted=True)
        response = await kit.client.get(f"{kit.base}/experiments/{created['id']}/", headers=kit.headers)
        assert response.status_code == 404
        await action(kit, created["id"], "launch", 404)


class TestList:
    async def _list(self, kit, expected_status: int = 200, **params):
        response = await kit.client.get(f"{kit.base}/experiments/", params=params, headers=kit.headers)
        assert response.status_code == expected_status, response.text
        return response.json()

    async def _names(self, kit, **params) -> list[str]:
        return [item["name"] for item in (await self._list(kit, **params))["results"]]

    async def test_default_excludes_deleted_and_archived_newest_first(self, kit):
        first = await create_experiment(kit, name="first")
        await create_experiment(kit, name="second")
        archived = await create_experiment(kit, name="archived")
        await patch(kit, archived["id"], archived=True)
        deleted = await create_experiment(kit, name="deleted")
        await patch(kit, deleted["id"], deleted=True)
        body = await self._list(kit)
        assert body["count"] == 2 and body["next"] is None and body["previous"] is None
        assert [item["name"] for item in body["results"]] == ["second", "first"]
        assert body["results"][1] == {**first, "updated_at": body["results"][1]["updated_at"]}
        assert await self._names(kit, archived="true") == ["archived"]

    async def test_status_filters(self, kit):
        await create_experiment(kit, name="draft")
        running = await create_experiment(kit, name="running")
        await action(kit, running["id"], "launch")
        paused = await create_experiment(kit, name="paused")
        await action(kit, paused["id"], "launch")
        await action(kit, paused["id"], "pause")
        stopped = await create_experiment(kit, name="stopped")
        await action(kit, stopped["id"], "launch")
        await action(kit, stopped["id"], "end")
        assert await self._names(kit, status="draft") == ["draft"]
        assert await self._names(kit, status="running") == ["running"]
        assert await self._names(kit, status="paused") == ["paused"]
        assert await self._names(kit, status="stopped") == ["stopped"]
        assert await self._names(kit, status="complete") == ["stopped"]
        assert len(await self._names(kit, status="all")) == 4
        assert len(await self._names(kit, status="bogus")) == 4

    async def test_created_by_search_and_flag_filters(self, kit, app, client):
        other_headers, other_id = await kit.key(["*"])
        mine = await create_experiment(kit, name="Blue Button")
        response = await kit.client.post(
            f"{kit.base}/experiments/", json={"name": "Red button", "feature_flag_key": unique("red")},
            headers=other_headers,
        )
        assert response.status_code == 201
        assert await self._names(kit, created_by_id=str(other_id)) == ["Red button"]
        assert await self._names(kit, created_by_id=f"[{other_id}, {kit.user_id}]") == ["Red button", "Blue Button"]
        assert await self._names(kit, created_by_id=f"{kit.user_id}") == ["Blue Button"]
        assert await self._names(kit, search="BUTTON") == ["Red button", "Blue Button"]
        assert await self._names(kit, search="blue") == ["Blue Button"]
        assert await self._names(kit, feature_flag_id=str(mine["feature_flag"]["id"])) == ["Blue Button"]
        body = await self._list(kit, 400, feature_flag_id="abc")
        assert body == error("feature_flag_id must be an integer")

    async def test_ordering(self, kit):
        await create_experiment(kit, name="b-draft")
        short = await create_experiment(kit, name="a-short", start_date="2024-01-01T00:00:00Z",
                                        end_date="2024-01-02T00:00:00Z")
        long = await create_experiment(kit, name="c-long", start_date="2024-01-01T00:00:00Z",
                                       end_date="2024-03-01T00:00:00Z")
        running = await create_experiment(kit, name="d-running", start_date="2024-05-01T00:00:00Z")
        assert short["status"] == long["status"] == "stopped" and running["status"] == "running"
        assert await self._names(kit, order="name") == ["a-short", "b-draft", "c-long", "d-running"]
        assert await self._names(kit, order="-name") == ["d-running", "c-long", "b-draft", "a-short"]
        assert (await self._names(kit, order="duration"))[:3] == ["a-short", "c-long", "d-running"]
        assert await self._names(kit, order="-duration") == ["d-running", "c-long", "a-short", "b-draft"]
        assert await self._names(kit, order="status") == ["b-draft", "d-running", "a-short", "c-long"]
        assert (await self._names(kit, order="-status"))[-1] == "b-draft"
        assert (await self._names(kit, order="start_date"))[:3] == ["a-short", "c-long", "d-running"]
        body = await self._list(kit, 400, order="color")
        assert body == error("Invalid order field: 'color'")

    async def test_pagination_links(self, kit):
        for index in range(5):
            await create_experiment(kit, name=f"e{index}")
        body = await self._list(kit, limit=2)
        assert body["count"] == 5 and [r["name"] for r in body["results"]] == ["e4", "e3"]
        assert body["previous"] is None
        assert body["next"] == f"http://testserver{kit.base}/experiments/?limit=2&offset=2"
        body = await self._list(kit, limit=2, offset=2)
        assert [r["name"] for r in body["results"]] == ["e2", "e1"]
        assert body["previous"] == f"http://testserver{kit.base}/experiments/?limit=2"
        assert body["next"] == f"http://testserver{kit.base}/experiments/?limit=2&offset=4"
        body = await self._list(kit, limit=2, offset=4)
        assert body["next"] is None and [r["name"] for r in body["results"]] == ["e0"]
        body = await self._list(kit, limit=1000)
        assert len(body["results"]) == 5

    async def test_read_scope_suffices_and_write_needs_write(self, kit):
        read_headers, _ = await kit.key(["experiment:read"])
        response = await kit.client.get(f"{kit.base}/experiments/", headers=read_headers)
        assert response.status_code == 200
        response = await kit.client.post(f"{kit.base}/experiments/", json={"name": "n", "feature_flag_key": "k"},
                                         headers=read_headers)
        assert response.status_code == 403
        assert response.json()["detail"] == "API key missing required scope 'experiment:write'"


async def test_non_numeric_experiment_id_is_not_found(kit):
    response = await kit.client.get(f"{kit.base}/experiments/abc/", headers=kit.headers)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


class TestMalformedInput:
    """Wrong shapes anywhere in the body are 400s with the field named, never 500s, and write nothing."""

    @pytest.mark.parametrize(
        ("payload", "attr"),
        [
            ({"filters": ["x"]}, "filters"),
            ({"secondary_metrics": {"a": 1}}, "secondary_metrics"),
            ({"scheduling_config": "daily"}, "scheduling_config"),
            ({"parameters": ["x"]}, "parameters"),
            ({"parameters": {"rollout_percentage": "50"}}, "parameters"),
            ({"parameters": {"rollout_percentage": 150}}, "parameters"),
            ({"parameters": {"aggregation_group_type_index": "0"}}, "parameters"),
            ({"parameters": {"feature_flag_payloads": "x"}}, "parameters"),
            ({"parameters": {"feature_flag_variants": [{"key": 1, "rollout_percentage": 50},
                                                       {"key": "control", "rollout_percentage": 50}]}}, "parameters"),
            ({"stats_config": "bayesian"}, "stats_config"),
            ({"holdout_id": "abc"}, "holdout_id"),
            ({"start_date": "yesterday"}, "start_date"),
            ({"name": ""}, "name"),
            ({"primary_metrics_ordered_uuids": "a"}, "primary_metrics_ordered_uuids"),
        ],
    )
    async def test_bad_shapes(self, kit, app, payload, attr):
        key = unique("shape")
        body = await create_experiment(kit, 400, feature_flag_key=key, **payload)
        assert body["type"] == "validation_error" and body["attr"] == attr
        assert await flags_with_key(app, kit.project_id, key) == []

    async def test_non_string_metric_uuid_is_replaced(self, kit):
        await make_event_definition(kit, "purchase")
        body = await create_experiment(kit, metrics=[mean_metric(uuid={"a": 1}), mean_metric(uuid=7)])
        assert all(isinstance(m["uuid"], str) for m in body["metrics"])
        assert len({m["uuid"] for m in body["metrics"]}) == 2

    @pytest.mark.parametrize("content", [b"[]", b'"text"', b"{not json"])
    async def test_non_object_bodies(self, kit, content):
        response = await kit.client.post(
            f"{kit.base}/experiments/", content=content,
            headers={**kit.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 400
        assert set(response.json()) == {"type", "code", "detail", "attr"}
