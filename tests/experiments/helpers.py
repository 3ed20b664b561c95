"""Helpers for experiment tests: HTTP actions for the API under test, direct rows and reads around it."""

from typing import Any

from sqlalchemy import select

from experiments_service.models import (
    ActivityLog,
    EventDefinition,
    Experiment,
    ExperimentHoldout,
    ExperimentSavedMetric,
    FeatureFlag,
)


async def action(kit, experiment_id: int, name: str, expected_status: int = 200, **body: Any) -> dict[str, Any]:
    response = await kit.client.post(
        f"{kit.base}/experiments/{experiment_id}/{name}/", json=body, headers=kit.headers
    )
    assert response.status_code == expected_status, response.text
    return response.json()


async def patch(kit, experiment_id: int, expected_status: int = 200, **body: Any) -> dict[str, Any]:
    response = await kit.client.patch(f"{kit.base}/experiments/{experiment_id}/", json=body, headers=kit.headers)
    assert response.status_code == expected_status, response.text
    return response.json()


def error(detail: str, *, code: str = "invalid_input", attr: str | None = None) -> dict[str, Any]:
    return {"type": "validation_error", "code": code, "detail": detail, "attr": attr}


async def stored_experiment(app, experiment_id: int) -> Experiment | None:
    async with app.state.db.sessionmaker() as session:
        return await session.get(Experiment, experiment_id)


async def stored_flag(app, flag_id: int) -> FeatureFlag | None:
    async with app.state.db.sessionmaker() as session:
        return await session.get(FeatureFlag, flag_id)


async def flags_with_key(app, project_id: int, key: str) -> list[FeatureFlag]:
    async with app.state.db.sessionmaker() as session:
        query = select(FeatureFlag).where(FeatureFlag.project_id == project_id, FeatureFlag.key == key)
        return list((await session.execute(query)).scalars())


async def experiments_named(app, project_id: int, name: str) -> list[Experiment]:
    async with app.state.db.sessionmaker() as session:
        query = select(Experiment).where(Experiment.project_id == project_id, Experiment.name == name)
        return list((await session.execute(query)).scalars())


async def activities(app, project_id: int, item_id: int) -> list[ActivityLog]:
    async with app.state.db.sessionmaker() as session:
        query = (
            select(ActivityLog)
            .where(ActivityLog.project_id == project_id, ActivityLog.scope == "Experiment",
                   ActivityLog.item_id == str(item_id))
            .order_by(ActivityLog.created_at)
        )
        return list((await session.execute(query)).scalars())


async def make_event_definition(kit, *names: str) -> None:
    async with kit.app.state.db.transaction() as session:
        for name in names:
            session.add(EventDefinition(project_id=kit.project_id, name=name))


async def make_holdout(kit, rollout_percentage: int, project_id: int | None = None) -> int:
    async with kit.app.state.db.transaction() as session:
        holdout = ExperimentHoldout(
            project_id=project_id or kit.project_id,
            name="Holdout",
            filters=[{"properties": [], "rollout_percentage": rollout_percentage}],
        )
        session.add(holdout)
        await session.flush()
        holdout.filters = [{"properties": [], "rollout_percentage": rollout_percentage, "variant": f"holdout-{holdout.id}"}]
        return holdout.id


async def make_saved_metric(kit, query: dict[str, Any], project_id: int | None = None) -> int:
    async with kit.app.state.db.transaction() as session:
        metric = ExperimentSavedMetric(project_id=project_id or kit.project_id, name="Saved", query=query)
        session.add(metric)
        await session.flush()
        return metric.id


def mean_metric(event: str = "purchase", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "ExperimentMetric",
        "metric_type": "mean",
        "source": {"kind": "EventsNode", "event": event},
        **extra,
    }
