"""Experiment metrics: shape validation, uuid assignment, fingerprints and display ordering."""

import copy
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from experiments_service.errors import ValidationError

LEGACY_METRIC_KINDS = ("ExperimentTrendsQuery", "ExperimentFunnelsQuery")
MAX_REPORTED_SCHEMA_ERRORS = 15


class _Node(BaseModel):
    model_config = ConfigDict(extra="allow")


class _SourceNode(_Node):
    # Property filters are a list; PostHog refuses the `{key: {value, operator}}` dict shape.
    properties: list[Any] | None = None


class _EventsNode(_SourceNode):
    kind: Literal["EventsNode"]
    event: str | None = None


class _ActionsNode(_SourceNode):
    kind: Literal["ActionsNode"]
    id: int


class _DataWarehouseNode(_SourceNode):
    kind: Literal["ExperimentDataWarehouseNode"]
    table_name: str


_Source = Annotated[_EventsNode | _ActionsNode | _DataWarehouseNode, Field(discriminator="kind")]


class _MeanMetric(_Node):
    metric_type: Literal["mean"]
    source: _Source


class _FunnelMetric(_Node):
    metric_type: Literal["funnel"]
    series: list[_Source]


class _RatioMetric(_Node):
    metric_type: Literal["ratio"]
    numerator: _Source
    denominator: _Source


class _RetentionMetric(_Node):
    metric_type: Literal["retention"]
    start_event: _Source
    completion_event: _Source
    retention_window_start: int = Field(ge=0)
    retention_window_end: int = Field(ge=0)
    retention_window_unit: Literal["second", "minute", "hour", "day", "week", "month"]


# One model per metric type, so a problem's `loc` starts at the metric's own field (`('numerator',)`).
_METRIC_SHAPES: dict[str, type[_Node]] = {
    "mean": _MeanMetric, "funnel": _FunnelMetric, "ratio": _RatioMetric, "retention": _RetentionMetric,
}
_METRIC_SHAPE = TypeAdapter(
    Annotated[_MeanMetric | _FunnelMetric | _RatioMetric | _RetentionMetric, Field(discriminator="metric_type")]
)
# Fields that do not change a metric's results (PostHog's fingerprint ignores the same ones).
FINGERPRINT_IGNORED_FIELDS = ("uuid", "name", "kind", "fingerprint", "only_count_matured_users")


def is_legacy_metric(metric: Any) -> bool:
    return isinstance(metric, dict) and metric.get("kind") in LEGACY_METRIC_KINDS


def validate_metric_list(value: Any, attr: str) -> list[dict[str, Any]]:
    """Check a `metrics`/`metrics_secondary` list (reference messages; user input never echoed)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError("Metrics must be a list", attr=attr)
    for index, metric in enumerate(value):
        validate_metric(metric, index, attr)
    return value


def validate_metric(metric: Any, index: int, attr: str) -> None:
    prefix = f"Invalid metric at index {index}:"
    if not isinstance(metric, dict):
        raise ValidationError(f"{prefix} must be a dict", attr=attr)
    kind = metric.get("kind")
    if kind in LEGACY_METRIC_KINDS:
        raise ValidationError(
            f"{prefix} legacy metric kind '{kind}' is no longer supported for new experiments. "
            "Use 'ExperimentMetric' instead.",
            attr=attr,
        )
    if kind != "ExperimentMetric":
        raise ValidationError(f"{prefix} metric kind must be 'ExperimentMetric'", attr=attr)
    if metric.get("metric_type") == "funnel" and not metric.get("series"):
        raise ValidationError(
            f"{prefix} funnel metrics require at least one step. "
            "The experiment exposure event is added as the initial step automatically.",
            attr=attr,
        )
    shape = _METRIC_SHAPES.get(metric.get("metric_type"))
    try:
        if shape is None:
            _METRIC_SHAPE.validate_python(metric)
        else:
            shape.model_validate(metric)
    except PydanticValidationError as error:
        # Pydantic's own rendering (`'loc': ('numerator',), 'msg': 'Field required'`), without the input.
        problems = [
            {"type": problem["type"], "loc": tuple(problem["loc"]), "msg": problem["msg"]}
            for problem in error.errors(include_url=False, include_input=False, include_context=False)
        ][:MAX_REPORTED_SCHEMA_ERRORS]
        raise ValidationError(f"{prefix} {problems}.", attr=attr) from None


def _sources(metric: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("source", "numerator", "denominator", "start_event", "completion_event"):
        if isinstance(metric.get(key), dict):
            yield metric[key]
    for step in metric.get("series") or []:
        if isinstance(step, dict):
            yield step


def referenced_event_names(metrics: Iterable[dict[str, Any]]) -> list[str]:
    """Event names of every EventsNode, first-seen order (for the event-definition check)."""
    names: list[str] = []
    for metric in metrics:
        for node in _sources(metric):
            event = node.get("event")
            if node.get("kind") == "EventsNode" and isinstance(event, str) and event not in names:
                names.append(event)
    return names


def referenced_action_ids(metrics: Iterable[dict[str, Any]]) -> list[int]:
    ids: list[int] = []
    for metric in metrics:
        for node in _sources(metric):
            if node.get("kind") == "ActionsNode" and node.get("id") not in ids:
                ids.append(node.get("id"))
    return ids


def assign_uuids(
    primary: list[dict[str, Any]], secondary: list[dict[str, Any]], reserved: Iterable[str] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Copies of both lists where every metric has a uuid unique across both and `reserved`.

    The first occurrence keeps its uuid; later duplicates and missing/empty ones get fresh ones.
    """
    seen = set(reserved)
    result: list[list[dict[str, Any]]] = []
    for metrics in (primary, secondary):
        assigned = []
        for metric in metrics:
            metric = copy.deepcopy(metric)
            if not isinstance(metric.get("uuid"), str) or not metric["uuid"] or metric["uuid"] in seen:
                metric["uuid"] = str(uuid.uuid4())
            seen.add(metric["uuid"])
            assigned.append(metric)
        result.append(assigned)
    return result[0], result[1]


def _without_empty_breakdowns(metric: dict[str, Any]) -> None:
    """A `breakdownFilter` with no breakdowns is the same metric as none at all."""
    breakdown_filter = metric.get("breakdownFilter", "absent")
    if breakdown_filter is None:
        metric.pop("breakdownFilter")
    elif isinstance(breakdown_filter, dict) and not breakdown_filter.get("breakdowns"):
        rest = {key: value for key, value in breakdown_filter.items() if key != "breakdowns"}
        if rest:
            metric["breakdownFilter"] = rest
        else:
            metric.pop("breakdownFilter")


def fingerprint(
    metric: dict[str, Any],
    *,
    start_date: datetime | None,
    stats_config: dict[str, Any] | None,
    exposure_criteria: dict[str, Any] | None,
    only_count_matured_users: bool,
    excluded_variants: list[str] | None,
) -> str:
    """SHA-256 over everything that changes a metric's results, byte for byte PostHog's.

    Compact JSON with sorted keys of the metric (minus `FINGERPRINT_IGNORED_FIELDS`), the UTC
    start date, the stats method (bayesian by default) and, only when set, the exposure
    criteria, `only_count_matured_users` and the sorted excluded variants; so stored results
    and PostHog's own hashes match for the same experiment.
    """
    definition = copy.deepcopy(metric)
    for field in FINGERPRINT_IGNORED_FIELDS:
        definition.pop(field, None)
    _without_empty_breakdowns(definition)
    payload: dict[str, Any] = {
        "metric": definition,
        "start_date": start_date.astimezone(UTC).isoformat() if isinstance(start_date, datetime) else start_date,
        "stats_method": (stats_config or {}).get("method") or "bayesian",
    }
    if exposure_criteria:
        payload["exposure_criteria"] = exposure_criteria
    if only_count_matured_users:
        payload["only_count_matured_users"] = True
    if excluded_variants:
        payload["excluded_variants"] = sorted(set(excluded_variants))
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def ordered_uuids(requested: list[Any] | None, uuids: list[str]) -> list[str] | None:
    """The display order (the reference rule): every metric uuid exactly once.

    Requested uuids that are metrics of the experiment come first, in the order sent, each once;
    uuids that are not (never were, or were removed) are dropped; the metrics not mentioned
    follow in list order. `null` with no metrics stays `null`.
    """
    if requested is None and not uuids:
        return None
    kept = [item for item in dict.fromkeys(requested or []) if item in uuids]
    return kept + [item for item in uuids if item not in kept]
