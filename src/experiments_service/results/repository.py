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


def _property_condition(column, condition: dict[str, Any]) -> ColumnElement[bool]:
    """An event-property filter (`exact`, `is_not`, `is_set`, `is_not_set`, `icontains`, `gt`, `lt`)."""
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
    if operator in ("gt", "lt", "gte", "lte"):
        number = column[str(condition.get("key", ""))].as_float()
        bound = float(values[0])
        return {"gt": number > bound, "lt": number < bound, "gte": number >= bound, "lte": number <= bound}[operator]
    raise ValueError(f"Unsupported property operator '{operator}'.")


SUPPORTED_OPERATORS = ("exact", "is_not", "is_set", "is_not_set", "icontains", "not_icontains", "gt", "lt", "gte", "lte")


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
        self, event_table, source: EventSource, exposures: CTE, since, rules: ExposureRules, window: int | None
    ) -> list[ColumnElement[bool]]:
        """Events of `source` by an exposed entity, at or after `since`, inside the window."""
        conditions = [
            event_table.c.project_id == self.project_id,
            event_table.c.distinct_id == exposures.c.distinct_id,
            event_table.c.timestamp >= since,
            event_table.c.timestamp <= rules.until,
            *(_property_condition(event_table.c.properties, item) for item in source.properties),
        ]
        if source.event is not None:
            conditions.append(event_table.c.event == source.event)
        if window is not None:
            conditions.append(event_table.c.timestamp < _PlusSeconds(exposures.c.first_exposure, literal(window)))
        return conditions

    def _entity_values(self, exposures: CTE, source: EventSource, rules: ExposureRules, window: int | None, name: str):
        """Per exposed entity, the source's value (count, property sum, …) after exposure."""
        metric_events = events.alias(f"{name}_events")
        prop = metric_events.c.properties[source.math_property or ""].as_float()
        value = {
            "total": func.count(),
            "sum": func.sum(prop),
            "avg": func.avg(prop),
            "min": func.min(prop),
            "max": func.max(prop),
            "unique_session": func.count(func.distinct(metric_events.c.properties["$session_id"].as_string())),
        }[source.math]
        return (
            select(exposures.c.distinct_id, cast(value, Float).label("value"))
            .select_from(
                exposures.join(
                    metric_events,
                    and_(*self._metric_event_conditions(
                        metric_events, source, exposures, exposures.c.first_exposure, rules, window
                    )),
                )
            )
            .group_by(exposures.c.distinct_id)
            .subquery(name)
        )

    async def metric_aggregates(self, rules: ExposureRules, metric: MetricQuery) -> dict[str, VariantAggregate]:
        """Per-variant n / sum / sum_squares (and ratio or funnel extras), `$multiple` included."""
        exposures = self._exposures(rules)
        window = metric.conversion_window_seconds
        if metric.metric_type == "funnel":
            return await self._funnel_aggregates(exposures, rules, metric.sources, window)
        if metric.metric_type == "ratio":
            numerator = self._entity_values(exposures, metric.sources[0], rules, window, "numerator")
            denominator = self._entity_values(exposures, metric.sources[1], rules, window, "denominator")
            num = func.coalesce(numerator.c.value, 0.0)
            den = func.coalesce(denominator.c.value, 0.0)
            query = (
                select(
                    exposures.c.variant,
                    func.count(),
                    func.sum(num),
                    func.sum(num * num),
                    func.sum(den),
                    func.sum(den * den),
                    func.sum(num * den),
                )
                .select_from(
                    exposures.outerjoin(numerator, numerator.c.distinct_id == exposures.c.distinct_id).outerjoin(
                        denominator, denominator.c.distinct_id == exposures.c.distinct_id
                    )
                )
                .group_by(exposures.c.variant)
            )
            return {
                key: VariantAggregate(
                    key=key, number_of_samples=n, sum=float(s or 0), sum_squares=float(ss or 0),
                    denominator_sum=float(ds or 0), denominator_sum_squares=float(dss or 0),
                    sum_of_products=float(sop or 0),
                )
                for key, n, s, ss, ds, dss, sop in (await self.session.execute(query)).all()
            }
        values = self._entity_values(exposures, metric.sources[0], rules, window, "entity_values")
        value = func.coalesce(values.c.value, 0.0)
        query = (
            select(exposures.c.variant, func.count(), func.sum(value), func.sum(value * value))
            .select_from(exposures.outerjoin(values, values.c.distinct_id == exposures.c.distinct_id))
            .group_by(exposures.c.variant)
        )
        return {
            key: VariantAggregate(key=key, number_of_samples=n, sum=float(s or 0), sum_squares=float(ss or 0))
            for key, n, s, ss in (await self.session.execute(query)).all()
        }

    async def _funnel_aggregates(
        self, exposures: CTE, rules: ExposureRules, steps: tuple[EventSource, ...], window: int | None
    ) -> dict[str, VariantAggregate]:
        """Ordered steps after exposure: each step's earliest event at or after the previous step."""
        reached = []
        previous = select(
            exposures.c.distinct_id, exposures.c.first_exposure, exposures.c.first_exposure.label("reached_at")
        ).cte("funnel_exposed")
        for index, step in enumerate(steps):
            step_events = events.alias(f"step_{index}_events")
            conditions = self._metric_event_conditions(
                step_events, step, previous, previous.c.reached_at, rules, window
            )
            previous = (
                select(
                    previous.c.distinct_id,
                    previous.c.first_exposure,
                    func.min(step_events.c.timestamp).label("reached_at"),
                )
                .select_from(previous.join(step_events, and_(*conditions)))
                .group_by(previous.c.distinct_id, previous.c.first_exposure)
                .cte(f"funnel_step_{index}")
            )
            reached.append(previous)
        joined = exposures
        step_flags = []
        for step_cte in reached:
            joined = joined.outerjoin(step_cte, step_cte.c.distinct_id == exposures.c.distinct_id)
            step_flags.append(func.sum(case((step_cte.c.distinct_id.is_not(None), 1), else_=0)))
        query = select(exposures.c.variant, func.count(), *step_flags).select_from(joined).group_by(exposures.c.variant)
        aggregates = {}
        for key, n, *step_counts in (await self.session.execute(query)).all():
            conversions = float(step_counts[-1] or 0) if step_counts else 0.0
            aggregates[key] = VariantAggregate(
                key=key, number_of_samples=n, sum=conversions, sum_squares=conversions,
                step_counts=[int(count or 0) for count in step_counts],
            )
        return aggregates

    async def exposure_counts(self, rules: ExposureRules) -> dict[str, int]:
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
            .where(
                ExperimentMetricResult.experiment_id == experiment_id,
                ExperimentMetricResult.metric_uuid == metric_uuid,
                ExperimentMetricResult.fingerprint == fingerprint,
            )
            .order_by(ExperimentMetricResult.query_to)
        )
        return list((await self.session.execute(query)).scalars())

    async def delete_metric_results(self, experiment_id: int, metric_uuid: str, fingerprint: str) -> None:
        await self.session.execute(
            delete(ExperimentMetricResult).where(
                ExperimentMetricResult.experiment_id == experiment_id,
                ExperimentMetricResult.metric_uuid == metric_uuid,
                ExperimentMetricResult.fingerprint == fingerprint,
            )
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
            ExperimentMetricResult.experiment_id == experiment_id,
            ExperimentMetricResult.metric_uuid == metric_uuid,
            ExperimentMetricResult.fingerprint == fingerprint,
            ExperimentMetricResult.query_to == query_to,
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
