"""Pure feature-flag evaluation with the PostHog flags server's semantics.

`CompiledFlags` turns a project's flag definitions into immutable evaluation plans once
(filters compiled, variant bounds accumulated, dependencies ordered) so that evaluating a
request is a tight loop over plain data: no I/O, no database, no async.

Choices where the server depends on data we do not evaluate here:
- Cohort filters (`type: cohort`, operator `in` or `not_in`) test the compiled cohorts
  (`flags.cohorts`): dynamic ones against the person properties, static ones against the
  memberships the request context carries. An unknown or deleted cohort never matches.
- A flag that depends, directly or through other flags, on a flag that is missing, deleted
  or part of a cycle evaluates to false with `missing_dependency`. An inactive dependency is
  present and evaluates to false.
- A holdout needs the flag-level identifier; a group flag without its group key in the request
  is not held out (its conditions then report `no_group_type`).
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha1
from typing import Any

from experiments_service.flags.cohorts import CohortMatcher, CohortRules
from experiments_service.flags.hashing import (
    HOLDOUT_PREFIX,
    LONG_SCALE,
    VARIANT_SALT,
    hash01,
    leading_u64,
    truncate_distinct_id,
)
from experiments_service.flags.properties import Matcher, compile_property

__all__ = [
    "CompiledFlags",
    "EvaluationContext",
    "FlagResult",
    "hash01",
    "in_rollout",
    "rollout_threshold",
    "select_variant",
    "variant_bounds",
]

CONDITION_MATCH = "condition_match"
NO_CONDITION_MATCH = "no_condition_match"
OUT_OF_ROLLOUT_BOUND = "out_of_rollout_bound"
NO_GROUP_TYPE = "no_group_type"
SUPER_CONDITION_VALUE = "super_condition_value"
HOLDOUT_CONDITION_VALUE = "holdout_condition_value"
MISSING_DEPENDENCY = "missing_dependency"
FLAG_DISABLED = "flag_disabled"

REASON_DESCRIPTIONS = {
    NO_CONDITION_MATCH: "No matching condition set",
    OUT_OF_ROLLOUT_BOUND: "Out of rollout bound",
    NO_GROUP_TYPE: "No group type",
    SUPER_CONDITION_VALUE: "Super condition value",
    HOLDOUT_CONDITION_VALUE: "Holdout condition value",
    MISSING_DEPENDENCY: "Flag cannot be evaluated due to missing dependency",
    FLAG_DISABLED: "Feature flag is disabled",
}

# Outcomes of one condition set, numbered by the server's reason priority.
_NO_GROUP, _NO_MATCH, _OUT_OF_BOUND, _MATCH = 1, 2, 3, 4
_REASON_OF = {
    _NO_GROUP: NO_GROUP_TYPE,
    _NO_MATCH: NO_CONDITION_MATCH,
    _OUT_OF_BOUND: OUT_OF_ROLLOUT_BOUND,
    _MATCH: CONDITION_MATCH,
}
_EMPTY: Mapping[str, Any] = {}
_UTF8, _SURROGATES = "utf-8", "surrogatepass"


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    """Who is asking: identity, properties and groups of one `/flags` request."""

    distinct_id: str
    person_properties: Mapping[str, Any] = field(default_factory=dict)
    groups: Mapping[str, str] = field(default_factory=dict)
    group_properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hash_key_overrides: Mapping[str, str] = field(default_factory=dict)
    anon_distinct_id: str | None = None
    device_id: str | None = None
    now: datetime | None = None
    # Ids of the static cohorts the person belongs to (dynamic ones are computed from properties).
    cohorts: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class FlagResult:
    """The outcome of one flag for one context, in the server's vocabulary."""

    key: str
    enabled: bool
    variant: str | None
    reason_code: str
    condition_index: int | None
    payload: Any

    @property
    def value(self) -> bool | str:
        return self.variant if self.variant is not None else self.enabled

    @property
    def reason_description(self) -> str:
        if self.reason_code == CONDITION_MATCH:
            return f"Matched condition set {(self.condition_index or 0) + 1}"
        return REASON_DESCRIPTIONS.get(self.reason_code, self.reason_code)


def _group_key(value: Any) -> str | None:
    """A request's group key as hashed: strings as given, integers in decimal."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def rollout_threshold(percentage: Any) -> float | None:
    """A rollout percentage as a threshold in [0, 1]; None when everyone passes (null or 100 %)."""
    if percentage is None:
        return None
    try:
        value = float(percentage)
    except (TypeError, ValueError):
        return 0.0  # an unreadable percentage lets nobody through rather than everybody
    return None if value == 100.0 else value / 100.0


def in_rollout(hashed: float, threshold: float | None) -> bool:
    """Inclusion is `hash01 <= percentage / 100`: equality is included."""
    return threshold is None or hashed <= threshold


def variant_bounds(variants: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, float], ...]:
    """Cumulative upper bounds in stored order, accumulated left to right in float64."""
    cumulative, bounds = 0.0, []
    for variant in variants:
        try:
            cumulative += float(variant.get("rollout_percentage") or 0) / 100.0
        except (TypeError, ValueError):
            pass  # an unreadable share owns no range
        bounds.append((variant.get("key"), cumulative))
    return tuple(bounds)


def select_variant(hashed: float, bounds: Sequence[tuple[str, float]]) -> str | None:
    """The first variant whose bound is strictly greater than the hash; None past the last."""
    for key, bound in bounds:
        if hashed < bound:
            return key
    return None


def _dependency_matches(expected: Any, actual: bool | str) -> bool:
    """`flag_evaluates_to`: true matches any enabled value, false only false, a string its variant."""
    if isinstance(actual, str):
        return expected if isinstance(expected, bool) else actual == expected
    return isinstance(expected, bool) and actual == expected


class _Condition:
    """One condition set, compiled: filters, rollout threshold, override and aggregation."""

    __slots__ = (
        "index", "filters", "dependencies", "threshold", "variant", "group", "grouped", "needs_cohort",
        "cohorts", "plain", "matchers", "matches",
    )  # fmt: skip

    def __init__(
        self,
        index: int,
        raw: Mapping[str, Any],
        flag_aggregation: int | None,
        group_names: Mapping[int, str],
        variant_keys: Collection[str],
        resolve: "_Resolver",
    ) -> None:
        self.index = index
        aggregation = raw["aggregation_group_type_index"] if "aggregation_group_type_index" in raw else flag_aggregation
        self.grouped = aggregation is not None
        self.group = group_names.get(_as_index(aggregation)) if self.grouped else None
        filters: list[tuple[str | None, Matcher]] = []
        dependencies: list[tuple[int, Any]] = []
        cohorts: list[tuple[CohortMatcher, bool]] = []
        for prop in _list(raw.get("properties")):
            if not isinstance(prop, Mapping):
                continue
            kind = prop.get("type")
            if kind == "cohort":
                negated = (prop.get("operator") == "not_in") != (prop.get("negation") is True)
                cohorts.append((resolve.cohorts.matcher(prop.get("value")), negated))
            elif kind == "flag":
                dependencies.append((resolve(prop), prop.get("value")))
            else:
                source = self.group
                if kind == "group" and prop.get("group_type_index") is not None:
                    source = group_names.get(_as_index(prop.get("group_type_index")), "")
                elif kind != "group" and not self.grouped:
                    source = None
                filters.append((source, compile_property(prop)))
        self.filters = tuple(filters)
        self.dependencies = tuple(dependencies)
        self.cohorts = tuple(cohorts)
        self.needs_cohort = bool(cohorts)
        # Person filters only, bucketed by person: the common case, checked inline by the walk.
        self.plain = not self.grouped and not dependencies and not self.needs_cohort and all(
            source is None for source, _ in filters
        )
        self.matchers = tuple(matcher for _, matcher in filters)
        self.threshold = rollout_threshold(raw.get("rollout_percentage"))
        override = raw.get("variant")
        self.variant = override if isinstance(override, str) and override in variant_keys else None
        self.matches: dict[str | None, FlagResult] = {}

    def properties_match(
        self, ctx: EvaluationContext, values: list[Any], now: datetime | None
    ) -> bool:
        for member, negated in self.cohorts:
            if member(ctx.person_properties, now, ctx.cohorts) == negated:
                return False
        for target, expected in self.dependencies:
            if target < 0 or not _dependency_matches(expected, values[target]):
                return False
        for source, matcher in self.filters:
            if source is None:
                props = ctx.person_properties
            else:
                props = ctx.group_properties.get(source, _EMPTY) if source else _EMPTY
            if not matcher(props, now):
                return False
        return True


class _Resolver:
    """Resolves `flag_evaluates_to` keys (flag key, or id as int or string) to plan positions."""

    def __init__(self, by_key: Mapping[str, int], by_id: Mapping[str, int], cohorts: CohortRules) -> None:
        self.by_key, self.by_id, self.cohorts = by_key, by_id, cohorts

    def __call__(self, prop: Mapping[str, Any]) -> int:
        reference = prop.get("key")
        if prop.get("operator", "flag_evaluates_to") != "flag_evaluates_to" or reference is None:
            return -1
        if isinstance(reference, str) and reference in self.by_key:
            return self.by_key[reference]
        return self.by_id.get(str(reference), -1)


def _mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object from a definition, or an empty one when the stored value has another shape."""
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_index(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _Flag:
    """One flag's evaluation plan."""

    __slots__ = (
        "key", "definition", "position", "active", "runtime", "tags", "continuity", "device_bucketing",
        "group", "grouped", "conditions", "bounds", "payloads", "holdout", "early_exit", "enrollment",
        "super_condition", "super_keys", "dependencies", "missing_dependency", "prefix", "results",
        "needs_preamble", "misses", "has_dependents",
    )  # fmt: skip

    def __init__(self, definition: Mapping[str, Any], position: int) -> None:
        self.definition = definition
        self.position = position
        self.key: str = definition["key"]
        self.prefix = f"{self.key}."
        self.active = bool(definition.get("active", True))
        self.runtime = definition.get("evaluation_runtime") or "all"
        tags = _list(definition.get("evaluation_tags")) or _list(definition.get("evaluation_contexts"))
        self.tags = frozenset(tag for tag in tags if isinstance(tag, str))
        self.continuity = bool(definition.get("ensure_experience_continuity"))
        self.dependencies: list[int] = []
        self.missing_dependency = False
        self.has_dependents = False
        self.results: dict[tuple, FlagResult] = {}

    def compile(self, group_names: Mapping[int, str], resolve: _Resolver) -> None:
        """Parse `filters` once; dependencies resolve against the whole project."""
        filters = _mapping(self.definition.get("filters"))
        bucketing = self.definition.get("bucketing_identifier") or filters.get("bucketing_identifier")
        self.device_bucketing = bucketing == "device_id"
        aggregation = _as_index(filters.get("aggregation_group_type_index"))
        self.grouped = aggregation is not None
        self.group = group_names.get(aggregation) if self.grouped else None
        variants = [v for v in _list(_mapping(filters.get("multivariate")).get("variants")) if isinstance(v, Mapping)]
        self.bounds = variant_bounds(variants)
        variant_keys = frozenset(key for key, _ in self.bounds)
        self.payloads = _mapping(filters.get("payloads"))
        if "groups" in filters:
            raw_groups = [g for g in _list(filters.get("groups")) if isinstance(g, Mapping)]
        else:
            legacy = {
                "properties": _list(filters.get("properties")),
                "rollout_percentage": self.definition.get("rollout_percentage"),
            }
            raw_groups = [legacy]
        self.conditions = tuple(
            _Condition(i, g, aggregation, group_names, variant_keys, resolve) for i, g in enumerate(raw_groups)
        )
        self.dependencies = sorted({t for c in self.conditions for t, _ in c.dependencies})
        self.missing_dependency = any(t < 0 for c in self.conditions for t, _ in c.dependencies)
        self.early_exit = bool(filters.get("early_exit"))
        self.enrollment = filters.get("feature_enrollment") is True
        super_groups = [g for g in _list(filters.get("super_groups")) if isinstance(g, Mapping)]
        self.super_condition = (
            _Condition(0, {**super_groups[0], "aggregation_group_type_index": None}, None, group_names,
                       variant_keys, resolve) if super_groups else None
        )  # fmt: skip
        self.super_keys = tuple(
            p.get("key") for p in _list(super_groups[0].get("properties")) if isinstance(p, Mapping)
        ) if super_groups else ()  # fmt: skip
        self.holdout = self._holdout(filters)

    def prepare_results(self) -> None:
        """Build every result a condition loop can return, so evaluation only looks them up."""
        self.needs_preamble = bool(
            self.missing_dependency or self.continuity or self.device_bucketing or self.enrollment
            or self.super_condition is not None or self.holdout is not None
        )  # fmt: skip
        slots = [None, *range(max(len(self.conditions), 1))]
        self.misses = {
            outcome: [self.result(False, None, _REASON_OF[outcome], index) for index in slots]
            for outcome in (_NO_GROUP, _NO_MATCH, _OUT_OF_BOUND)
        }
        gate = (self.super_condition,) if self.super_condition is not None else ()
        for condition in (*self.conditions, *gate):
            for variant in (None, *(key for key, _ in self.bounds)):
                condition.matches[variant] = self.result(True, variant, CONDITION_MATCH, condition.index)

    @staticmethod
    def _holdout(filters: Mapping[str, Any]) -> tuple[str, float | None] | None:
        """`(variant, threshold)` of the experiment holdout; threshold None holds out everyone."""
        holdout = filters.get("holdout")
        if isinstance(holdout, Mapping) and None not in (holdout.get("id"), holdout.get("exclusion_percentage")):
            try:
                percentage = min(max(float(holdout["exclusion_percentage"]), 0.0), 100.0)
            except (TypeError, ValueError):
                return None
            return f"holdout-{holdout['id']}", None if percentage == 100.0 else percentage / 100.0
        legacy = filters.get("holdout_groups")
        if isinstance(legacy, list) and legacy and isinstance(legacy[0], Mapping) and not legacy[0].get("properties"):
            variant = legacy[0].get("variant")
            return (variant if isinstance(variant, str) else "holdout"), rollout_threshold(
                legacy[0].get("rollout_percentage")
            )
        return None

    def result(self, enabled: bool, variant: str | None, reason: str, index: int | None) -> FlagResult:
        """Results are immutable and few per flag, so they are built once and shared."""
        signature = (enabled, variant, reason, index)
        cached = self.results.get(signature)
        if cached is None:
            payload = self.payloads.get(variant if variant is not None else "true") if enabled else None
            cached = self.results[signature] = FlagResult(self.key, enabled, variant, reason, index, payload)
        return cached

    def served_to(self, runtime: str | None, contexts: Collection[str] | None) -> bool:
        if runtime not in (None, "all") and self.runtime not in ("all", runtime):
            return False
        return not (self.tags and contexts and self.tags.isdisjoint(contexts))

    def evaluate(self, ctx: EvaluationContext, distinct_id: str, values: list[Any]) -> FlagResult:
        """The server's order: dependencies, early access, holdout, then condition sets in stored order."""
        if self.needs_preamble:
            decided = self._preamble(ctx, distinct_id, values)
            if decided is not None:
                return decided
            distinct_id = self._identifier(ctx, distinct_id)  # type: ignore[assignment]
        return self._walk(self.conditions, ctx, ctx.person_properties, ctx.now, distinct_id, values)

    def _walk(
        self,
        conditions: tuple[_Condition, ...],
        ctx: EvaluationContext,
        person: Mapping[str, Any],
        now: datetime | None,
        identifier: str | None,
        values: list[Any],
    ) -> FlagResult:
        """First matching set wins; otherwise the highest-priority reason seen (later sets win ties).

        This is the hot path of `/flags`: results are looked up, never built, and the rollout
        hash is computed at most once per bucketing identifier.
        """
        prefix = self.prefix
        best, slot = _NO_GROUP, 0
        hashed_identifier, hashed = None, 0.0
        for condition in conditions:
            bucketing = identifier
            if condition.plain:
                matched = True
                for matcher in condition.matchers:
                    if not matcher(person, now):
                        matched = False
                        break
            else:
                if condition.grouped:
                    bucketing = _group_key(ctx.groups.get(condition.group)) if condition.group else None
                    if bucketing is None:
                        if best == _NO_GROUP:
                            slot = condition.index + 1
                        continue
                matched = condition.properties_match(ctx, values, now)
            if not matched:
                if best <= _NO_MATCH:
                    best, slot = _NO_MATCH, condition.index + 1
                continue
            if bucketing is not None:
                threshold = condition.threshold
                if threshold is not None and bucketing != hashed_identifier:
                    # hash01(prefix, bucketing), inlined: this runs for every flag of every request.
                    # An empty identifier short-circuits to 0.0, as on the server.
                    hashed_identifier, hashed = bucketing, (
                        (leading_u64(sha1((prefix + bucketing).encode(_UTF8, _SURROGATES)).digest())[0] >> 4)
                        / LONG_SCALE if bucketing else 0.0
                    )  # fmt: skip
                if threshold is None or in_rollout(hashed, threshold):
                    variant = condition.variant
                    if variant is None and self.bounds:
                        variant_hash = hash01(prefix, bucketing, VARIANT_SALT) if bucketing else 0.0
                        variant = select_variant(variant_hash, self.bounds)
                    return condition.matches[variant]
            # A rollout miss; device bucketing without a device id is the server's rollout miss too.
            best, slot = _OUT_OF_BOUND, condition.index + 1
            if self.early_exit:
                break
        return self.misses[best][slot]

    def _identifier(self, ctx: EvaluationContext, distinct_id: str) -> str | None:
        """Person bucketing: stored override > anonymous id > distinct id, or the device id."""
        if self.continuity:
            return ctx.hash_key_overrides.get(self.key) or ctx.anon_distinct_id or distinct_id
        if self.device_bucketing:
            return ctx.device_id or _group_key(ctx.person_properties.get("$device_id"))
        return distinct_id

    def _preamble(self, ctx: EvaluationContext, distinct_id: str, values: list[Any]) -> FlagResult | None:
        """Missing dependencies, early access and holdouts decide before any condition set."""
        if self.missing_dependency:
            return self.result(False, None, MISSING_DEPENDENCY, None)
        person = ctx.person_properties
        enrollment_key = f"$feature_enrollment/{self.key}"
        if self.enrollment and enrollment_key in person:
            enrolled = person[enrollment_key]
            return self.result(enrolled is True or enrolled == "true", None, SUPER_CONDITION_VALUE, 0)
        if self.super_condition is not None and any(key in person for key in self.super_keys):
            identifier = self._identifier(ctx, distinct_id)
            gate = self._walk((self.super_condition,), ctx, person, ctx.now, identifier, values)
            return self.result(gate.enabled, None, SUPER_CONDITION_VALUE, 0)
        if self.holdout is not None and self._holdout_member(ctx, distinct_id):
            return self.result(True, self.holdout[0], HOLDOUT_CONDITION_VALUE, None)
        return None

    def _holdout_member(self, ctx: EvaluationContext, distinct_id: str) -> bool:
        if self.grouped:
            identifier = _group_key(ctx.groups.get(self.group)) if self.group else None
        elif self.device_bucketing:
            identifier = ctx.device_id or _group_key(ctx.person_properties.get("$device_id"))
        else:
            identifier = distinct_id
        if identifier is None:
            return False
        threshold = self.holdout[1]
        return threshold is None or in_rollout(hash01(HOLDOUT_PREFIX, identifier), threshold)


class CompiledFlags:
    """Immutable, pre-processed definitions of one project (built once, evaluated many times)."""

    def __init__(
        self,
        flags: Sequence[Mapping[str, Any]],
        group_type_mapping: Mapping[int, str] | None = None,
        cohorts: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> None:
        group_names = {
            index: name
            for raw_index, name in (group_type_mapping or {}).items()
            if (index := _as_index(raw_index)) is not None
        }
        live = [f for f in flags if isinstance(f.get("key"), str) and not f.get("deleted")]
        plans = [_Flag(definition, position) for position, definition in enumerate(live)]
        by_key = {plan.key: plan.position for plan in plans}
        by_id = {str(plan.definition["id"]): plan.position for plan in plans if plan.definition.get("id") is not None}
        resolve = _Resolver(by_key, by_id, CohortRules(cohorts))
        for plan in plans:
            plan.compile(group_names, resolve)
        for plan in plans:
            for target in plan.dependencies:
                if target >= 0:
                    plans[target].has_dependents = True
        self._order = tuple(plan for plan in self._dependency_order(plans) if plan.active)
        for plan in plans:
            plan.prepare_results()
        # (key, walk, conditions, full evaluation or None, position to record for dependents or None)
        self._steps = tuple(
            (plan.key, plan._walk, plan.conditions, plan.evaluate if plan.needs_preamble else None,
             plan.position if plan.has_dependents else None)
            for plan in self._order
        )  # fmt: skip
        self._by_key = {plan.key: plan for plan in plans}
        self._plans = plans
        self._size = len(plans)

    @staticmethod
    def _dependency_order(plans: list[_Flag]) -> tuple[_Flag, ...]:
        """Dependencies first; flags on a cycle, or depending on one, are missing a dependency."""
        order: list[_Flag] = []
        state: dict[int, int] = {}  # 1 = visiting, 2 = done

        def visit(plan: _Flag) -> bool:
            """Place `plan` after its dependencies; False when it sits on or behind a cycle."""
            mark = state.get(plan.position)
            if mark == 2:
                return not plan.missing_dependency
            if mark == 1:
                return False
            state[plan.position] = 1
            healthy = True
            for target in plan.dependencies:
                healthy = visit(plans[target]) and healthy
            if not healthy:
                plan.missing_dependency = True
            state[plan.position] = 2
            order.append(plan)
            return not plan.missing_dependency

        for plan in plans:
            visit(plan)
        return tuple(order)

    def flag(self, key: str) -> Mapping[str, Any] | None:
        plan = self._by_key.get(key)
        return plan.definition if plan is not None else None

    def evaluate(
        self,
        ctx: EvaluationContext,
        keys: Collection[str] | None = None,
        runtime: str | None = None,
        evaluation_contexts: Collection[str] | None = None,
    ) -> dict[str, FlagResult]:
        """Evaluate the served flags (or only `keys`), dependencies first."""
        distinct_id = ctx.distinct_id if isinstance(ctx.distinct_id, str) else str(ctx.distinct_id)
        distinct_id = truncate_distinct_id(distinct_id)
        values: list[Any] = [False] * self._size  # inactive flags stay false for their dependents
        if keys is None and runtime in (None, "all") and not evaluation_contexts:
            return self._evaluate_all(ctx, distinct_id, values)
        if keys is not None and not isinstance(keys, set | frozenset):
            keys = set(keys)
        results: dict[str, FlagResult] = {}
        for plan in self._order if keys is None else self._needed(keys):
            result = plan.evaluate(ctx, distinct_id, values)
            if plan.has_dependents:
                values[plan.position] = result.variant or result.enabled
            if plan.served_to(runtime, evaluation_contexts) and (keys is None or plan.key in keys):
                results[plan.key] = result
        return results

    def _evaluate_all(self, ctx: EvaluationContext, distinct_id: str, values: list[Any]) -> dict[str, FlagResult]:
        """Every active flag, no filters: the usual `/flags` request, kept to the bare loop."""
        results: dict[str, FlagResult] = {}
        person, now = ctx.person_properties, ctx.now
        for key, walk, conditions, preamble, position in self._steps:
            if preamble is None:
                result = walk(conditions, ctx, person, now, distinct_id, values)
            else:
                result = preamble(ctx, distinct_id, values)
            if position is not None:
                values[position] = result.variant or result.enabled
            results[key] = result
        return results

    def _needed(self, keys: Collection[str]) -> list[_Flag]:
        """Requested flags and everything they depend on, in dependency order."""
        needed: set[int] = set()
        pending = [self._by_key[key] for key in keys if key in self._by_key]
        while pending:
            plan = pending.pop()
            if plan.position not in needed:
                needed.add(plan.position)
                pending.extend(self._plans[target] for target in plan.dependencies)
        return [plan for plan in self._order if plan.position in needed]
