"""SQL of the analyses that need every entity's value at once: winsorized (outlier-capped) means,
CUPED's pre-exposure covariate, and retention metrics.

These are computed from the events on each call (not from the stored incremental per-entity
values), then summed per variant in the database like every other metric.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Float, Select, and_, case, cast, func, literal, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from experiments_service.models import Event
from experiments_service.models.base import UTCDateTime
from experiments_service.results.repository import (
    MULTIPLE_VARIANTS,
    EventSource,
    ExposureRules,
    MetricQuery,
    ResultsRepository,
)
from experiments_service.results.repository.dialect import PlusSeconds, TruncateTo
from experiments_service.results.statistics import VariantAggregate

events = Event.__table__


class ValuesOutOfRange(ArithmeticError):
    """A metric's sums overflowed the floating-point range (one absurd value is enough)."""


@asynccontextmanager
async def metric_savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """Run one metric's queries in a savepoint, so that a float overflow (PostgreSQL's 22003)
    rolls back that metric alone and leaves the transaction usable for the others."""
    try:
        async with session.begin_nested():
            yield
    except OverflowError as error:
        raise ValuesOutOfRange() from error
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == "22003" or "out of range" in str(error.orig):
            raise ValuesOutOfRange() from error
        raise


@dataclass(frozen=True)
class OutlierHandling:
    """PostHog's winsorization: per-entity values capped at percentiles of all exposed entities."""

    lower_bound_percentile: float | None = None
    upper_bound_percentile: float | None = None
    ignore_zeros: bool = False

    @property
    def active(self) -> bool:
        return self.lower_bound_percentile is not None or self.upper_bound_percentile is not None


@dataclass(frozen=True)
class Retention:
    """Of the entities that did `start` after exposure, the share that did `completion` within
    [window_start, window_end] units of it (day and hour windows compare calendar days/hours)."""

    start: EventSource
    completion: EventSource
    window_start: int
    window_end: int
    unit: str
    unit_seconds: int
    last_seen: bool = False


class AnalysisRepository(ResultsRepository):
    """Per-variant aggregates for winsorized means, CUPED covariates and retention metrics."""

    async def analysed_aggregates(
        self,
        rules: ExposureRules,
        metric: MetricQuery,
        *,
        outliers: OutlierHandling | None = None,
        cuped_lookback_days: int | None = None,
        retention: Retention | None = None,
    ) -> dict[str, VariantAggregate]:
        await self._prepare()
        if retention is not None:
            return await self._ratio_totals(self._retention_entity_values(rules, retention).subquery("entities"))
        entities = self._entity_values(rules, metric).subquery("entities")
        value = entities.c.value_0
        steps = len(metric.sources) if metric.metric_type == "funnel" else 0
        if steps:
            # A funnel entity's value counts the steps it reached: it converted when it reached them all.
            value = case((entities.c.value_0 >= steps, 1.0), else_=0.0)
        elif outliers is not None and outliers.active:
            value = await self._winsorized(entities, outliers)
        columns = [func.count(), func.sum(value), func.sum(value * value)]
        columns += [func.count().filter(entities.c.value_0 >= index + 1) for index in range(steps)]
        joined = entities
        if cuped_lookback_days is not None:
            # MATERIALIZED: computed once. Inlined, PostgreSQL nested it in a loop over the entities
            # (98 s instead of 2.4 s for 300 entities).
            covariates = (
                self._covariates(rules, metric, cuped_lookback_days).cte("covariates").prefix_with("MATERIALIZED")
            )
            joined = entities.outerjoin(covariates, covariates.c.distinct_id == entities.c.distinct_id)
            covariate = func.coalesce(covariates.c.covariate, 0.0)
            columns += [func.sum(covariate), func.sum(covariate * covariate), func.sum(value * covariate)]
        query = select(entities.c.variant, *columns).select_from(joined).group_by(entities.c.variant)
        aggregates = {}
        for key, n, *sums in (await self.session.execute(query)).all():
            totals = [float(total or 0) for total in sums]
            extra: dict = {"step_counts": [round(count) for count in totals[2 : 2 + steps]]} if steps else {}
            if cuped_lookback_days is not None:
                names = ("covariate_sum", "covariate_sum_squares", "covariate_sum_product")
                extra.update(zip(names, totals[2 + steps :], strict=True))
            aggregates[key] = VariantAggregate(key=key, number_of_samples=n, sum=totals[0], sum_squares=totals[1], **extra)
        return aggregates

    # --- winsorization ---------------------------------------------------------------------

    async def _winsorized(self, entities, outliers: OutlierHandling):
        """The per-entity value clamped to the percentile bounds (ClickHouse's `quantileExact`:
        the value at index ⌊level·n⌋ of the sorted values); `ignore_zeros` leaves zeros out of the
        upper bound's population."""
        value = entities.c.value_0
        analysed = entities.c.variant != MULTIPLE_VARIANTS
        if outliers.lower_bound_percentile is not None:
            lower = await self._quantile(value, analysed, outliers.lower_bound_percentile, entities)
            if lower is not None:
                value = case((value < lower, literal(lower)), else_=value)
        if outliers.upper_bound_percentile is not None:
            population = and_(analysed, entities.c.value_0 != 0) if outliers.ignore_zeros else analysed
            upper = await self._quantile(entities.c.value_0, population, outliers.upper_bound_percentile, entities)
            if upper is not None:
                value = case((value > upper, literal(upper)), else_=value)
        return cast(value, Float)

    async def _quantile(self, value, condition, level: float, entities) -> float | None:
        count = (await self.session.execute(select(func.count()).select_from(entities).where(condition))).scalar_one()
        if not count:
            return None
        index = min(int(level * count), count - 1)
        query = select(value).select_from(entities).where(condition).order_by(value).limit(1).offset(index)
        return float((await self.session.execute(query)).scalar_one())

    # --- CUPED -----------------------------------------------------------------------------

    def _covariates(self, rules: ExposureRules, metric: MetricQuery, lookback_days: int) -> Select:
        """Per exposed entity: the metric over its own events in the lookback before its first
        exposure (a mean's source aggregate; for a funnel, 1 when it did the last step's event)."""
        # The entity values' own exposure CTEs sit in the same statement: this copy's need other names.
        exposures = self._exposures(rules, prefix="covariate_")
        lookback = int(timedelta(days=lookback_days).total_seconds())
        pre_events = events.alias("pre_events")
        source = metric.sources[-1]
        condition = self._source_condition(pre_events, source)
        if metric.metric_type == "funnel":
            source = EventSource(event=source.event, properties=source.properties)
        value = self._source_value(pre_events, source, condition)
        if metric.metric_type == "funnel":
            value = case((value > 0, 1.0), else_=0.0)
        joined = exposures.outerjoin(
            pre_events,
            and_(
                pre_events.c.project_id == self.project_id,
                pre_events.c.distinct_id == exposures.c.member,  # any distinct id of the entity
                pre_events.c.timestamp >= rules.start - timedelta(seconds=lookback),
                pre_events.c.timestamp < exposures.c.first_exposure,
                PlusSeconds(pre_events.c.timestamp, literal(lookback)) >= exposures.c.first_exposure,
                condition,
            ),
        )
        return (
            select(exposures.c.distinct_id, cast(value, Float).label("covariate"))
            .select_from(joined)
            .group_by(exposures.c.distinct_id)
        )

    # --- retention -------------------------------------------------------------------------

    def _retention_entity_values(self, rules: ExposureRules, retention: Retention) -> Select:
        """One row per exposed entity that did the start event: `value_0` 1 when retained, else 0;
        `value_1` (the denominator) 1."""
        exposures = self._exposures(rules)
        start_events = events.alias("start_events")
        started_at = func.max(start_events.c.timestamp) if retention.last_seen else func.min(start_events.c.timestamp)
        starts = (
            select(exposures.c.distinct_id, exposures.c.variant, started_at.label("started_at"))
            .select_from(
                exposures.join(
                    start_events,
                    and_(
                        *self._metric_event_conditions(
                            start_events, exposures.c.member, exposures.c.first_exposure, exposures.c.first_exposure,
                            rules, None,
                        ),  # fmt: skip
                        self._source_condition(start_events, retention.start),
                    ),
                )
            )
            .group_by(exposures.c.distinct_id, exposures.c.variant)
            .cte("retention_starts")
        )
        completions = events.alias("completion_events")
        if retention.unit in ("day", "hour"):
            started = TruncateTo(literal(retention.unit), starts.c.started_at)
            completed = TruncateTo(literal(retention.unit), completions.c.timestamp)
        else:
            started, completed = starts.c.started_at, completions.c.timestamp
        # Completions under any distinct id of the entity: its members come from the exposures again.
        members = exposures.alias("retention_members")
        joined = starts.join(members, members.c.distinct_id == starts.c.distinct_id).outerjoin(
            completions,
            and_(
                *self._metric_event_conditions(
                    completions, members.c.member, starts.c.started_at, starts.c.started_at, rules, None
                ),
                self._source_condition(completions, retention.completion),
                completed >= PlusSeconds(started, literal(retention.window_start * retention.unit_seconds)),
                completed <= PlusSeconds(started, literal(retention.window_end * retention.unit_seconds)),
            ),
        )
        retained = func.max(case((completions.c.id.is_not(None), 1.0), else_=0.0))
        return (
            select(
                starts.c.distinct_id,
                starts.c.variant,
                cast(retained, Float).label("value_0"),
                cast(literal(1.0), Float).label("value_1"),
            )
            .select_from(joined)
            .group_by(starts.c.distinct_id, starts.c.variant)
        )

    async def _ratio_totals(self, entities) -> dict[str, VariantAggregate]:
        value, denominator = entities.c.value_0, entities.c.value_1
        query = select(
            entities.c.variant,
            func.count(),
            func.sum(value),
            func.sum(value * value),
            func.sum(denominator),
            func.sum(denominator * denominator),
            func.sum(value * denominator),
        ).group_by(entities.c.variant)
        aggregates = {}
        for key, n, *sums in (await self.session.execute(query)).all():
            total, squares, den, den_squares, products = (float(item or 0) for item in sums)
            aggregates[key] = VariantAggregate(
                key=key, number_of_samples=n, sum=total, sum_squares=squares, denominator_sum=den,
                denominator_sum_squares=den_squares, sum_of_products=products,
            )
        return aggregates

