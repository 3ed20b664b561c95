"""GET .../results/: exposure rules, windows, validation failures and errors."""

from datetime import timedelta

from experiments_service.models import ExperimentSavedMetric, ExperimentToSavedMetric
from tests.results.helpers import (
    START,
    by_key,
    create_experiment,
    event,
    flag_called,
    insert_events,
    mean_metric,
    minutes,
)


async def get_results(kit, experiment_id, **params):
    return await kit.client.get(f"{kit.base}/experiments/{experiment_id}/results/", params=params, headers=kit.headers)


class TestExposureRules:
    async def test_person_seen_in_two_variants_is_excluded_as_multiple(self, app, kit):
        created = await create_experiment(app, kit.project_id, metrics=[mean_metric()])
        await insert_events(app, kit.project_id, [
            flag_called("a", created.flag_key, "control", START + minutes(1)),
            flag_called("b", created.flag_key, "control", START + minutes(1)),
            flag_called("b", created.flag_key, "test", START + minutes(2)),
            flag_called("c", created.flag_key, "test", START + minutes(1)),
            event("purchase", "a", START + minutes(5)),
            event("purchase", "b", START + minutes(5)),
            event("purchase", "c", START + minutes(5)),
            event("purchase", "c", START + minutes(6)),
        ])

        response = await get_results(kit, created.id)

        assert response.status_code == 200
        body = response.json()
        assert body["exposures"] == {"control": 1, "test": 1, "$multiple": 1}
        variants = by_key(body["results"][0])
        assert (variants["control"]["number_of_samples"], variants["control"]["sum"]) == (1, 1.0)
        assert (variants["test"]["number_of_samples"], variants["test"]["sum"]) == (1, 2.0)

    async def test_first_seen_assigns_the_variant_of_the_earliest_exposure(self, app, kit):
        created = await create_experiment(
            app, kit.project_id, metrics=[mean_metric()],
            exposure_criteria={"multiple_variant_handling": "first_seen"},
        )
        await insert_events(app, kit.project_id, [
            flag_called("b", created.flag_key, "test", START + minutes(2)),
            flag_called("b", created.flag_key, "control", START + minutes(1)),
            event("purchase", "b", START + minutes(1)),
            event("purchase", "b", START + minutes(3)),
        ])

        body = (await get_results(kit, created.id)).json()

        assert body["exposures"] == {"control": 1, "test": 0, "$multiple": 0}
        assert by_key(body["results"][0])["control"]["sum"] == 2.0

    async def test_only_exposures_and_events_inside_the_window_count(self, app, kit):
        end = START + timedelta(days=2)
        created = await create_experiment(app, kit.project_id, end=end, metrics=[mean_metric()])
        await insert_events(app, kit.project_id, [
            flag_called("early", created.flag_key, "control", START - minutes(1)),
            flag_called("late", created.flag_key, "control", end + minutes(1)),
            flag_called("in", created.flag_key, "control", START),
            flag_called("edge", created.flag_key, "test", end),
            flag_called("other-variant", created.flag_key, "not-a-variant", START + minutes(1)),
            flag_called("other-flag", "another-flag", "control", START + minutes(1)),
            event("purchase", "in", START - minutes(1)),  # before exposure
            event("purchase", "in", START),  # at exposure: counts
            event("purchase", "in", end),  # at the end: counts
            event("purchase", "in", end + minutes(1)),  # after the end
            event("purchase", "edge", end),
            event("purchase", "early", START + minutes(1)),
        ])

        body = (await get_results(kit, created.id)).json()

        assert body["exposures"] == {"control": 1, "test": 1, "$multiple": 0}
        variants = by_key(body["results"][0])
        assert variants["control"]["sum"] == 2.0
        assert variants["test"]["sum"] == 1.0
        assert body["data_through"].startswith("2026-01-07T12:00:00")

    async def test_conversion_window_limits_metric_events_after_exposure(self, app, kit):
        metric = mean_metric() | {"conversion_window": 1, "conversion_window_unit": "hour"}
        created = await create_experiment(app, kit.project_id, metrics=[metric])
        exposed_at = START + timedelta(microseconds=250)
        await insert_events(app, kit.project_id, [
            flag_called("a", created.flag_key, "control", exposed_at),
            event("purchase", "a", exposed_at + timedelta(minutes=59, seconds=59, microseconds=999999)),
            event("purchase", "a", exposed_at + timedelta(hours=1)),
        ])

        body = (await get_results(kit, created.id)).json()

        assert by_key(body["results"][0])["control"]["sum"] == 1.0

    async def test_custom_exposure_event_reads_the_variant_from_feature_property(self, app, kit):
        created = await create_experiment(
            app, kit.project_id, metrics=[mean_metric()],
            exposure_criteria={"exposure_config": {
                "kind": "ExperimentEventExposureConfig", "event": "$pageview",
                "properties": [{"key": "$current_url", "value": "https://shop/checkout", "operator": "exact", "type": "event"}],
            }},
        )
        feature = f"$feature/{created.flag_key}"
        await insert_events(app, kit.project_id, [
            event("$pageview", "a", START + minutes(1), {feature: "test", "$current_url": "https://shop/checkout"}),
            event("$pageview", "b", START + minutes(1), {feature: "control", "$current_url": "https://shop/home"}),
            event("$pageview", "c", START + minutes(1), {"$current_url": "https://shop/checkout"}),
            flag_called("d", created.flag_key, "control", START + minutes(1)),
            event("purchase", "a", START + minutes(2)),
        ])

        body = (await get_results(kit, created.id)).json()

        assert body["exposures"] == {"control": 0, "test": 1, "$multiple": 0}
        assert by_key(body["results"][0])["test"]["sum"] == 1.0

    async def test_holdout_is_a_variant_of_its_own(self, app, kit):
        created = await create_experiment(app, kit.project_id, metrics=[mean_metric()], with_holdout=True)
        holdout = f"holdout-{created.holdout_id}"
        await insert_events(app, kit.project_id, [
            flag_called("a", created.flag_key, holdout, START + minutes(1)),
            flag_called("b", created.flag_key, "control", START + minutes(1)),
        ])

        body = (await get_results(kit, created.id)).json()

        assert body["exposures"] == {"control": 1, "test": 0, holdout: 1, "$multiple": 0}
        assert body["srm"]["observed"] == {"control": 1, "test": 0}
        assert [item["key"] for item in body["results"][0]["variant_results"]] == ["test", holdout]


class TestValidationFailures:
    async def test_too_few_exposures_leave_statistics_empty(self, app, kit):
        created = await create_experiment(app, kit.project_id, metrics=[mean_metric()])
        await insert_events(app, kit.project_id, [
            flag_called(f"u{i}", created.flag_key, "control" if i % 2 else "test", START + minutes(i)) for i in range(60)
        ] + [event("purchase", f"u{i}", START + minutes(i + 1)) for i in range(60)])

        result = (await get_results(kit, created.id)).json()["results"][0]

        assert result["baseline"]["validation_failures"] == ["not_enough_exposures"]
        [variant] = result["variant_results"]
        assert variant["validation_failures"] == ["not_enough_exposures"]
        assert variant["chance_to_win"] is None and variant["credible_interval"] is None
        assert variant["significant"] is None

    async def test_zero_baseline_and_sparse_funnel_are_reported(self, app, kit):
        funnel = {"kind": "ExperimentMetric", "metric_type": "funnel", "uuid": "f",
                  "series": [{"kind": "EventsNode", "event": "purchase"}]}
        created = await create_experiment(app, kit.project_id, metrics=[mean_metric(), funnel])
        rows = [flag_called(f"c{i}", created.flag_key, "control", START) for i in range(50)]
        rows += [flag_called(f"t{i}", created.flag_key, "test", START) for i in range(50)]
        rows += [event("purchase", f"t{i}", START + minutes(1)) for i in range(4)]
        await insert_events(app, kit.project_id, rows)

        mean, funnel_result = (await get_results(kit, created.id)).json()["results"]

        assert mean["baseline"]["validation_failures"] == ["baseline_mean_is_zero"]
        assert mean["variant_results"][0]["validation_failures"] == []
        assert mean["variant_results"][0]["chance_to_win"] is None
        assert funnel_result["baseline"]["validation_failures"] == ["not_enough_metric_data", "baseline_mean_is_zero"]
        assert funnel_result["variant_results"][0]["validation_failures"] == ["not_enough_metric_data"]


class TestMetricsSelection:
    async def test_all_metrics_primary_then_secondary_including_saved(self, app, kit):
        primary, secondary = mean_metric("purchase"), mean_metric("$pageview")
        created = await create_experiment(app, kit.project_id, metrics=[primary], metrics_secondary=[secondary])
        async with app.state.db.transaction() as session:
            saved = ExperimentSavedMetric(
                project_id=kit.project_id, name="saved", query=mean_metric("signup") | {"uuid": "saved-uuid"}
            )
            session.add(saved)
            await session.flush()
            session.add(ExperimentToSavedMetric(experiment_id=created.id, saved_metric_id=saved.id,
                                                metadata_={"type": "primary"}))

        body = (await get_results(kit, created.id)).json()

        assert [(r["metric_uuid"], r["role"]) for r in body["results"]] == [
            (primary["uuid"], "primary"), ("saved-uuid", "primary"), (secondary["uuid"], "secondary"),
        ]
        assert body["results"][0]["fingerprint"] == primary["fingerprint"]
        assert body["results"][1]["saved_metric_id"] is not None

        only = (await get_results(kit, created.id, metric_uuid=secondary["uuid"])).json()
        assert [r["metric_uuid"] for r in only["results"]] == [secondary["uuid"]]

    async def test_unsupported_metric_is_reported_on_the_metric(self, app, kit):
        metric = mean_metric() | {"source": {"kind": "ActionsNode", "id": 3}}
        created = await create_experiment(app, kit.project_id, metrics=[metric])

        response = await get_results(kit, created.id)

        assert response.status_code == 200
        [result] = response.json()["results"]
        assert result["error"] == "source: only EventsNode sources are supported, got 'ActionsNode'."
        assert result["baseline"] is None and result["variant_results"] == []


class TestErrors:
    async def test_draft_experiment_is_rejected(self, app, kit):
        created = await create_experiment(app, kit.project_id, start=None, metrics=[mean_metric()])

        response = await get_results(kit, created.id)

        assert response.status_code == 400
        assert response.json() == {"type": "validation_error", "code": "invalid_input",
                                   "detail": "Experiment has not been started yet", "attr": None}

    async def test_unknown_metric_uuid_is_not_found(self, app, kit):
        created = await create_experiment(app, kit.project_id, metrics=[mean_metric()])

        response = await get_results(kit, created.id, metric_uuid="nope")

        assert response.status_code == 404
        assert response.json()["detail"] == "No metric with uuid 'nope' in this experiment."

    async def test_other_projects_experiment_is_not_found(self, app, client, kit):
        from tests.factories import make_kit

        other = await make_kit(app, client)
        created = await create_experiment(app, other.project_id, metrics=[mean_metric()])

        response = await get_results(kit, created.id)

        assert response.status_code == 404

    async def test_read_scope_is_required(self, app, kit):
        created = await create_experiment(app, kit.project_id, metrics=[mean_metric()])
        headers, _ = await kit.key(["feature_flag:read"])

        response = await kit.client.get(f"{kit.base}/experiments/{created.id}/results/", headers=headers)
        unauthenticated = await kit.client.get(f"{kit.base}/experiments/{created.id}/results/")

        assert response.status_code == 403
        assert response.json()["detail"] == "API key missing required scope 'experiment:read'"
        assert unauthenticated.status_code == 401


class TestPropertyValues:
    async def test_only_numeric_values_are_summed_and_compared(self, app, kit):
        metric = mean_metric("purchase", math="sum", math_property="amount",
                             properties=[{"key": "amount", "operator": "gt", "value": "1", "type": "event"}])
        created = await create_experiment(app, kit.project_id, metrics=[metric])
        await insert_events(app, kit.project_id, [
            flag_called("a", created.flag_key, "control", START),
            event("purchase", "a", START + minutes(1), {"amount": 12.5}),
            event("purchase", "a", START + minutes(2), {"amount": "abc"}),
            event("purchase", "a", START + minutes(3), {"amount": "7"}),
            event("purchase", "a", START + minutes(4), {"amount": 0.5}),
            event("purchase", "a", START + minutes(5), {"amount": True}),
            event("purchase", "a", START + minutes(6)),
        ])

        response = await get_results(kit, created.id)

        assert response.status_code == 200
        assert by_key(response.json()["results"][0])["control"]["sum"] == 12.5

    async def test_each_property_operator_selects_its_events(self, app, kit):
        cases = [  # (key, operator, value, matching events)
            ("plan", "exact", "basic", 1),
            ("plan", "exact", ["basic", "pro"], 2),
            ("plan", "is_not", "basic", 4),
            ("plan", "is_set", None, 3),
            ("plan", "is_not_set", None, 2),
            ("plan", "icontains", "PRO", 2),
            ("plan", "not_icontains", "pro", 3),
            ("amount", "gte", "5", 2),
            ("amount", "lte", "5", 2),
            ("amount", "lt", "5", 1),
        ]
        metrics = [
            mean_metric(properties=[{"key": key, "operator": operator, "value": value, "type": "event"}])
            for key, operator, value, _ in cases
        ]
        created = await create_experiment(app, kit.project_id, metrics=metrics)
        await insert_events(app, kit.project_id, [
            flag_called("a", created.flag_key, "control", START),
            event("purchase", "a", START + minutes(1), {"plan": "Pro Annual", "amount": 5}),
            event("purchase", "a", START + minutes(2), {"plan": "basic", "amount": 2}),
            event("purchase", "a", START + minutes(3), {"plan": "pro"}),
            event("purchase", "a", START + minutes(4), {}),
            event("purchase", "a", START + minutes(5), {"amount": 10}),
        ])

        response = await get_results(kit, created.id)

        assert response.status_code == 200
        sums = [by_key(result)["control"]["sum"] for result in response.json()["results"]]
        assert sums == [float(matching) for *_, matching in cases]

    async def test_unsupported_property_operator_is_a_metric_error(self, app, kit):
        metric = mean_metric(properties=[{"key": "plan", "operator": "regex", "value": "^pro"}])
        created = await create_experiment(app, kit.project_id, metrics=[metric])

        [result] = (await get_results(kit, created.id)).json()["results"]

        assert result["error"] == "source: property operator 'regex' is not supported."

    async def test_non_numeric_comparison_value_is_a_metric_error(self, app, kit):
        metric = mean_metric(properties=[{"key": "amount", "operator": "gt", "value": "lots"}])
        created = await create_experiment(app, kit.project_id, metrics=[metric])

        [result] = (await get_results(kit, created.id)).json()["results"]

        assert result["error"] == "source: operator 'gt' needs a numeric value."


class TestStatsConfig:
    async def test_levels_outside_zero_and_one_are_rejected(self, app, kit):
        created = await create_experiment(
            app, kit.project_id, metrics=[mean_metric()], stats_config={"method": "bayesian", "bayesian": {"ci_level": 95}}
        )

        response = await get_results(kit, created.id)

        assert response.status_code == 400
        assert response.json() == {"type": "validation_error", "code": "invalid_input",
                                   "detail": "stats_config.bayesian.ci_level must be a number between 0 and 1.",
                                   "attr": "stats_config"}

    async def test_baseline_variant_key_is_configurable(self, app, kit):
        created = await create_experiment(
            app, kit.project_id, metrics=[mean_metric()],
            stats_config={"method": "frequentist", "baseline_variant_key": "test"},
        )

        [result] = (await get_results(kit, created.id)).json()["results"]

        assert result["baseline"]["key"] == "test"
        assert [item["key"] for item in result["variant_results"]] == ["control"]


class TestMath:
    async def test_unique_sessions_and_active_days_per_person(self, app, kit):
        sessions = mean_metric("$pageview", math="unique_session")
        days = mean_metric("$pageview", math="dau")
        created = await create_experiment(app, kit.project_id, metrics=[sessions, days])
        await insert_events(app, kit.project_id, [
            flag_called("a", created.flag_key, "control", START),
            event("$pageview", "a", START + minutes(1), {"$session_id": "s1"}),
            event("$pageview", "a", START + minutes(2), {"$session_id": "s1"}),
            event("$pageview", "a", START + timedelta(days=1), {"$session_id": "s2"}),
            event("$pageview", "a", START + timedelta(days=1, minutes=1), {"$session_id": "s3"}),
        ])

        session_result, day_result = (await get_results(kit, created.id)).json()["results"]

        assert by_key(session_result)["control"]["sum"] == 3.0
        assert by_key(day_result)["control"]["sum"] == 2.0
