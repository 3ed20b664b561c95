"""All SQL of the results domain: exposures, per-entity metric values and per-variant aggregates,
stored daily results and the recalculation job queue.

Aggregation runs in the database (per entity, then per variant) through SQLAlchemy Core, one code
path for SQLite and PostgreSQL; only a handful of per-variant rows come back to Python.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    CTE,
    Float,
    String,
    and_,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from experiments_service.models import (
    Event,
    ExperimentMetricResult,
    ExperimentTimeseriesRecalculation,
    Project,
)
from experiments_service.models.base import UTCDateTime, utcnow
from experiments_service.results.statistics import VariantAggregate

FLAG_CALLED_EVENT = "$feature_flag_called"
MULTIPLE_VARIANTS = "$multiple"
ACTIVE_RECALCULATION_STATUSES = ("pending", "in_progress")

events = Event.__table__


class _PlusSeconds(FunctionElement):
    """`timestamp + N seconds`, exact to the microsecond on both databases."""

    type = UTCDateTime()
    inherit_cache = True
    name = "plus_seconds"


@compiles(_PlusSeconds)
def _plus_seconds_postgresql(element, compiler, **kw):
    timestamp, seconds = list(element.clauses)
    return f"({compiler.process(timestamp, **kw)} + make_interval(secs => {compiler.process(seconds, **kw)}))"


@compiles(_PlusSeconds, "sqlite")
def _plus_seconds_sqlite(element, compiler, **kw):
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff'; whole seconds keep the fraction untouched.
    timestamp, seconds = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(strftime('%Y-%m-%d %H:%M:%S', {timestamp}, '+' || {seconds} || ' seconds') || substr({timestamp}, 20))"


class _NumericProperty(FunctionElement):
    """A JSON property as a float when it is a JSON number, else NULL (never a cast error)."""

    type = Float()
    inherit_cache = True
    name = "numeric_property"


@compiles(_NumericProperty)
def _numeric_property_postgresql(element, compiler, **kw):
    column, key = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(CASE WHEN json_typeof({column} -> {key}) = 'number' THEN ({column} ->> {key})::float8 END)"


@compiles(_NumericProperty, "sqlite")
def _numeric_property_sqlite(element, compiler, **kw):
    column, key = list(element.clauses)
    path = compiler.process(literal('$."' + key.value.replace('"', '\\"') + '"'), **kw)
    column = compiler.process(column, **kw)
    return f"(CASE WHEN json_type({column}, {path}) IN ('integer', 'real') THEN json_extract({column}, {path}) END)"


def numeric_property(column, key: str) -> _NumericProperty:
    return _NumericProperty(column, literal(key))


@dataclass(frozen=True)
class EventSource:
    """One EventsNode: which events count and how they aggregate per entity."""

    event: str | None
    math: str = "total"
    math_property: str | None = None
    properties: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ExposureRules:
    """Who is exposed to which variant, and from when."""

    flag_key: str
    variants: tuple[str, ...]
    start: datetime
    until: datetime
    first_seen: bool = False
    custom_event: str | None = None
    custom_properties: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class MetricQuery:
    metric_type: str
    sources: tuple[EventSource, ...]
    conversion_window_seconds: int | None = None


NUMERIC_OPERATORS = ("gt", "lt", "gte", "lte")
SUPPORTED_OPERATORS = ("exact", "is_not", "is_set", "is_not_set", "icontains", "not_icontains", *NUMERIC_OPERATORS)


def _property_condition(column, condition: dict[str, Any]) -> ColumnElement[bool]:
    """An event-property filter, one of `SUPPORTED_OPERATORS`."""
    value_of = cast(column[str(condition.get("key", ""))].as_string(), String)
    operator = condition.get("operator") or "exact"
    value = condition.get("value")
    values = [str(item) for item in value] if isinstance(value, list) else [str(value)]
    if operator == "is_set":
        return value_of.is_not(None)
    if operator == "is_not_set":
        return value_of.is_(None)
    if operator == "exact":
        return value_of.in_(values)
    if operator == "is_not":
        return or_(value_of.is_(None), value_of.not_in(values))
    if operator == "icontains":
        return value_of.ilike(f"%{values[0]}%")
    if operator == "not_icontains":
        return or_(value_of.is_(None), ~value_of.ilike(f"%{values[0]}%"))
    if operator in NUMERIC_OPERATORS:
        number = numeric_property(column, str(condition.get("key", "")))
        bound = float(values[0])
        return {"gt": number > bound, "lt": number < bound, "gte": number >= bound, "lte": number <= bound}[operator]
    raise ValueError(f"Unsupported property operator '{operator}'.")


def _metric_result_of(experiment_id: int, metric_uuid: str, fingerprint: str) -> ColumnElement[bool]:
    """The stored daily rows of one metric definition (its uuid and fingerprint) in one experiment."""
    return and_(
        ExperimentMetricResult.experiment_id == experiment_id,
        ExperimentMetricResult.metric_uuid == metric_uuid,
        ExperimentMetricResult.fingerprint == fingerprint,
    )


class ResultsRepository:
    """Project-scoped queries behind results, timeseries and the flag-implementation check."""

    def __init__(self, session: AsyncSession, project_id: int):
        self.session = session
        self.project_id = project_id

    async def project(self) -> Project:
        return await self.session.get_one(Project, self.project_id)

    # --- exposures and metrics ------------------------------------------------------------

    def _exposures(self, rules: ExposureRules) -> CTE:
        """One row per exposed distinct_id: first exposure time and variant (or `$multiple`)."""
        if rules.custom_event:
            variant = cast(events.c.properties[f"$feature/{rules.flag_key}"].as_string(), String)
            conditions = [
                events.c.event == rules.custom_event,
                *(_property_condition(events.c.properties, item) for item in rules.custom_properties),
            ]
        else:
            variant = events.c.flag_response
            conditions = [events.c.event == FLAG_CALLED_EVENT, events.c.flag_key == rules.flag_key]
        conditions += [
            events.c.project_id == self.project_id,
            variant.in_(rules.variants),
            events.c.timestamp >= rules.start,
            events.c.timestamp <= rules.until,
        ]
        if rules.first_seen:
            ranked = (
                select(
                    events.c.distinct_id,
                    events.c.timestamp,
                    variant.label("variant"),
                    func.row_number()
                    .over(partition_by=events.c.distinct_id, order_by=(events.c.timestamp, events.c.id))
                    .label("exposure_rank"),
                )
                .where(*conditions)
                .subquery("ranked_exposures")
            )
            return (
                select(ranked.c.distinct_id, ranked.c.timestamp.label("first_exposure"), ranked.c.variant)
                .where(ranked.c.exposure_rank == 1)
                .cte("exposures")
            )
        single_variant = func.min(variant)
        return (
            select(
                events.c.distinct_id,
                func.min(events.c.timestamp).label("first_exposure"),
                case((single_variant != func.max(variant), literal(MULTIPLE_VARIANTS)), else_=single_variant).label(
                    "variant"
                ),
            )
            .where(*conditions)
            .group_by(events.c.distinct_id)
            .cte("exposures")
        )

    def _metric_event_conditions(
        self, event_table, exposures: CTE, since, rules: ExposureRules, window: int | None
    ) -> list[ColumnElement[bool]]:
        """Events by an exposed entity, at or after `since`, inside the window and the date range."""
        conditions = [
            event_table.c.project_id == self.project_id,
            event_table.c.distinct_id == exposures.c.distinct_id,
            event_table.c.timestamp >= since,
            event_table.c.timestamp <= rules.until,
        ]
        if window is not None:
            conditions.append(event_table.c.timestamp < _PlusSeconds(exposures.c.first_exposure, literal(window)))
        return conditions

    @staticmethod
    def _source_condition(event_table, source: EventSource) -> ColumnElement[bool]:
        conditions = [_property_condition(event_table.c.properties, item) for item in source.properties]
        if source.event is not None:
            conditions.append(event_table.c.event == source.event)
        return and_(true(), *conditions)

    @staticmethod
    def _source_value(event_table, source: EventSource, condition: ColumnElement[bool]):
        """The source's per-entity aggregate, restricted to its own events (`FILTER (WHERE ...)`)."""
        prop = numeric_property(event_table.c.properties, source.math_property or "")
        value = {
            "total": lambda: func.count(),
            "sum": lambda: func.sum(prop),
            "avg": lambda: func.avg(prop),
            "min": lambda: func.min(prop),
            "max": lambda: func.max(prop),
            "unique_session": lambda: func.count(func.distinct(event_table.c.properties["$session_id"].as_string())),
            "dau": lambda: func.count(func.distinct(func.date(event_table.c.timestamp))),
        }[source.math]()
        return cast(value.filter(condition), Float)

    async def _prepare(self) -> None:
        """Give PostgreSQL room to hash a million entities in memory for this transaction."""
        if self.session.get_bind().dialect.name == "postgresql":
            await self.session.execute(text("SELECT set_config('work_mem', '256MB', true), set_config('jit', 'off', true)"))

    async def metric_aggregates(self, rules: ExposureRules, metric: MetricQuery) -> dict[str, VariantAggregate]:
        """Per-variant n / sum / sum_squares (and ratio or funnel extras), `$multiple` included.

        Entities without metric events contribute zeros, so sums need only the entities that have
        events (one join, one pass for both ratio sources) and `n` comes from the exposures alone.
        """
        await self._prepare()
        exposures = self._exposures(rules)
        if metric.metric_type == "funnel":
            return await self._funnel_aggregates(exposures, rules, metric.sources, metric.conversion_window_seconds)
        metric_events = events.alias("metric_events")
        conditions = [self._source_condition(metric_events, source) for source in metric.sources]
        values = [
            self._source_value(metric_events, source, condition).label(f"value_{index}")
            for index, (source, condition) in enumerate(zip(metric.sources, conditions, strict=True))
        ]
        per_entity = (
            select(exposures.c.variant, *values)
            .select_from(
                exposures.join(
                    metric_events,
                    and_(
                        *self._metric_event_conditions(
                            metric_events, exposures, exposures.c.first_exposure, rules, metric.conversion_window_seconds
                        ),
                        or_(*conditions),
                    ),
                )
            )
            .group_by(exposures.c.distinct_id, exposures.c.variant)
            .subquery("per_entity")
        )
        value = func.coalesce(per_entity.c.value_0, 0.0)
        sums = [func.sum(value), func.sum(value * value)]
        if metric.metric_type == "ratio":
            denominator = func.coalesce(per_entity.c.value_1, 0.0)
            sums += [func.sum(denominator), func.sum(denominator * denominator), func.sum(value * denominator)]
        per_variant = select(per_entity.c.variant, *sums).group_by(per_entity.c.variant).subquery("per_variant")
        counts = select(exposures.c.variant, func.count().label("n")).group_by(exposures.c.variant).subquery("counts")
        query = select(counts.c.variant, counts.c.n, *list(per_variant.c)[1:]).select_from(
            counts.outerjoin(per_variant, per_variant.c.variant == counts.c.variant)
        )
        aggregates = {}
        for key, n, *totals in (await self.session.execute(query)).all():
            totals = [float(total or 0) for total in totals]
            extra = {}
            if metric.metric_type == "ratio":
                extra = {"denominator_sum": totals[2], "denominator_sum_squares": totals[3], "sum_of_products": totals[4]}
            aggregates[key] = VariantAggregate(key=key, number_of_samples=n, sum=totals[0], sum_squares=totals[1], **extra)
        return aggregates

    async def _funnel_aggregates(
        self, exposures: CTE, rules: ExposureRules, steps: tuple[EventSource, ...], window: int | None
    ) -> dict[str, VariantAggregate]:
        """Ordered steps after exposure: each step's earliest event at or after the previous step."""
        counts = [select(literal(-1).label("step"), exposures.c.variant, func.count()).group_by(exposures.c.variant)]
        previous = select(
            exposures.c.distinct_id, exposures.c.variant, exposures.c.first_exposure,
            exposures.c.first_exposure.label("reached_at"),
        ).cte("funnel_exposed")
        for index, step in enumerate(steps):
            step_events = events.alias(f"step_{index}_events")
            conditions = self._metric_event_conditions(step_events, previous, previous.c.reached_at, rules, window)
            previous = (
                select(
                    previous.c.distinct_id,
                    previous.c.variant,
                    previous.c.first_exposure,
                    func.min(step_events.c.timestamp).label("reached_at"),
                )
                .select_from(
                    previous.join(step_events, and_(*conditions, self._source_condition(step_events, step)))
                )
                .group_by(previous.c.distinct_id, previous.c.variant, previous.c.first_exposure)
                .cte(f"funnel_step_{index}")
            )
            counts.append(select(literal(index), previous.c.variant, func.count()).group_by(previous.c.variant))
        rows = (await self.session.execute(union_all(*counts))).all()
        exposed = {variant: n for step, variant, n in rows if step == -1}
        reached = {(step, variant): n for step, variant, n in rows if step >= 0}
        aggregates = {}
        for key, n in exposed.items():
            step_counts = [int(reached.get((index, key), 0)) for index in range(len(steps))]
            conversions = float(step_counts[-1])
            aggregates[key] = VariantAggregate(
                key=key, number_of_samples=n, sum=conversions, sum_squares=conversions, step_counts=step_counts
            )
        return aggregates

    async def exposure_counts(self, rules: ExposureRules) -> dict[str, int]:
        await self._prepare()
        exposures = self._exposures(rules)
        query = select(exposures.c.variant, func.count()).group_by(exposures.c.variant)
        return {key: n for key, n in (await self.session.execute(query)).all()}

    async def recent_event_properties(self, event_name: str, since: datetime, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` property sets of one event name since `since`."""
        query = (
            select(Event.properties)
            .where(Event.project_id == self.project_id, Event.event == event_name, Event.timestamp >= since)
            .order_by(Event.timestamp.desc())
            .limit(limit)
        )
        return [properties or {} for properties in (await self.session.execute(query)).scalars()]

    # --- stored daily results ---------------------------------------------------------------

    async def metric_results(self, experiment_id: int, metric_uuid: str, fingerprint: str) -> list[ExperimentMetricResult]:
        query = (
            select(ExperimentMetricResult)
            .where(_metric_result_of(experiment_id, metric_uuid, fingerprint))
            .order_by(ExperimentMetricResult.query_to)
        )
        return list((await self.session.execute(query)).scalars())

    async def delete_metric_results(self, experiment_id: int, metric_uuid: str, fingerprint: str) -> None:
        await self.session.execute(
            delete(ExperimentMetricResult).where(_metric_result_of(experiment_id, metric_uuid, fingerprint))
        )

    async def save_metric_result(
        self,
        experiment_id: int,
        metric_uuid: str,
        fingerprint: str,
        query_from: datetime,
        query_to: datetime,
        *,
        result: dict[str, Any] | None,
        error_message: str | None,
    ) -> ExperimentMetricResult:
        """Insert or overwrite the day's row (a resumed job may recompute a day)."""
        query = select(ExperimentMetricResult).where(
            _metric_result_of(experiment_id, metric_uuid, fingerprint), ExperimentMetricResult.query_to == query_to
        )
        row = (await self.session.execute(query)).scalar_one_or_none()
        if row is None:
            row = ExperimentMetricResult(
                experiment_id=experiment_id, metric_uuid=metric_uuid, fingerprint=fingerprint, query_to=query_to
            )
            self.session.add(row)
        row.query_from = query_from
        row.status = "failed" if error_message else "completed"
        row.result = result
        row.error_message = error_message
        row.completed_at = None if error_message else utcnow()
        await self.session.flush()
        return row

    # --- recalculation jobs -------------------------------------------------------------------

    async def active_recalculation(self, experiment_id: int, fingerprint: str) -> ExperimentTimeseriesRecalculation | None:
        query = select(ExperimentTimeseriesRecalculation).where(
            ExperimentTimeseriesRecalculation.project_id == self.project_id,
            ExperimentTimeseriesRecalculation.experiment_id == experiment_id,
            ExperimentTimeseriesRecalculation.fingerprint == fingerprint,
            ExperimentTimeseriesRecalculation.status.in_(ACTIVE_RECALCULATION_STATUSES),
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def add_recalculation(self, job: ExperimentTimeseriesRecalculation) -> ExperimentTimeseriesRecalculation:
        self.session.add(job)
        await self.session.flush()
        return job


class JobQueue:
    """The recalculation table used as a durable queue (not project-scoped: the worker serves all)."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def claim(self, worker_id: str, stale_before: datetime) -> ExperimentTimeseriesRecalculation | None:
        """Take the oldest runnable job: pending, or in progress with a lock nobody refreshed.

        `FOR UPDATE SKIP LOCKED` keeps concurrent PostgreSQL workers off each other's candidate;
        the conditional UPDATE makes the claim a compare-and-set on either database.
        """
        model = ExperimentTimeseriesRecalculation
        runnable = or_(
            model.status == "pending",
            and_(model.status == "in_progress", or_(model.locked_at.is_(None), model.locked_at < stale_before)),
        )
        candidate = (
            await self.session.execute(
                select(model.id).where(runnable).order_by(model.created_at).limit(1).with_for_update(skip_locked=True)
            )
        ).scalar_one_or_none()
        if candidate is None:
            return None
        claimed = await self.session.execute(
            update(model)
            .where(model.id == candidate, runnable)
            .values(
                status="in_progress", locked_by=worker_id, locked_at=utcnow(), attempts=model.attempts + 1,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            return None
        return await self.session.get(model, candidate, populate_existing=True)

    async def get(self, job_id: UUID) -> ExperimentTimeseriesRecalculation | None:
        return await self.session.get(ExperimentTimeseriesRecalculation, job_id, populate_existing=True)

    async def heartbeat(self, job_id: UUID, worker_id: str, **values: Any) -> bool:
        """Refresh the lock (and record progress); False when another worker took the job over."""
        model = ExperimentTimeseriesRecalculation
        result = await self.session.execute(
            update(model)
            .where(model.id == job_id, model.locked_by == worker_id, model.status == "in_progress")
            .values(locked_at=utcnow(), updated_at=utcnow(), **values)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def finish(self, job_id: UUID, worker_id: str, status: str, error: str | None = None) -> None:
        model = ExperimentTimeseriesRecalculation
        await self.session.execute(
            update(model)
            .where(model.id == job_id, model.locked_by == worker_id)
            .values(status=status, error=error, locked_at=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
