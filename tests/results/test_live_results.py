"""Live results keep per-entity values stored and refresh only what changed: every refresh must
give exactly what a computation from the events alone gives."""

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, insert, select, update

from experiments_service.models import Event, Experiment, ResultsEntityValue, ResultsMaterialization
from tests.results.helpers import (
    START,
    by_key,
    create_experiment,
    event,
    flag_called,
    insert_events,
    mean_metric,
    minutes,
    results_for,
)


def funnel_metric() -> dict:
    return {
        "kind": "ExperimentMetric", "metric_type": "funnel", "uuid": str(uuid.uuid4()),
        "series": [{"kind": "EventsNode", "event": "view"}, {"kind": "EventsNode", "event": "purchase"}],
    }


def ratio_metric() -> dict:
    return {
        "kind": "ExperimentMetric", "metric_type": "ratio", "uuid": str(uuid.uuid4()),
        "numerator": {"kind": "EventsNode", "event": "purchase", "math": "sum", "math_property": "amount"},
        "denominator": {"kind": "EventsNode", "event": "view"},
    }


def figures(body: dict) -> dict:
    """Everything a results body says about the data (not when it was computed)."""
    return {"exposures": body["exposures"], "srm": body["srm"], "results": body["results"]}


async def forget_stored_values(app, experiment_id: int) -> None:
    async with app.state.db.transaction() as session:
        await session.execute(delete(ResultsMaterialization).where(ResultsMaterialization.experiment_id == experiment_id))


async def stored_entities(app, experiment_id: int) -> dict[str, dict[str, str]]:
    """Slot → {distinct_id: variant} of the stored per-entity values."""
    async with app.state.db.transaction() as session:
        rows = await session.execute(
            select(ResultsMaterialization.slot, ResultsEntityValue.distinct_id, ResultsEntityValue.variant)
            .join(ResultsEntityValue, ResultsEntityValue.materialization_id == ResultsMaterialization.id)
            .where(ResultsMaterialization.experiment_id == experiment_id)
        )
        stored: dict[str, dict[str, str]] = {}
        for slot, distinct_id, variant in rows:
            stored.setdefault(slot, {})[distinct_id] = variant
        return stored


async def test_refreshed_values_equal_a_computation_from_the_events_alone(app, kit):
    mean, funnel, ratio = mean_metric(), funnel_metric(), ratio_metric()
    created = await create_experiment(app, kit.project_id, metrics=[mean, funnel], metrics_secondary=[ratio])
    flag = created.flag_key
    await insert_events(app, kit.project_id, [
        flag_called("a", flag, "control", START + minutes(10)),
        flag_called("b", flag, "test", START + minutes(10)),
        flag_called("c", flag, "test", START + minutes(10)),
        event("view", "a", START + minutes(11)),
        event("purchase", "a", START + minutes(12), {"amount": 5}),
        event("purchase", "a", START + minutes(5), {"amount": 7}),  # before a's exposure (for now)
        event("view", "b", START + minutes(11)),
    ])
    first = await results_for(kit, created.id)
    assert first["exposures"] == {"control": 1, "test": 2, "$multiple": 0}
    assert by_key(first["results"][0])["control"]["sum"] == 1.0

    await insert_events(app, kit.project_id, [
        flag_called("a", flag, "control", START + minutes(1)),  # a was exposed earlier: 7 now counts
        flag_called("c", flag, "control", START + minutes(20)),  # c saw both variants: $multiple
        flag_called("d", flag, "control", START + minutes(30)),  # a new person
        event("purchase", "b", START + minutes(31), {"amount": 11}),  # b completes the funnel
        event("purchase", "d", START + minutes(31), {"amount": 2}),
        event("purchase", "stranger", START + minutes(31), {"amount": 99}),  # never exposed
        event("signup", "d", START + minutes(31)),  # irrelevant to every metric
    ])
    refreshed = await results_for(kit, created.id)

    assert refreshed["exposures"] == {"control": 2, "test": 1, "$multiple": 1}
    mean_result, funnel_result, ratio_result = (by_key(result) for result in refreshed["results"])
    assert [mean_result[key]["sum"] for key in ("control", "test")] == [3.0, 1.0]
    assert mean_result["control"]["sum_squares"] == 5.0  # a bought twice, d once
    assert funnel_result["test"]["step_counts"] == [1, 1]
    assert funnel_result["control"]["step_counts"] == [1, 1]
    assert ratio_result["control"]["sum"] == 14.0 and ratio_result["control"]["denominator_sum"] == 1.0
    stored = await stored_entities(app, created.id)
    assert stored == {
        f"inline:{metric['uuid']}": {"a": "control", "b": "test", "c": "$multiple", "d": "control"}
        for metric in (mean, funnel, ratio)
    }

    await forget_stored_values(app, created.id)
    assert figures(await results_for(kit, created.id)) == figures(refreshed)


async def test_moving_the_end_date_later_and_back_recounts_the_window(app, kit):
    end = START + timedelta(days=1)
    created = await create_experiment(app, kit.project_id, end=end, metrics=[mean_metric()])
    await insert_events(app, kit.project_id, [
        flag_called("a", created.flag_key, "control", START + minutes(1)),
        flag_called("late", created.flag_key, "test", end + minutes(30)),
        event("purchase", "a", end + minutes(10)),
    ])

    async def results_until(moment):
        async with app.state.db.transaction() as session:
            await session.execute(update(Experiment).where(Experiment.id == created.id).values(end_date=moment))
        body = await results_for(kit, created.id)
        return body["exposures"], by_key(body["results"][0])["control"]["sum"]

    assert await results_until(end) == ({"control": 1, "test": 0, "$multiple": 0}, 0.0)
    assert await results_until(end + timedelta(hours=1)) == ({"control": 1, "test": 1, "$multiple": 0}, 1.0)
    assert await results_until(end + minutes(20)) == ({"control": 1, "test": 0, "$multiple": 0}, 1.0)


async def test_a_changed_metric_definition_is_computed_afresh(app, kit):
    metric = mean_metric("purchase")
    created = await create_experiment(app, kit.project_id, metrics=[metric])
    await insert_events(app, kit.project_id, [
        flag_called("a", created.flag_key, "control", START + minutes(1)),
        event("purchase", "a", START + minutes(2)),
        event("refund", "a", START + minutes(3)),
        event("refund", "a", START + minutes(4)),
    ])
    assert by_key((await results_for(kit, created.id))["results"][0])["control"]["sum"] == 1.0

    async with app.state.db.transaction() as session:
        changed = {**metric, "source": {"kind": "EventsNode", "event": "refund"}}
        await session.execute(update(Experiment).where(Experiment.id == created.id).values(metrics=[changed]))

    assert by_key((await results_for(kit, created.id))["results"][0])["control"]["sum"] == 2.0


async def test_values_of_removed_metrics_are_dropped(app, kit):
    kept, removed = mean_metric(), mean_metric("refund")
    created = await create_experiment(app, kit.project_id, metrics=[kept, removed])
    await insert_events(app, kit.project_id, [flag_called("a", created.flag_key, "control", START + minutes(1))])
    await results_for(kit, created.id)
    assert set(await stored_entities(app, created.id)) == {f"inline:{kept['uuid']}", f"inline:{removed['uuid']}"}

    async with app.state.db.transaction() as session:
        removed_id = (await session.execute(
            select(ResultsMaterialization.id).where(ResultsMaterialization.slot == f"inline:{removed['uuid']}")
        )).scalar_one()
        await session.execute(update(Experiment).where(Experiment.id == created.id).values(metrics=[kept]))
    await results_for(kit, created.id)

    assert set(await stored_entities(app, created.id)) == {f"inline:{kept['uuid']}"}
    async with app.state.db.transaction() as session:
        leftover = select(func.count()).where(ResultsEntityValue.materialization_id == removed_id)
        assert (await session.execute(leftover)).scalar_one() == 0


async def test_concurrent_refreshes_agree_and_store_each_entity_once(app, kit):
    metric = mean_metric()
    created = await create_experiment(app, kit.project_id, metrics=[metric])
    await insert_events(app, kit.project_id, [flag_called("a", created.flag_key, "control", START + minutes(1))])
    await results_for(kit, created.id)
    await insert_events(app, kit.project_id, [
        *(flag_called(f"user-{index}", created.flag_key, ("control", "test")[index % 2], START + minutes(2))
          for index in range(40)),
        *(event("purchase", f"user-{index}", START + minutes(3)) for index in range(0, 40, 3)),
    ])

    bodies = await asyncio.gather(*(results_for(kit, created.id) for _ in range(4)))

    assert all(figures(body) == figures(bodies[0]) for body in bodies)
    assert bodies[0]["exposures"] == {"control": 21, "test": 20, "$multiple": 0}
    assert len((await stored_entities(app, created.id))[f"inline:{metric['uuid']}"]) == 41


async def test_an_event_committed_after_a_newer_one_is_still_counted(app, kit, db_name):
    """PostgreSQL hands out ids before commit: an event with a lower id can commit after the
    values were refreshed past a higher id, and must still be folded in next time."""
    if db_name != "postgresql":
        pytest.skip("SQLite has one writer at a time, so ids follow commits")
    created = await create_experiment(app, kit.project_id, metrics=[mean_metric()])
    await insert_events(app, kit.project_id, [flag_called("a", created.flag_key, "control", START + minutes(1))])
    await results_for(kit, created.id)

    async with app.state.db.engine.connect() as slow_writer:
        await slow_writer.begin()
        slow = flag_called("slow", created.flag_key, "test", START + minutes(2))
        slow_id = (await slow_writer.execute(
            insert(Event).returning(Event.id),
            [{"project_id": kit.project_id, "uuid": uuid.uuid4(), "event": slow["event"], "distinct_id": "slow",
              "timestamp": slow["timestamp"], "properties": slow["properties"], "flag_key": created.flag_key,
              "flag_response": "test"}],
        )).scalar_one()
        await insert_events(app, kit.project_id, [flag_called("quick", created.flag_key, "test", START + minutes(3))])
        assert (await results_for(kit, created.id))["exposures"]["test"] == 1  # slow is not committed yet
        await slow_writer.commit()

    async with app.state.db.transaction() as session:
        quick_id = (await session.execute(select(func.max(Event.id)).where(Event.distinct_id == "quick"))).scalar_one()
    assert slow_id < quick_id
    assert (await results_for(kit, created.id))["exposures"]["test"] == 2
