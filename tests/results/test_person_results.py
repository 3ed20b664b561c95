"""Results count persons, not distinct ids: an anonymous exposure and a conversion after
`$identify` are one exposed converter, and stored values stay right when a merge arrives late."""

import uuid
from datetime import timedelta

from sqlalchemy import delete

from experiments_service.models import ResultsMaterialization
from tests.results.helpers import START, by_key, create_experiment, mean_metric, results_for


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def exposure(distinct_id: str, flag: str, variant: str, minutes: float) -> dict:
    properties = {"$feature_flag": flag, "$feature_flag_response": variant}
    return {"event": "$feature_flag_called", "distinct_id": distinct_id, "timestamp": at(minutes), "properties": properties}


def plain(name: str, distinct_id: str, minutes: float, **properties) -> dict:
    return {"event": name, "distinct_id": distinct_id, "timestamp": at(minutes), "properties": properties}


def identify(distinct_id: str, anon: str, minutes: float) -> dict:
    return plain("$identify", distinct_id, minutes, **{"$anon_distinct_id": anon})


async def capture(kit, *events: dict) -> None:
    batch = [{"uuid": str(uuid.uuid4()), **item} for item in events]
    response = await kit.client.post("/batch/", json={"api_key": kit.project_api_key, "batch": batch})
    assert response.status_code == 200, response.text


def funnel_metric() -> dict:
    return {
        "kind": "ExperimentMetric", "metric_type": "funnel", "uuid": str(uuid.uuid4()),
        "series": [{"kind": "EventsNode", "event": "view"}, {"kind": "EventsNode", "event": "purchase"}],
    }


async def fresh_figures(app, kit, experiment_id: int) -> dict:
    """Results computed from the events alone (stored values forgotten first)."""
    async with app.state.db.transaction() as session:
        await session.execute(delete(ResultsMaterialization).where(ResultsMaterialization.experiment_id == experiment_id))
    return figures(await results_for(kit, experiment_id))


def figures(body: dict) -> dict:
    return {"exposures": body["exposures"], "results": body["results"]}


async def test_anonymous_exposure_then_identify_then_conversion_counts_once(app, kit):
    created = await create_experiment(app, kit.project_id, metrics=[mean_metric()])
    await capture(
        kit,
        exposure("anon-1", created.flag_key, "test", 1),
        identify("user-1", "anon-1", 2),
        plain("purchase", "user-1", 3),
        exposure("anon-2", created.flag_key, "control", 1),
    )
    body = await results_for(kit, created.id)
    assert body["exposures"] == {"control": 1, "test": 1, "$multiple": 0}
    result = by_key(body["results"][0])
    assert result["test"]["number_of_samples"] == 1 and result["test"]["sum"] == 1.0
    assert result["control"]["sum"] == 0.0


async def test_a_person_seen_in_two_variants_under_two_ids_is_multiple(app, kit):
    created = await create_experiment(app, kit.project_id, metrics=[mean_metric()])
    await capture(
        kit,
        exposure("anon-3", created.flag_key, "test", 1),
        exposure("user-3", created.flag_key, "control", 2),
        identify("user-3", "anon-3", 3),
        exposure("user-4", created.flag_key, "control", 2),
    )
    body = await results_for(kit, created.id)
    assert body["exposures"] == {"control": 1, "test": 0, "$multiple": 1}


async def test_exposure_is_the_first_flag_call_of_the_person_under_any_id(app, kit):
    """The conversion before the identified id's own flag call counts: the person was exposed earlier."""
    created = await create_experiment(app, kit.project_id, metrics=[mean_metric()])
    await capture(
        kit,
        exposure("anon-5", created.flag_key, "test", 1),
        plain("purchase", "user-5", 2),
        exposure("user-5", created.flag_key, "test", 3),
        identify("user-5", "anon-5", 4),
    )
    assert by_key((await results_for(kit, created.id))["results"][0])["test"]["sum"] == 1.0


async def test_results_after_a_late_merge_equal_a_fresh_computation(app, kit):
    mean, funnel = mean_metric(), funnel_metric()
    created = await create_experiment(app, kit.project_id, metrics=[mean, funnel])
    flag = created.flag_key
    await capture(
        kit,
        exposure("anon-6", flag, "test", 1),
        plain("view", "anon-6", 2),
        plain("purchase", "user-6", 3),
        exposure("user-6", flag, "test", 4),
        exposure("anon-7", flag, "control", 1),
        exposure("user-7", flag, "test", 5),
        plain("purchase", "user-8", 3),
    )
    before = await results_for(kit, created.id)
    assert before["exposures"] == {"control": 1, "test": 3, "$multiple": 0}

    # The merges arrive after values were stored: anon-6/user-6 become one person (exposed at 1,
    # so the purchase at 3 counts and the funnel completes), anon-7/user-7 one person in both variants.
    await capture(kit, identify("user-6", "anon-6", 6), identify("user-7", "anon-7", 6), identify("user-8", "anon-8", 6))
    after = await results_for(kit, created.id)
    assert after["exposures"] == {"control": 0, "test": 1, "$multiple": 1}
    mean_result, funnel_result = (by_key(result) for result in after["results"])
    assert mean_result["test"]["sum"] == 1.0
    assert funnel_result["test"]["step_counts"] == [1, 1]
    assert figures(after) == await fresh_figures(app, kit, created.id)


async def test_a_merge_of_two_exposed_persons_into_a_third_key_refreshes_all(app, kit):
    """`$merge_dangerously` joining two stored entities: both old rows go, one person remains."""
    created = await create_experiment(app, kit.project_id, metrics=[mean_metric()])
    flag = created.flag_key
    await capture(
        kit,
        exposure("p-1", flag, "test", 1), plain("purchase", "p-1", 2),
        exposure("p-2", flag, "test", 1), plain("purchase", "p-2", 2),
        identify("p-1", "p-1-anon", 3), identify("p-2", "p-2-anon", 3),
    )
    assert (await results_for(kit, created.id))["exposures"]["test"] == 2
    await capture(kit, plain("$merge_dangerously", "p-2", 7, alias="p-1"))
    after = await results_for(kit, created.id)
    assert after["exposures"] == {"control": 0, "test": 1, "$multiple": 0}
    assert by_key(after["results"][0])["test"]["sum"] == 2.0
    assert figures(after) == await fresh_figures(app, kit, created.id)


async def test_first_seen_keeps_the_variant_of_the_persons_first_exposure(app, kit):
    created = await create_experiment(
        app, kit.project_id, metrics=[mean_metric()], exposure_criteria={"multiple_variant_handling": "first_seen"}
    )
    flag = created.flag_key
    await capture(
        kit,
        exposure("anon-9", flag, "test", 1),
        exposure("user-9", flag, "control", 2),
        plain("purchase", "user-9", 3),
        identify("user-9", "anon-9", 4),
    )
    body = await results_for(kit, created.id)
    assert body["exposures"] == {"control": 0, "test": 1, "$multiple": 0}
    assert by_key(body["results"][0])["test"]["sum"] == 1.0


async def test_timeseries_days_count_persons(app, kit):
    """Each cumulative day counts the anonymous exposure and the identified conversion as one person."""
    from experiments_service.results.worker import run_pending_jobs

    metric = mean_metric()
    created = await create_experiment(app, kit.project_id, end=START + timedelta(days=1, hours=1), metrics=[metric])
    flag = created.flag_key
    await capture(
        kit,
        exposure("anon-10", flag, "test", 10), identify("user-10", "anon-10", 11), plain("purchase", "user-10", 12),
        exposure("anon-11", flag, "test", 24 * 60 + 10), plain("purchase", "user-11", 24 * 60 + 11),
        identify("user-11", "anon-11", 24 * 60 + 12),
    )
    queued = await kit.client.post(
        f"{kit.base}/experiments/{created.id}/recalculate_timeseries/",
        json={"metric": metric, "fingerprint": metric["fingerprint"]}, headers=kit.headers,
    )
    assert queued.status_code == 201, queued.text
    await run_pending_jobs(app.state.db)
    response = await kit.client.get(
        f"{kit.base}/experiments/{created.id}/timeseries_results/",
        params={"metric_uuid": metric["uuid"], "fingerprint": metric["fingerprint"]}, headers=kit.headers,
    )
    days = response.json()["timeseries"]
    tests = [next(item for item in days[day]["variant_results"] if item["key"] == "test") for day in sorted(days)]
    assert [(item["number_of_samples"], item["sum"]) for item in tests] == [(1, 1.0), (2, 2.0)]


async def _cohort(kit, **body) -> int:
    response = await kit.client.post(f"{kit.base}/cohorts/", json={"name": "c", **body}, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def viewed(distinct_id: str, flag: str, variant: str, minutes: float) -> dict:
    return plain("viewed_checkout", distinct_id, minutes, **{f"$feature/{flag}": variant})


async def test_exposure_filters_by_cohort_count_only_members(app, kit):
    pro = await _cohort(kit, filters={"properties": {"type": "AND", "values": [
        {"key": "plan", "type": "person", "value": ["pro"], "operator": "exact"}]}})  # fmt: skip
    listed = await _cohort(kit, is_static=True, distinct_ids=["listed-user"])
    experiments = {}
    for name, condition in (
        ("pro", {"type": "cohort", "key": "id", "value": pro}),
        ("not-pro", {"type": "cohort", "key": "id", "value": pro, "operator": "not_in"}),
        ("listed", {"type": "cohort", "key": "id", "value": listed}),
    ):
        criteria = {"exposure_config": {"kind": "ExperimentEventExposureConfig", "event": "viewed_checkout",
                                        "properties": [condition]}}  # fmt: skip
        experiments[name] = await create_experiment(app, kit.project_id, metrics=[mean_metric()], exposure_criteria=criteria)
    events = []
    for created in experiments.values():
        events += [viewed("anon-p", created.flag_key, "test", 1), viewed("free-user", created.flag_key, "test", 1),
                   viewed("anon-l", created.flag_key, "control", 1)]  # fmt: skip
    await capture(
        kit,
        plain("$set", "pro-user", 0, **{"$set": {"plan": "pro"}}), plain("$set", "free-user", 0, **{"$set": {"plan": "free"}}),
        identify("pro-user", "anon-p", 0.5), identify("listed-user", "anon-l", 0.5), *events,
    )
    exposures = {name: (await results_for(kit, created.id))["exposures"] for name, created in experiments.items()}
    assert exposures["pro"] == {"control": 0, "test": 1, "$multiple": 0}
    assert exposures["not-pro"] == {"control": 1, "test": 1, "$multiple": 0}
    assert exposures["listed"] == {"control": 1, "test": 0, "$multiple": 0}
