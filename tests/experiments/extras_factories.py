"""Plain async factories for the holdout, saved-metric, eligible-flag and auth tests."""

from typing import Any

from experiments_service.flags.service import FlagService
from experiments_service.models import Experiment, FeatureFlag, User

CONTROL_TEST = [("control", 50), ("test", 50)]


def variant_filters(variants: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    filters: dict[str, Any] = {"groups": [{"properties": [], "rollout_percentage": 100}]}
    if variants is not None:
        filters["multivariate"] = {"variants": [{"key": key, "rollout_percentage": pct} for key, pct in variants]}
    return filters


async def make_flag(
    app,
    project_id: int,
    user_id: int,
    key: str,
    *,
    variants: list[tuple[str, float]] | None = CONTROL_TEST,
    name: str = "",
    active: bool = True,
    deleted: bool = False,
    evaluation_runtime: str = "all",
    evaluation_tags: list[str] | None = None,
) -> FeatureFlag:
    """A flag written through the flag service, as the flags API would."""
    async with app.state.db.transaction() as session:
        actor = await session.get(User, user_id)
        service = FlagService(session, project_id, actor)
        flag = await service.create_flag(
            key=key,
            name=name,
            filters=variant_filters(variants),
            active=active,
            evaluation_runtime=evaluation_runtime,
            evaluation_tags=evaluation_tags,
        )
        if deleted:
            await service.update_flag(flag, {"deleted": True})
        return flag


async def make_flags(app, project_id: int, user_id: int, keys: list[str]) -> None:
    """Many control/test flags in one transaction (paging tests)."""
    async with app.state.db.transaction() as session:
        service = FlagService(session, project_id, await session.get(User, user_id))
        for key in keys:
            await service.create_flag(key=key, filters=variant_filters(CONTROL_TEST))


async def make_experiment(
    app, project_id: int, flag_id: int, *, name: str = "experiment", holdout_id: int | None = None, deleted: bool = False
) -> Experiment:
    """A draft experiment row backed by `flag_id` (the experiments API is exercised elsewhere)."""
    async with app.state.db.transaction() as session:
        experiment = Experiment(
            project_id=project_id, name=name, feature_flag_id=flag_id, holdout_id=holdout_id, deleted=deleted
        )
        session.add(experiment)
        await session.flush()
        return experiment


async def load(app, model, object_id: int):
    async with app.state.db.sessionmaker() as session:
        return await session.get(model, object_id)
