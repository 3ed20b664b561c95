"""Cohort membership for flag evaluation, pure like the rest of it.

A dynamic cohort is a property group (`{"type": "AND"|"OR", "values": [...]}`, nested groups
allowed) over person properties with the flag matcher's operators; `negation: true` inverts an
entry, and an entry may name another cohort. A static cohort is a list of distinct ids, so its
membership comes with the request context (`EvaluationContext.cohorts`, looked up once per
request). Entries this service cannot evaluate (behavioral filters), unknown or deleted cohorts
and reference loops never match.
"""

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from experiments_service.flags.properties import compile_property

# (person properties, now, ids of the static cohorts the person is in) -> member?
CohortMatcher = Callable[[Mapping[str, Any], datetime | None, frozenset[int]], bool]


def _never(props: Mapping[str, Any], now: datetime | None, static: frozenset[int]) -> bool:
    return False


def _always(props: Mapping[str, Any], now: datetime | None, static: frozenset[int]) -> bool:
    return True


def cohort_id(value: Any) -> int | None:
    """A cohort reference's id (`value` of a `type: cohort` filter), as an int."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def is_property_group(entry: Any) -> bool:
    return isinstance(entry, Mapping) and ("values" in entry or entry.get("type") in ("AND", "OR"))


def referenced_cohorts(group: Any) -> set[int]:
    """Cohort ids named anywhere in a property group or a list of filters."""
    found: set[int] = set()
    entries = group.get("values") if isinstance(group, Mapping) else group
    for entry in entries if isinstance(entries, list) else []:
        if is_property_group(entry):
            found |= referenced_cohorts(entry)
        elif isinstance(entry, Mapping) and entry.get("type") == "cohort" and cohort_id(entry.get("value")) is not None:
            found.add(cohort_id(entry.get("value")))  # type: ignore[arg-type]
    return found


def person_property_keys(group: Any) -> set[str]:
    """Person property keys a property group reads (its nested cohorts not included)."""
    keys: set[str] = set()
    entries = group.get("values") if isinstance(group, Mapping) else None
    for entry in entries if isinstance(entries, list) else []:
        if is_property_group(entry):
            keys |= person_property_keys(entry)
        elif isinstance(entry, Mapping) and entry.get("type") in (None, "person") and entry.get("key") is not None:
            keys.add(str(entry["key"]))
    return keys


class CohortRules:
    """Compiled membership tests of one project's cohorts, by id.

    `definitions` maps a cohort id to `{"is_static": bool, "properties": <property group>}`.
    """

    def __init__(self, definitions: Mapping[int, Mapping[str, Any]] | None = None) -> None:
        self.definitions = definitions or {}
        self._compiled: dict[int, CohortMatcher] = {}

    def matcher(self, identifier: Any, visiting: frozenset[int] = frozenset()) -> CohortMatcher:
        key = cohort_id(identifier)
        if key is None or key not in self.definitions or key in visiting:
            return _never
        if key not in self._compiled:
            definition = self.definitions[key]
            if definition.get("is_static"):
                self._compiled[key] = lambda props, now, static: key in static
            else:
                self._compiled[key] = self._group(definition.get("properties"), visiting | {key})
        return self._compiled[key]

    def _group(self, group: Any, visiting: frozenset[int]) -> CohortMatcher:
        if not isinstance(group, Mapping) or not group:
            return _always  # PostHog's empty property group matches everyone
        entries = group.get("values")
        if group.get("type") not in ("AND", "OR") or not isinstance(entries, list):
            return _never
        parts = tuple(self._entry(entry, visiting) for entry in entries)
        if not parts:
            return _always
        if group["type"] == "AND":
            return lambda props, now, static: all(part(props, now, static) for part in parts)
        return lambda props, now, static: any(part(props, now, static) for part in parts)

    def _entry(self, entry: Any, visiting: frozenset[int]) -> CohortMatcher:
        if is_property_group(entry):
            return self._group(entry, visiting)
        if not isinstance(entry, Mapping):
            return _never
        kind = entry.get("type")
        if kind == "cohort":
            test = self.matcher(entry.get("value"), visiting)
        elif kind in (None, "person"):
            matcher = compile_property(entry)

            def test(props, now, static, matcher=matcher):
                return matcher(props, now)
        else:
            return _never
        if entry.get("negation") is True:
            return lambda props, now, static: not test(props, now, static)
        return test
