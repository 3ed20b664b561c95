"""Exposures, per-entity metric values and per-variant aggregates, and stored daily results.

Aggregation runs in the database (per entity, then per variant) through SQLAlchemy Core, one code
path for SQLite and PostgreSQL; only a handful of per-variant rows come back to Python.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Float,
    Select,
    String,
    and_,
    case,
    cast,
    delete,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    text,
    true,
    union,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.cohorts.repository import cohort_definitions
from experiments_service.db import insert_on_conflict
from experiments_service.events.parsing import MERGE_EVENTS
from experiments_service.models import (
    CohortStaticMember,
    Event,
    ExperimentMetricResult,
    Person,
    PersonDistinctId,
    ExperimentTimeseriesRecalculation,
    Project,
    ResultsEntityValue,
    ResultsMaterialization,
)
from experiments_service.models.base import utcnow
from experiments_service.results.repository.dialect import (
    CommittedBetween,
    CurrentCursor,
    PlusSeconds,
    numeric_property,
    property_condition,
)
from experiments_service.results.repository.jobs import ACTIVE_RECALCULATION_STATUSES
from experiments_service.results.repository.specs import (
    FLAG_CALLED_EVENT,
    MULTIPLE_VARIANTS,
    EventSource,
    ExposureRules,
    MetricQuery,
    definition_key,
    relevant_event_names,
)
from experiments_service.results.statistics import VariantAggregate

# Beyond this many changed entities, recomputing every entity with hash joins is the cheaper plan
# (and the id list, bound one parameter per id, stays under PostgreSQL's 32,767 per statement).
MAX_ENTITIES_REFRESHED = 20_000

events = Event.__table__
merged_ids = PersonDistinctId.__table__


def _moved_totals(
    totals: dict[str, list[float]], before: dict[str, list[float]], after: dict[str, list[float]]
) -> dict[str, list[float]]:
    """Per-variant totals with some entities' old rows (`before`) replaced by their new ones."""
    moved = {key: list(values) for key, values in totals.items()}
    for sign, part in ((-1, before), (1, after)):
        for key, values in part.items():
            current = moved.setdefault(key, [0.0] * len(values))
            moved[key] = [total + sign * value for total, value in zip(current, values, strict=True)]
    return {key: values for key, values in moved.items() if round(values[0]) > 0}



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

    def _links(self, prefix: str = "") -> CTE:
        """`(member, entity)` for every distinct id of a person with several: each merged id and
        each such person's key, mapped to the key. A small set, whatever the number of persons."""
        merged = (
            select(merged_ids.c.distinct_id, merged_ids.c.person_key)
            .where(merged_ids.c.project_id == self.project_id, merged_ids.c.person_key != merged_ids.c.distinct_id)
            .subquery("merged_ids")
        )
        return union(
            select(merged.c.distinct_id.label("member"), merged.c.person_key.label("entity")),
            select(merged.c.person_key, merged.c.person_key),
        ).cte(f"{prefix}person_links")

    def _exposed_ids(self, rules: ExposureRules, only: list[str] | None, prefix: str = "") -> CTE:
        """One row per exposed distinct id: first exposure and its lowest and highest variant (the
        first exposure's variant, twice, under `first_seen`). Read in distinct-id order from the
        exposure index."""
        if rules.custom_event:
            variant = cast(events.c.properties[f"$feature/{rules.flag_key}"].as_string(), String)
            conditions = [
                events.c.event == rules.custom_event,
                *(
                    self._cohort_condition(item) if item.get("type") == "cohort"
                    else property_condition(events.c.properties, item)
                    for item in rules.custom_properties
                ),
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
        if only is not None:
            conditions.append(events.c.distinct_id.in_(only))
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
                select(
                    ranked.c.distinct_id, ranked.c.timestamp.label("first_exposure"),
                    ranked.c.variant.label("low"), ranked.c.variant.label("high"),
                )
                .where(ranked.c.exposure_rank == 1)
                .cte(f"{prefix}exposed_ids")
            )
        return (
            select(
                events.c.distinct_id,
                func.min(events.c.timestamp).label("first_exposure"),
                func.min(variant).label("low"),
                func.max(variant).label("high"),
            )
            .where(*conditions)
            .group_by(events.c.distinct_id)
            .cte(f"{prefix}exposed_ids")
        )

    def _cohort_condition(self, item: dict[str, Any]) -> ColumnElement[bool]:
        """The exposure event's person is (`in`) or is not (`not_in`) in the cohort `item["cohort"]`
        (resolved by the service): listed under any of its distinct ids, or matching the property
        group on its stored properties. An unknown cohort holds nobody."""
        cohort = item.get("cohort")
        if cohort is None:
            member: ColumnElement[bool] = false()
        elif cohort["is_static"]:
            mine, theirs = merged_ids.alias("cohort_mine"), merged_ids.alias("cohort_theirs")
            listed = select(CohortStaticMember.distinct_id).where(CohortStaticMember.cohort_id == int(item["value"]))
            member = or_(
                events.c.distinct_id.in_(listed),
                exists(
                    select(literal(1))
                    .select_from(mine.join(theirs, theirs.c.person_id == mine.c.person_id))
                    .where(
                        mine.c.project_id == self.project_id, mine.c.distinct_id == events.c.distinct_id,
                        theirs.c.distinct_id.in_(listed),
                    )
                ),
            )
        else:
            member = self._person_matches(cohort["properties"])
        negated = (item.get("operator") == "not_in") != (item.get("negation") is True)
        return not_(member) if negated else member

    def _person_matches(self, group: Any) -> ColumnElement[bool]:
        """The event's person's stored properties satisfy a cohort's property group."""
        persons = Person.__table__.alias("cohort_person")
        ids = merged_ids.alias("cohort_ids")

        def condition(entry: Any) -> ColumnElement[bool]:
            if isinstance(entry, dict) and isinstance(entry.get("values"), list):
                parts = [condition(value) for value in entry["values"]]
                if not parts:
                    return true()
                return and_(*parts) if entry.get("type") == "AND" else or_(*parts)
            if not isinstance(entry, dict) or not entry:
                return true() if entry == {} else false()
            if entry.get("type") == "cohort":
                found = self._cohort_condition({**entry, "operator": "in"})
            elif entry.get("type") in (None, "person"):
                found = exists(
                    select(literal(1))
                    .select_from(ids.join(persons, persons.c.id == ids.c.person_id))
                    .where(
                        ids.c.project_id == self.project_id, ids.c.distinct_id == events.c.distinct_id,
                        property_condition(persons.c.properties, entry),
                    )
                )
            else:
                found = false()
            return not_(found) if entry.get("negation") is True else found

        return condition(group)

    @staticmethod
    def _variant(low, high):
        return case((low != high, literal(MULTIPLE_VARIANTS)), else_=low)

    def _exposures(self, rules: ExposureRules, only: list[str] | None = None, prefix: str = "") -> CTE:
        """One row per exposed person and distinct id of it: `distinct_id` (the person's key: its
        first distinct id, or the event's distinct id when it has no other), `member` (one of its
        distinct ids), first exposure and variant (or `$multiple`). A person is exposed by a flag
        call under any of its distinct ids; a person with one distinct id has one row.

        `only` restricts the events read to those of these distinct ids; `prefix` names its CTEs
        apart from another copy in the same statement.
        """
        exposed, links = self._exposed_ids(rules, only, prefix), self._links(prefix)
        alone = select(
            exposed.c.distinct_id, exposed.c.distinct_id.label("member"), exposed.c.first_exposure,
            self._variant(exposed.c.low, exposed.c.high).label("variant"),
        ).where(exposed.c.distinct_id.not_in(select(links.c.member)))
        linked = exposed.join(links, links.c.member == exposed.c.distinct_id)
        if rules.first_seen:
            ranked = (
                select(
                    links.c.entity, exposed.c.first_exposure, exposed.c.low.label("variant"),
                    func.row_number()
                    .over(partition_by=links.c.entity, order_by=(exposed.c.first_exposure, exposed.c.distinct_id))
                    .label("exposure_rank"),
                )
                .select_from(linked)
                .subquery("ranked_persons")
            )
            persons = (
                select(ranked.c.entity, ranked.c.first_exposure, ranked.c.variant)
                .where(ranked.c.exposure_rank == 1)
                .subquery("exposed_persons")
            )
        else:
            persons = (
                select(
                    links.c.entity, func.min(exposed.c.first_exposure).label("first_exposure"),
                    self._variant(func.min(exposed.c.low), func.max(exposed.c.high)).label("variant"),
                )
                .select_from(linked)
                .group_by(links.c.entity)
                .subquery("exposed_persons")
            )
        members = links.alias(f"{prefix}person_members")
        merged = select(persons.c.entity, members.c.member, persons.c.first_exposure, persons.c.variant).join(
            members, members.c.entity == persons.c.entity
        )
        return union_all(alone, merged).cte(f"{prefix}exposures")

    @staticmethod
    def _persons_of(exposures: CTE):
        """The exposures, one row per person (its key's own row)."""
        return select(exposures).where(exposures.c.member == exposures.c.distinct_id).subquery("exposed")

    def _metric_event_conditions(
        self, event_table, member, first_exposure, since, rules: ExposureRules, window: int | None
    ) -> list[ColumnElement[bool]]:
        """Events under the distinct id `member` of an exposed entity, at or after `since`, inside
        the window (from `first_exposure`) and the date range."""
        conditions = [
            event_table.c.project_id == self.project_id,
            event_table.c.distinct_id == member,
            event_table.c.timestamp >= since,
            event_table.c.timestamp <= rules.until,
        ]
        if window is not None:
            conditions.append(event_table.c.timestamp < PlusSeconds(first_exposure, literal(window)))
        return conditions

    @staticmethod
    def _source_condition(event_table, source: EventSource) -> ColumnElement[bool]:
        conditions = [property_condition(event_table.c.properties, item) for item in source.properties]
        if source.event is not None:
            conditions.append(event_table.c.event == source.event)
        return and_(true(), *conditions)

    @staticmethod
    def _source_value(event_table, source: EventSource, condition: ColumnElement[bool]):
        """The source's per-entity aggregate over its own events (`FILTER (WHERE ...)`), 0 without any."""
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
        # The left join yields one NULL row for an entity without events: it must not count.
        return func.coalesce(cast(value.filter(and_(event_table.c.id.is_not(None), condition)), Float), 0.0)

    async def _prepare(self) -> None:
        """Give PostgreSQL room to hash a million entities in memory for this transaction, and
        price index lookups as on cached or solid-state storage, so a few thousand entities are
        looked up by key rather than by scanning every stored one."""
        if self.session.get_bind().dialect.name == "postgresql":
            await self.session.execute(
                text(
                    "SELECT set_config('work_mem', '256MB', true), set_config('jit', 'off', true),"
                    " set_config('random_page_cost', '1.1', true)"
                )
            )

    def _entity_values(self, rules: ExposureRules, metric: MetricQuery, only: list[str] | None = None) -> Select:
        """One row per exposed entity: `distinct_id`, `variant`, `value_0` and `value_1`.

        `value_0` is the metric value (a funnel's: how many steps were reached in order) and
        `value_1` a ratio's denominator; entities without metric events get zeros.
        """
        exposures = self._exposures(rules, only)
        if metric.metric_type == "funnel":
            return self._funnel_entity_values(exposures, rules, metric.sources, metric.conversion_window_seconds)
        metric_events = events.alias("metric_events")
        conditions = [self._source_condition(metric_events, source) for source in metric.sources]
        values = [
            self._source_value(metric_events, source, condition).label(f"value_{index}")
            for index, (source, condition) in enumerate(zip(metric.sources, conditions, strict=True))
        ]
        if len(values) == 1:
            values.append(cast(null(), Float).label("value_1"))
        # One row per (entity, distinct id): each event meets the row of its own distinct id only.
        joined = exposures.outerjoin(
            metric_events,
            and_(
                *self._metric_event_conditions(
                    metric_events, exposures.c.member, exposures.c.first_exposure, exposures.c.first_exposure, rules,
                    metric.conversion_window_seconds,
                ),
                or_(*conditions),
            ),
        )
        return (
            select(exposures.c.distinct_id, exposures.c.variant, *values)
            .select_from(joined)
            .group_by(exposures.c.distinct_id, exposures.c.variant)
        )

    def _funnel_entity_values(
        self, exposures: CTE, rules: ExposureRules, steps: tuple[EventSource, ...], window: int | None
    ) -> Select:
        """Ordered steps after exposure: each step's earliest event at or after the previous step's,
        under any distinct id of the entity."""
        persons = self._persons_of(exposures)
        previous = select(
            persons.c.distinct_id, persons.c.first_exposure, persons.c.first_exposure.label("reached_at")
        ).cte("funnel_exposed")
        members = exposures.alias("funnel_members")
        reached = []
        for index, step in enumerate(steps):
            step_events = events.alias(f"step_{index}_events")
            conditions = self._metric_event_conditions(
                step_events, members.c.member, previous.c.first_exposure, previous.c.reached_at, rules, window
            )
            previous = (
                select(
                    previous.c.distinct_id,
                    previous.c.first_exposure,
                    func.min(step_events.c.timestamp).label("reached_at"),
                )
                .select_from(
                    previous.join(members, members.c.distinct_id == previous.c.distinct_id).join(
                        step_events, and_(*conditions, self._source_condition(step_events, step))
                    )
                )
                .group_by(previous.c.distinct_id, previous.c.first_exposure)
                .cte(f"funnel_step_{index}")
            )
            reached.append(previous)
        joined = persons
        for step in reached:
            joined = joined.outerjoin(step, step.c.distinct_id == persons.c.distinct_id)
        steps_reached = sum(case((step.c.distinct_id.is_not(None), 1), else_=0) for step in reached)
        return select(
            persons.c.distinct_id,
            persons.c.variant,
            cast(steps_reached, Float).label("value_0"),
            cast(null(), Float).label("value_1"),
        ).select_from(joined)

    async def _variant_totals(self, entities, metric: MetricQuery) -> dict[str, list[float]]:
        """Per variant: [n, then sum and sum_squares (plus the ratio's denominator sums and sum of
        products), or a funnel's count per step] over per-entity rows."""
        value, denominator = entities.c.value_0, entities.c.value_1
        columns = [func.count()]
        if metric.metric_type == "funnel":
            columns += [func.count().filter(value >= index + 1) for index in range(len(metric.sources))]
        else:
            columns += [func.sum(value), func.sum(value * value)]
        if metric.metric_type == "ratio":
            columns += [func.sum(denominator), func.sum(denominator * denominator), func.sum(value * denominator)]
        query = select(entities.c.variant, *columns).group_by(entities.c.variant)
        return {key: [float(total or 0) for total in totals] for key, *totals in (await self.session.execute(query)).all()}

    @staticmethod
    def _aggregates(totals: dict[str, list[float]], metric: MetricQuery) -> dict[str, VariantAggregate]:
        aggregates = {}
        for key, (n, *sums) in totals.items():
            if metric.metric_type == "funnel":
                step_counts = [round(count) for count in sums]
                aggregates[key] = VariantAggregate(
                    key=key, number_of_samples=round(n), sum=float(step_counts[-1]), sum_squares=float(step_counts[-1]),
                    step_counts=step_counts,
                )
                continue
            extra = {}
            if metric.metric_type == "ratio":
                extra = {"denominator_sum": sums[2], "denominator_sum_squares": sums[3], "sum_of_products": sums[4]}
            aggregates[key] = VariantAggregate(key=key, number_of_samples=round(n), sum=sums[0], sum_squares=sums[1], **extra)
        return aggregates

    async def metric_aggregates(self, rules: ExposureRules, metric: MetricQuery) -> dict[str, VariantAggregate]:
        """Per-variant aggregates computed from the events alone (`$multiple` included)."""
        await self._prepare()
        totals = await self._variant_totals(self._entity_values(rules, metric).subquery("entities"), metric)
        return self._aggregates(totals, metric)

    async def materialized_aggregates(
        self, experiment_id: int, slot: str, rules: ExposureRules, metric: MetricQuery
    ) -> dict[str, VariantAggregate]:
        """`metric_aggregates`, from stored per-entity values and per-variant totals brought up to date.

        Only entities that may have changed are recomputed (see `_changed_entities`), and the
        totals move by the difference between those entities' old and new rows, so a call costs
        in proportion to the new events, not to the experiment. A changed definition, an `until`
        moved back, or very many changed entities recompute everything. The row lock serialises
        concurrent refreshes of one metric across server processes.
        """
        await self._prepare()
        state = await self._materialization(experiment_id, slot)
        key = definition_key(rules, metric)
        cursor = (await self.session.execute(select(CurrentCursor()))).scalar_one()
        # Cohort membership moves with person properties and lists, which no event cursor sees.
        by_cohort = any(item.get("type") == "cohort" for item in rules.custom_properties)
        rebuild = by_cohort or (
            state.definition_key != key or state.cursor is None or state.until is None or rules.until < state.until
        )
        changed: list[str] = []
        if not rebuild:
            changed = list((await self.session.execute(self._changed_entities(state, cursor, rules, metric))).scalars())
            changed = await self._with_same_person(changed) if len(changed) <= MAX_ENTITIES_REFRESHED else changed
            rebuild = len(changed) > MAX_ENTITIES_REFRESHED
        if rebuild:
            await self._store_entities(state.id, self._entity_values(rules, metric), replace_all=True)
            await self._analyze_stored_entities()
            state.totals = await self._variant_totals(self._stored_entities(state.id), metric)
        elif changed:
            # The ids go in as a list so the planner knows how few they are.
            before = await self._variant_totals(self._stored_entities(state.id, changed), metric)
            # A merge may have turned two stored entities into one: their rows go, the person's comes back.
            await self._delete_stored_entities(state.id, changed)
            await self._store_entities(state.id, self._entity_values(rules, metric, only=changed), replace_all=False)
            after = await self._variant_totals(self._stored_entities(state.id, changed), metric)
            state.totals = _moved_totals(state.totals or {}, before, after)
        state.definition_key, state.cursor, state.until, state.refreshed_at = key, cursor, rules.until, utcnow()
        await self.session.flush()
        return self._aggregates(state.totals or {}, metric)

    async def _analyze_stored_entities(self) -> None:
        """Refresh PostgreSQL's statistics after a rebuild (it samples this transaction's rows too),
        so later lookups by id know one materialization can hold millions of rows."""
        if self.session.get_bind().dialect.name == "postgresql":
            await self.session.execute(text("ANALYZE results_entity_values"))

    @staticmethod
    def _stored_entities(materialization_id: int, only: list[str] | None = None):
        stored = ResultsEntityValue.__table__
        query = select(stored).where(stored.c.materialization_id == materialization_id)
        if only is not None:
            query = query.where(stored.c.distinct_id.in_(only))
        return query.subquery("entities")

    async def _store_entities(self, materialization_id: int, entities: Select, *, replace_all: bool) -> None:
        """Write per-entity rows: all of them afresh, or upserting the recomputed ones (exposure
        only grows while `until` does not move back, so no stored entity disappears)."""
        stored = ResultsEntityValue.__table__
        statement = insert_on_conflict(self.session, stored)
        if replace_all:
            await self.session.execute(delete(stored).where(stored.c.materialization_id == materialization_id))
        else:
            statement = statement.on_conflict_do_update(
                index_elements=[stored.c.materialization_id, stored.c.distinct_id],
                set_={name: statement.excluded[name] for name in ("variant", "value_0", "value_1")},
            )
        entities = entities.subquery("entities")
        await self.session.execute(
            statement.from_select(
                ["materialization_id", "distinct_id", "variant", "value_0", "value_1"],
                # `WHERE true` keeps SQLite from reading ON CONFLICT as a join constraint.
                select(literal(materialization_id), *entities.c).where(true()),
            )
        )

    async def _materialization(self, experiment_id: int, slot: str) -> ResultsMaterialization:
        """The metric's materialization row, created if new and locked for this transaction."""
        await self.session.execute(
            insert_on_conflict(self.session, ResultsMaterialization.__table__)
            .values(experiment_id=experiment_id, slot=slot)
            .on_conflict_do_nothing(index_elements=["experiment_id", "slot"])
        )
        query = (
            select(ResultsMaterialization)
            .where(ResultsMaterialization.experiment_id == experiment_id, ResultsMaterialization.slot == slot)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(query)).scalar_one()

    async def drop_materializations_except(self, experiment_id: int, slots: set[str]) -> None:
        """Forget the stored values of metrics the experiment no longer has."""
        dropped = select(ResultsMaterialization.id).where(
            ResultsMaterialization.experiment_id == experiment_id, ResultsMaterialization.slot.not_in(slots)
        )
        stored = ResultsEntityValue.__table__
        await self.session.execute(delete(stored).where(stored.c.materialization_id.in_(dropped)))
        await self.session.execute(delete(ResultsMaterialization).where(ResultsMaterialization.id.in_(dropped)))

    async def _delete_stored_entities(self, materialization_id: int, only: list[str]) -> None:
        stored = ResultsEntityValue.__table__
        await self.session.execute(
            delete(stored).where(stored.c.materialization_id == materialization_id, stored.c.distinct_id.in_(only))
        )

    async def _with_same_person(self, distinct_ids: list[str]) -> list[str]:
        """These distinct ids and every other distinct id of their persons: the ids of the entities
        they belong to now, which include the keys of entities merged into them."""
        if not distinct_ids:
            return []
        mine, theirs = merged_ids.alias("mine"), merged_ids.alias("theirs")
        query = (
            select(theirs.c.distinct_id)
            .join(mine, mine.c.person_id == theirs.c.person_id)
            .where(mine.c.project_id == self.project_id, mine.c.distinct_id.in_(distinct_ids))
        )
        return sorted({*distinct_ids, *(await self.session.execute(query)).scalars()})

    def _changed_entities(
        self, state: ResultsMaterialization, cursor: str, rules: ExposureRules, metric: MetricQuery
    ) -> Select:
        """Distinct ids whose entities' stored values may be stale: one of their relevant events
        (merges included: a merge changes which entity events belong to) was committed after the
        stored cursor, or is dated between the stored and the current `until`."""
        names = relevant_event_names(rules, metric)
        scope = [events.c.project_id == self.project_id]
        if names is not None:
            scope.append(events.c.event.in_([*names, *MERGE_EVENTS]))
        committed = select(events.c.distinct_id).where(
            *scope, CommittedBetween(events.c.id, events.c.ingest_txid, literal(state.cursor), literal(cursor))
        )
        if state.until == rules.until:
            return committed.distinct()
        dated = select(events.c.distinct_id).where(
            *scope, events.c.timestamp > state.until, events.c.timestamp <= rules.until
        )
        return union(committed, dated)

    async def exposure_counts(self, rules: ExposureRules) -> dict[str, int]:
        await self._prepare()
        persons = self._persons_of(self._exposures(rules))
        query = select(persons.c.variant, func.count()).group_by(persons.c.variant)
        return {key: n for key, n in (await self.session.execute(query)).all()}

    async def exposed_persons(self, rules: ExposureRules) -> list[str]:
        """One distinct id (the person's key) per exposed person, as results count them."""
        await self._prepare()
        persons = self._persons_of(self._exposures(rules))
        return list((await self.session.execute(select(persons.c.distinct_id))).scalars())

    async def cohort_definitions(self) -> dict[int, dict[str, Any]]:
        """The project's live cohorts: `{id: {"is_static", "properties"}}`."""
        return await cohort_definitions(self.session, self.project_id)

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


