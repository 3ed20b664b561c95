"""SQL constructs compiled differently for PostgreSQL and SQLite, and event-property conditions."""

from typing import Any

from sqlalchemy import Boolean, ColumnElement, Float, String, Text, cast, literal, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from experiments_service.models.base import UTCDateTime
from experiments_service.results.repository.specs import NUMERIC_OPERATORS


class PlusSeconds(FunctionElement):
    """`timestamp + N seconds`, exact to the microsecond on both databases."""

    type = UTCDateTime()
    inherit_cache = True
    name = "plus_seconds"


@compiles(PlusSeconds)
def _plus_seconds_postgresql(element, compiler, **kw):
    timestamp, seconds = list(element.clauses)
    return f"({compiler.process(timestamp, **kw)} + make_interval(secs => {compiler.process(seconds, **kw)}))"


@compiles(PlusSeconds, "sqlite")
def _plus_seconds_sqlite(element, compiler, **kw):
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff'; whole seconds keep the fraction untouched.
    timestamp, seconds = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(strftime('%Y-%m-%d %H:%M:%S', {timestamp}, '+' || {seconds} || ' seconds') || substr({timestamp}, 20))"


class NumericProperty(FunctionElement):
    """A JSON property as a float when it is a JSON number, else NULL (never a cast error)."""

    type = Float()
    inherit_cache = True
    name = "numeric_property"


@compiles(NumericProperty)
def _numeric_property_postgresql(element, compiler, **kw):
    column, key = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(CASE WHEN json_typeof({column} -> {key}) = 'number' THEN ({column} ->> {key})::float8 END)"


@compiles(NumericProperty, "sqlite")
def _numeric_property_sqlite(element, compiler, **kw):
    column, key = list(element.clauses)
    path = compiler.process(literal('$."' + key.value.replace('"', '\\"') + '"'), **kw)
    column = compiler.process(column, **kw)
    return f"(CASE WHEN json_type({column}, {path}) IN ('integer', 'real') THEN json_extract({column}, {path}) END)"


def numeric_property(column, key: str) -> NumericProperty:
    return NumericProperty(column, literal(key))


class CurrentCursor(FunctionElement):
    """Which events this statement sees, as text: the PostgreSQL snapshot, or SQLite's last event id."""

    type = Text()
    inherit_cache = True
    name = "current_cursor"


@compiles(CurrentCursor)
def _current_cursor_postgresql(element, compiler, **kw):
    return "pg_current_snapshot()::text"


@compiles(CurrentCursor, "sqlite")
def _current_cursor_sqlite(element, compiler, **kw):
    return "CAST((SELECT coalesce(max(id), 0) FROM events) AS TEXT)"


class CommittedBetween(FunctionElement):
    """The event row was committed after the `before` cursor and is seen by the `after` one (see
    `CurrentCursor`): arguments are the row's id and transaction id, then the two cursors.

    PostgreSQL assigns ids before commit, so ids do not order commits: the row's inserting
    transaction is checked against both snapshots instead. SQLite has one writer at a time, so
    its ids do.
    """

    type = Boolean()
    inherit_cache = True
    name = "committed_between"


@compiles(CommittedBetween)
def _committed_between_postgresql(element, compiler, **kw):
    _, txid, before, after = (compiler.process(clause, **kw) for clause in element.clauses)
    before, after = f"CAST({before} AS pg_snapshot)", f"CAST({after} AS pg_snapshot)"
    return (
        f"({txid} >= pg_snapshot_xmin({before})::text::bigint AND {txid} < pg_snapshot_xmax({after})::text::bigint"
        f" AND NOT pg_visible_in_snapshot({txid}::text::xid8, {before})"
        f" AND pg_visible_in_snapshot({txid}::text::xid8, {after}))"
    )


@compiles(CommittedBetween, "sqlite")
def _committed_between_sqlite(element, compiler, **kw):
    event_id, _, before, after = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({event_id} > CAST({before} AS INTEGER) AND {event_id} <= CAST({after} AS INTEGER))"


def property_condition(column, condition: dict[str, Any]) -> ColumnElement[bool]:
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


class TruncateTo(FunctionElement):
    """A timestamp truncated to the start of its UTC day or hour."""

    type = UTCDateTime()
    inherit_cache = True
    name = "truncate_to"


@compiles(TruncateTo)
def _truncate_postgresql(element, compiler, **kw):
    unit, timestamp = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"date_trunc({unit}, {timestamp}, 'UTC')"


@compiles(TruncateTo, "sqlite")
def _truncate_sqlite(element, compiler, **kw):
    unit, timestamp = list(element.clauses)
    pattern = "%Y-%m-%d 00:00:00.000000" if unit.value == "day" else "%Y-%m-%d %H:00:00.000000"
    return f"strftime('{pattern}', {compiler.process(timestamp, **kw)})"
