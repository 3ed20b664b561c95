"""All SQL for experiments and what they link to; every query is scoped to one project."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, case, delete, func, literal, select

from experiments_service.models import (
    EventDefinition,
    Experiment,
    ExperimentHoldout,
    ExperimentSavedMetric,
    ExperimentStatus,
    ExperimentToSavedMetric,
    User,
)
from experiments_service.repository import ProjectRepository

STATUS_RANK = {ExperimentStatus.DRAFT: 0, ExperimentStatus.RUNNING: 1, ExperimentStatus.PAUSED: 1, ExperimentStatus.STOPPED: 2}


@dataclass
class ExperimentListQuery:
    """Filters and ordering of the list endpoint, already validated."""

    status: str | None = None
    archived: bool = False
    created_by_ids: list[int] | None = None
    feature_flag_id: int | None = None
    search: str | None = None
    order: str = "-created_at"
    limit: int = 100
    offset: int = 0


class ExperimentRepository(ProjectRepository):
    def _scoped(self) -> Select[tuple[Experiment]]:
        return self.scoped(Experiment)

    async def get(
        self, experiment_id: int, *, include_deleted: bool = False, for_update: bool = False
    ) -> Experiment | None:
        """One experiment of this project; `for_update` takes the row lock on PostgreSQL."""
        query = self._scoped().where(Experiment.id == experiment_id)
        if not include_deleted:
            query = query.where(Experiment.deleted.is_(False))
        return await self.one(query, for_update=for_update)

    async def using_flag(self, flag_id: int, *, for_update: bool = False) -> Sequence[Experiment]:
        """Non-deleted experiments backed by this flag."""
        query = self._scoped().where(Experiment.feature_flag_id == flag_id, Experiment.deleted.is_(False))
        if for_update:
            query = self.locked(query)
        return (await self.session.execute(query.order_by(Experiment.id))).scalars().all()

    async def holdout(self, holdout_id: int) -> ExperimentHoldout | None:
        return (await self.by_ids(ExperimentHoldout, [holdout_id])).get(holdout_id)

    async def holdouts(self, holdout_ids: Iterable[int | None]) -> dict[int, ExperimentHoldout]:
        return await self.by_ids(ExperimentHoldout, holdout_ids)

    async def users(self, user_ids: Iterable[int | None]) -> dict[int, User]:
        return await self.by_ids(User, user_ids, project_scoped=False)

    async def saved_metrics(self, saved_metric_ids: Iterable[int]) -> dict[int, ExperimentSavedMetric]:
        return await self.by_ids(ExperimentSavedMetric, saved_metric_ids)

    def newest_first(self, model: type) -> Select:
        """A project's holdouts or saved metrics, newest first (their list endpoints)."""
        return self.scoped(model).order_by(model.created_at.desc(), model.id.desc())

    async def project_object(self, model: type, object_id: int) -> Any:
        """One holdout or saved metric of this project (None when another project's or missing)."""
        return await self.one(self.scoped(model).where(model.id == object_id))

    async def delete(self, row: Any) -> None:
        await self.session.delete(row)

    async def saved_metric_links(
        self, experiment_ids: Iterable[int]
    ) -> dict[int, list[tuple[ExperimentToSavedMetric, ExperimentSavedMetric]]]:
        """Linked saved metrics per experiment, in link order."""
        ids = set(experiment_ids)
        links: dict[int, list[tuple[ExperimentToSavedMetric, ExperimentSavedMetric]]] = {i: [] for i in ids}
        if not ids:
            return links
        query = (
            select(ExperimentToSavedMetric, ExperimentSavedMetric)
            .join(ExperimentSavedMetric, ExperimentSavedMetric.id == ExperimentToSavedMetric.saved_metric_id)
            .where(ExperimentToSavedMetric.experiment_id.in_(ids))
            .order_by(ExperimentToSavedMetric.id)
        )
        for link, metric in (await self.session.execute(query)).all():
            links[link.experiment_id].append((link, metric))
        return links

    async def replace_saved_metric_links(
        self, experiment_id: int, wanted: list[tuple[int, dict[str, Any] | None]]
    ) -> None:
        """Make the links exactly `wanted` (saved metric id, metadata): drop others, update in place."""
        current = {
            link.saved_metric_id: link
            for link in (
                await self.session.execute(
                    select(ExperimentToSavedMetric).where(ExperimentToSavedMetric.experiment_id == experiment_id)
                )
            ).scalars()
        }
        wanted_ids = {saved_metric_id for saved_metric_id, _ in wanted}
        stale = [saved_metric_id for saved_metric_id in current if saved_metric_id not in wanted_ids]
        if stale:
            await self.session.execute(
                delete(ExperimentToSavedMetric).where(
                    ExperimentToSavedMetric.experiment_id == experiment_id,
                    ExperimentToSavedMetric.saved_metric_id.in_(stale),
                )
            )
            for saved_metric_id in stale:
                self.session.expunge(current.pop(saved_metric_id))
        for saved_metric_id, metadata in wanted:
            link = current.get(saved_metric_id)
            if link is None:
                self.session.add(
                    ExperimentToSavedMetric(
                        experiment_id=experiment_id, saved_metric_id=saved_metric_id, metadata_=metadata
                    )
                )
            elif link.metadata_ != metadata:
                link.metadata_ = metadata
        await self.session.flush()

    async def known_event_names(self, names: Iterable[str]) -> set[str]:
        """The subset of `names` this project has ever ingested (its event definitions)."""
        wanted = set(names)
        if not wanted:
            return set()
        query = select(EventDefinition.name).where(
            EventDefinition.project_id == self.project_id, EventDefinition.name.in_(wanted)
        )
        return set((await self.session.execute(query)).scalars())

    async def page(self, params: ExperimentListQuery) -> tuple[int, Sequence[Experiment]]:
        """Count and one page of the list endpoint."""
        query = self._scoped().where(Experiment.deleted.is_(False), Experiment.archived.is_(params.archived))
        if params.status is not None:
            query = query.where(Experiment.status == params.status)
        if params.created_by_ids:
            query = query.where(Experiment.created_by_id.in_(params.created_by_ids))
        if params.feature_flag_id is not None:
            query = query.where(Experiment.feature_flag_id == params.feature_flag_id)
        if params.search:
            query = query.where(func.lower(Experiment.name).contains(params.search.lower(), autoescape=True))
        count = (await self.session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
        descending = params.order.startswith("-")
        expression = self._order_expression(params.order.lstrip("-"))
        ordered = expression.desc() if descending else expression.asc()
        tiebreak = Experiment.id.desc() if descending else Experiment.id.asc()
        query = query.order_by(ordered.nulls_last(), tiebreak).limit(params.limit).offset(params.offset)
        return count, (await self.session.execute(query)).scalars().all()

    def _order_expression(self, field: str):
        if field == "status":
            return case(*((Experiment.status == status, rank) for status, rank in STATUS_RANK.items()), else_=literal(0))
        if field == "duration":
            return self._duration_expression()
        if field == "created_by":
            return Experiment.created_by_id
        return getattr(Experiment, field)

    def _duration_expression(self):
        """end − start (or now − start while it runs); null for drafts."""
        if self.session.get_bind().dialect.name == "sqlite":
            finished = func.coalesce(func.julianday(Experiment.end_date), func.julianday("now"))
            return finished - func.julianday(Experiment.start_date)
        finished = func.coalesce(Experiment.end_date, func.now())
        return func.extract("epoch", finished - Experiment.start_date)
