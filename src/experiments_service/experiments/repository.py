"""All SQL for experiments and what they link to; every query is scoped to one project."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, case, delete, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from experiments_service.models import (
    EventDefinition,
    Experiment,
    ExperimentHoldout,
    ExperimentSavedMetric,
    ExperimentTag,
    ExperimentToSavedMetric,
    FeatureFlag,
    Tag,
    User,
)

STATUS_RANK = {"draft": 0, "running": 1, "paused": 1, "stopped": 2}


@dataclass
class ExperimentListQuery:
    """Filters and ordering of the list endpoint, already validated."""

    status: str | None = None
    archived: bool = False
    created_by_ids: list[int] | None = None
    feature_flag_id: int | None = None
    search: str | None = None
    event: str | None = None
    tags: list[str] | None = None
    excluded_tags: list[str] | None = None
    # Experiments whose metrics use the `event` filter's event (None: no such filter).
    experiment_ids: set[int] | None = None
    order: str = "-created_at"
    limit: int = 100
    offset: int = 0


class ExperimentRepository:
    def __init__(self, session: AsyncSession, project_id: int):
        self.session = session
        self.project_id = project_id

    def _locked(self, query: Select) -> Select:
        """Lock the rows on PostgreSQL and re-read them (SQLite serialises writers anyway)."""
        if self.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        return query.execution_options(populate_existing=True)

    def _scoped(self) -> Select[tuple[Experiment]]:
        return select(Experiment).where(Experiment.project_id == self.project_id)

    def add(self, experiment: Experiment) -> None:
        self.session.add(experiment)

    async def get(
        self, experiment_id: int, *, include_deleted: bool = False, for_update: bool = False
    ) -> Experiment | None:
        """One experiment of this project; `for_update` takes the row lock on PostgreSQL."""
        query = self._scoped().where(Experiment.id == experiment_id)
        if not include_deleted:
            query = query.where(Experiment.deleted.is_(False))
        if for_update:
            query = self._locked(query)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def flag(self, flag_id: int, *, for_update: bool = False) -> FeatureFlag | None:
        query = select(FeatureFlag).where(FeatureFlag.project_id == self.project_id, FeatureFlag.id == flag_id)
        if for_update:
            query = self._locked(query)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def flag_of_experiment(
        self, experiment_id: int, *, include_deleted: bool = False, for_update: bool = False
    ) -> FeatureFlag | None:
        """The flag behind an experiment of this project, in one statement (locked before the experiment)."""
        flag_id = select(Experiment.feature_flag_id).where(
            Experiment.project_id == self.project_id, Experiment.id == experiment_id
        )
        if not include_deleted:
            flag_id = flag_id.where(Experiment.deleted.is_(False))
        query = select(FeatureFlag).where(FeatureFlag.id == flag_id.scalar_subquery())
        if for_update:
            query = self._locked(query)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def flags(self, flag_ids: Iterable[int]) -> dict[int, FeatureFlag]:
        return await self._by_ids(FeatureFlag, flag_ids)

    async def using_flag(self, flag_id: int, *, for_update: bool = False) -> Sequence[Experiment]:
        """Non-deleted experiments backed by this flag."""
        query = self._scoped().where(Experiment.feature_flag_id == flag_id, Experiment.deleted.is_(False))
        if for_update:
            query = self._locked(query)
        return (await self.session.execute(query.order_by(Experiment.id))).scalars().all()

    async def flags_using_holdout(self, holdout_id: int) -> Sequence[FeatureFlag]:
        """The flags of every experiment that uses this holdout, locked, in id order."""
        using = select(Experiment.feature_flag_id).where(
            Experiment.project_id == self.project_id, Experiment.holdout_id == holdout_id
        )
        query = select(FeatureFlag).where(FeatureFlag.project_id == self.project_id, FeatureFlag.id.in_(using))
        return (await self.session.execute(self._locked(query.order_by(FeatureFlag.id)))).scalars().all()

    async def holdout(self, holdout_id: int) -> ExperimentHoldout | None:
        return (await self._by_ids(ExperimentHoldout, [holdout_id])).get(holdout_id)

    async def holdouts(self, holdout_ids: Iterable[int | None]) -> dict[int, ExperimentHoldout]:
        return await self._by_ids(ExperimentHoldout, holdout_ids)

    async def users(self, user_ids: Iterable[int | None]) -> dict[int, User]:
        return await self._by_ids(User, user_ids, project_scoped=False)

    async def saved_metrics(self, saved_metric_ids: Iterable[int]) -> dict[int, ExperimentSavedMetric]:
        return await self._by_ids(ExperimentSavedMetric, saved_metric_ids)

    async def _by_ids(self, model: type, ids: Iterable[int | None], *, project_scoped: bool = True) -> dict[int, Any]:
        """Rows by primary key; rows this request already loaded come from the session, not the database."""
        wanted = {row_id for row_id in ids if row_id is not None}
        identity_map = self.session.sync_session.identity_map
        found = {}
        for row_id in wanted:
            row = identity_map.get(identity_key(model, row_id))
            if row is not None and (not project_scoped or row.project_id == self.project_id):
                found[row_id] = row
        missing = wanted - found.keys()
        if missing:
            query = select(model).where(model.id.in_(missing))
            if project_scoped:
                query = query.where(model.project_id == self.project_id)
            found.update({row.id: row for row in (await self.session.execute(query)).scalars()})
        return found

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
        if params.experiment_ids is not None:
            query = query.where(Experiment.id.in_(params.experiment_ids))
        if params.tags:
            query = query.where(Experiment.id.in_(self._tagged_with(params.tags)))
        if params.excluded_tags:
            query = query.where(Experiment.id.not_in(self._tagged_with(params.excluded_tags)))
        count = (await self.session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
        descending = params.order.startswith("-")
        expression = self._order_expression(params.order.lstrip("-"))
        ordered = expression.desc() if descending else expression.asc()
        tiebreak = Experiment.id.desc() if descending else Experiment.id.asc()
        query = query.order_by(ordered.nulls_last(), tiebreak).limit(params.limit).offset(params.offset)
        return count, (await self.session.execute(query)).scalars().all()

    def _tagged_with(self, names: list[str]) -> Select:
        return (
            select(ExperimentTag.experiment_id)
            .join(Tag, Tag.id == ExperimentTag.tag_id)
            .where(Tag.project_id == self.project_id, Tag.name.in_(names))
        )

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
