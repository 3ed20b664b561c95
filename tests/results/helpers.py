"""Factories for results tests: experiments and events written straight to the database.

`create_experiment` here stores a started (or ended) experiment as rows, dated in the past, which
the API cannot do; `tests.factories.create_experiment` is the API one.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from experiments_service.models import Event, Experiment, ExperimentHoldout, FeatureFlag

START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def flag_called(distinct_id: str, flag_key: str, variant: str, at: datetime) -> dict[str, Any]:
    return event("$feature_flag_called", distinct_id, at, {"$feature_flag": flag_key, "$feature_flag_response": variant})


def event(name: str, distinct_id: str, at: datetime, properties: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"event": name, "distinct_id": distinct_id, "timestamp": at, "properties": properties or {}}


async def insert_events(app, project_id: int, rows: list[dict[str, Any]]) -> None:
    """Store events as capture does: flag key and response extracted from `$feature_flag_called`."""
    values = []
    for row in rows:
        properties = row["properties"]
        is_flag_call = row["event"] == "$feature_flag_called"
        values.append({
            "project_id": project_id,
            "uuid": uuid.uuid4(),
            "event": row["event"],
            "distinct_id": row["distinct_id"],
            "timestamp": row["timestamp"],
            "properties": properties,
            "flag_key": properties.get("$feature_flag") if is_flag_call else None,
            "flag_response": str(properties.get("$feature_flag_response")) if is_flag_call else None,
        })
    async with app.state.db.transaction() as session:
        for offset in range(0, len(values), 2000):
            await session.execute(insert(Event), values[offset : offset + 2000])


@dataclass(frozen=True)
class CreatedExperiment:
    id: int
    flag_key: str
    holdout_id: int | None


async def create_experiment(
    app,
    project_id: int,
    *,
    variants: tuple[tuple[str, int], ...] = (("control", 50), ("test", 50)),
    start: datetime | None = START,
    end: datetime | None = None,
    metrics: list[dict[str, Any]] | None = None,
    metrics_secondary: list[dict[str, Any]] | None = None,
    stats_config: dict[str, Any] | None = None,
    exposure_criteria: dict[str, Any] | None = None,
    with_holdout: bool = False,
) -> CreatedExperiment:
    key = f"exp-{uuid.uuid4().hex[:8]}"
    async with app.state.db.transaction() as session:
        flag = FeatureFlag(
            project_id=project_id,
            key=key,
            name=key,
            filters={
                "groups": [{"properties": [], "rollout_percentage": 100}],
                "multivariate": {"variants": [{"key": k, "rollout_percentage": p} for k, p in variants]},
            },
        )
        session.add(flag)
        holdout = None
        if with_holdout:
            holdout = ExperimentHoldout(project_id=project_id, name="holdout", filters=[])
            session.add(holdout)
        await session.flush()
        experiment = Experiment(
            project_id=project_id,
            name=key,
            feature_flag_id=flag.id,
            holdout_id=holdout.id if holdout else None,
            start_date=start,
            end_date=end,
            status="draft" if start is None else ("stopped" if end else "running"),
            metrics=metrics or [],
            metrics_secondary=metrics_secondary or [],
            stats_config=stats_config or {"method": "bayesian"},
            exposure_criteria=exposure_criteria or {},
        )
        session.add(experiment)
        await session.flush()
    return CreatedExperiment(id=experiment.id, flag_key=key, holdout_id=experiment.holdout_id)


def mean_metric(event_name: str = "purchase", **source: Any) -> dict[str, Any]:
    return {
        "kind": "ExperimentMetric",
        "metric_type": "mean",
        "uuid": str(uuid.uuid4()),
        "fingerprint": uuid.uuid4().hex * 2,
        "source": {"kind": "EventsNode", "event": event_name, **source},
    }


async def results_for(kit, experiment_id: int, **params: Any) -> dict[str, Any]:
    """The body of a successful `GET .../results/`."""
    response = await kit.client.get(f"{kit.base}/experiments/{experiment_id}/results/", params=params, headers=kit.headers)
    assert response.status_code == 200, response.text
    return response.json()


def by_key(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A metric result's baseline and variants by variant key."""
    return {item["key"]: item for item in [result["baseline"], *result["variant_results"]]}


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
