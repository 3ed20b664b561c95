"""SQL behind the experiment side endpoints: copies, velocity stats, per-experiment activity, tags.

Every query is scoped to one project, like the main experiments repository.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import (
    ActivityLog,
    Experiment,
    ExperimentSavedMetric,
    ExperimentTag,
    ExperimentToSavedMetric,
    Tag,
)
from experiments_service.pagination import PageRequest, fetch_page

# `detail.type` of the holdout and saved-metric entries logged under the `Experiment` scope.
HOLDOUT_ACTIVITY = "holdout"
SAVED_METRIC_ACTIVITIES = ("saved_metric", "shared_metric")


class AuxiliaryRepository:
    def __init__(self, session: AsyncSession, project_id: int):
        self.session = session
        self.project_id = project_id

    # --- names ------------------------------------------------------------------------------

    async def experiment_names_like(self, prefix: str) -> set[str]:
        """Names of live experiments that start with `prefix` (to find a free copy name)."""
        query = select(Experiment.name).where(
            Experiment.project_id == self.project_id,
            Experiment.deleted.is_(False),
            Experiment.name.startswith(prefix, autoescape=True),
        )
        return set((await self.session.execute(query)).scalars())

    async def saved_metric_name_taken(self, name: str, *, excluding_id: int | None = None) -> bool:
        query = select(ExperimentSavedMetric.id).where(
            ExperimentSavedMetric.project_id == self.project_id, ExperimentSavedMetric.name == name
        )
        if excluding_id is not None:
            query = query.where(ExperimentSavedMetric.id != excluding_id)
        return (await self.session.execute(query.limit(1))).first() is not None

    # --- velocity stats ---------------------------------------------------------------------

    def _counted(self):
        return select(func.count(Experiment.id)).where(
            Experiment.project_id == self.project_id, Experiment.deleted.is_(False), Experiment.archived.is_(False)
        )

    async def count_started_between(self, start: datetime, end: datetime) -> int:
        query = self._counted().where(Experiment.start_date >= start, Experiment.start_date < end)
        return int((await self.session.execute(query)).scalar_one())

    async def count_ended_between(self, start: datetime, end: datetime) -> int:
        query = self._counted().where(Experiment.end_date >= start, Experiment.end_date < end)
        return int((await self.session.execute(query)).scalar_one())

    async def count_active(self) -> int:
        query = self._counted().where(Experiment.start_date.is_not(None), Experiment.end_date.is_(None))
        return int((await self.session.execute(query)).scalar_one())

    # --- activity ---------------------------------------------------------------------------

    async def experiment_activity(
        self,
        page: PageRequest,
        *,
        experiment_id: int,
        flag_id: int,
        holdout_id: int | None,
        saved_metric_ids: Sequence[int],
    ) -> tuple[list[ActivityLog], int]:
        """One experiment's own entries, its flag's, and those of its holdout and saved metrics, newest first.

        Holdouts and saved metrics log under the `Experiment` scope with their own ids, so each
        clause also matches `detail.type`: an id shared by two kinds of object never leaks in.
        """
        kind = ActivityLog.detail["type"].as_string()
        own = and_(
            ActivityLog.scope == "Experiment",
            ActivityLog.item_id == str(experiment_id),
            or_(kind.is_(None), kind.not_in([HOLDOUT_ACTIVITY, *SAVED_METRIC_ACTIVITIES])),
        )
        clauses = [own, and_(ActivityLog.scope == "FeatureFlag", ActivityLog.item_id == str(flag_id))]
        if holdout_id is not None:
            clauses.append(
                and_(ActivityLog.scope == "Experiment", ActivityLog.item_id == str(holdout_id), kind == HOLDOUT_ACTIVITY)
            )
        if saved_metric_ids:
            clauses.append(
                and_(
                    ActivityLog.scope == "Experiment",
                    ActivityLog.item_id.in_([str(i) for i in saved_metric_ids]),
                    kind.in_(SAVED_METRIC_ACTIVITIES),
                )
            )
        query = (
            select(ActivityLog)
            .where(ActivityLog.project_id == self.project_id, or_(*clauses))
            .order_by(ActivityLog.created_at.desc(), ActivityLog.id)
        )
        return await fetch_page(self.session, query, page)

    async def saved_metric_ids_of(self, experiment_id: int) -> list[int]:
        query = select(ExperimentToSavedMetric.saved_metric_id).where(
            ExperimentToSavedMetric.experiment_id == experiment_id
        )
        return list((await self.session.execute(query)).scalars())

    # --- tags -------------------------------------------------------------------------------

    async def tags_of(self, experiment_ids: Iterable[int]) -> dict[int, list[str]]:
        """Tag names per experiment, alphabetical."""
        ids = set(experiment_ids)
        found: dict[int, list[str]] = {i: [] for i in ids}
        if not ids:
            return found
        query = (
            select(ExperimentTag.experiment_id, Tag.name)
            .join(Tag, Tag.id == ExperimentTag.tag_id)
            .where(ExperimentTag.experiment_id.in_(ids))
            .order_by(Tag.name)
        )
        for experiment_id, name in (await self.session.execute(query)).all():
            found[experiment_id].append(name)
        return found

    async def ensure_tags(self, names: Iterable[str]) -> dict[str, Tag]:
        """The project's tags with these names, created where missing."""
        wanted = set(names)
        if not wanted:
            return {}
        query = select(Tag).where(Tag.project_id == self.project_id, Tag.name.in_(wanted))
        tags = {tag.name: tag for tag in (await self.session.execute(query)).scalars()}
        for name in sorted(wanted - tags.keys()):
            tag = Tag(project_id=self.project_id, name=name)
            self.session.add(tag)
            tags[name] = tag
        await self.session.flush()
        return tags

    async def replace_tags(self, experiment_id: int, names: list[str]) -> None:
        """Make the experiment's tags exactly `names`."""
        tags = await self.ensure_tags(names)
        await self.session.execute(delete(ExperimentTag).where(ExperimentTag.experiment_id == experiment_id))
        for name in names:
            self.session.add(ExperimentTag(experiment_id=experiment_id, tag_id=tags[name].id))
        await self.session.flush()

    async def live_experiment_ids(self, ids: Iterable[int]) -> set[int]:
        wanted = set(ids)
        if not wanted:
            return set()
        query = select(Experiment.id).where(
            Experiment.project_id == self.project_id, Experiment.deleted.is_(False), Experiment.id.in_(wanted)
        )
        return set((await self.session.execute(query)).scalars())

    # --- metric events ----------------------------------------------------------------------

    async def metric_definitions(self) -> list[tuple[int, list[Any], list[Any]]]:
        """(id, metrics, secondary metrics) of every live experiment (to match a metric event)."""
        query = select(Experiment.id, Experiment.metrics, Experiment.metrics_secondary).where(
            Experiment.project_id == self.project_id, Experiment.deleted.is_(False)
        )
        return [(row[0], row[1] or [], row[2] or []) for row in (await self.session.execute(query)).all()]

    async def saved_metric_queries(self) -> list[tuple[int, dict[str, Any]]]:
        """(experiment id, saved query) of every saved-metric link in the project."""
        query = (
            select(ExperimentToSavedMetric.experiment_id, ExperimentSavedMetric.query)
            .join(ExperimentSavedMetric, ExperimentSavedMetric.id == ExperimentToSavedMetric.saved_metric_id)
            .where(ExperimentSavedMetric.project_id == self.project_id)
        )
        return [(row[0], row[1] or {}) for row in (await self.session.execute(query)).all()]
