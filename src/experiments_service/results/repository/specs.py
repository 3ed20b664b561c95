"""What a results query asks for: the exposure rules and the metric, as plain values."""

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

FLAG_CALLED_EVENT = "$feature_flag_called"
MULTIPLE_VARIANTS = "$multiple"


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


def definition_key(rules: ExposureRules, metric: MetricQuery) -> str:
    """A hash of everything per-entity values depend on except `until` (which only grows)."""
    definition = {"rules": asdict(replace(rules, until=None)), "metric": asdict(metric)}
    return hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()


def relevant_event_names(rules: ExposureRules, metric: MetricQuery) -> list[str] | None:
    """The event names that can change an entity's values; None when any event can."""
    if any(source.event is None for source in metric.sources):
        return None
    return sorted({rules.custom_event or FLAG_CALLED_EVENT, *(source.event for source in metric.sources)})


NUMERIC_OPERATORS = ("gt", "lt", "gte", "lte")
SUPPORTED_OPERATORS = ("exact", "is_not", "is_set", "is_not_set", "icontains", "not_icontains", *NUMERIC_OPERATORS)

