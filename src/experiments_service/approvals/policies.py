"""What a flag change asks for, and whether an approval policy's conditions cover it.

Pure functions over plain data, so detection and condition rules are testable without a database.

Actions detected from a flag's state before the change and the fields that change:

* `feature_flag.enable`: `active` goes from false to true (launch, resume, activating a flag).
* `feature_flag.disable`: `active` goes from true to false (pause, deactivating a flag).
* `feature_flag.update`: the effective rollout percentage differs at one or more of the paths
  `groups[i]`, `super_groups[i]`, `holdout_groups[i]` and `multivariate.variants[i]`
  (ship_variant, split edits). A condition set without `rollout_percentage` rolls out to 100 %,
  so `null` and `100` are the same rollout and never trigger. A path that exists on only one
  side (a condition set or variant added or removed) counts as changed.

Policy conditions, evaluated over the changed paths only (`feature_flag.update` policies):

* `{}`: every change of the action matches.
* `{"type": "any_change", "field": "rollout_percentage"}`: matches when at least one rollout
  percentage changes (always true for a detected update; useful to state intent explicitly).
* `{"type": "before_after", "field": "rollout_percentage", "operator": OP, "value": N}`: matches
  when, at some changed path, the percentage *after* the change satisfies `after OP N`
  (a removed path has no "after" and is skipped).
* `{"type": "change_amount", "field": "rollout_percentage", "operator": OP, "value": N}`: matches
  when, at some changed path, `after - before` satisfies `delta OP N`; an added path counts from
  0 and a removed path goes to 0. Use `"absolute": true` to compare `|after - before|`.

OP is one of `>`, `>=`, `<`, `<=`, `==`, `!=`.
"""

import math
import operator
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

ENABLE = "feature_flag.enable"
DISABLE = "feature_flag.disable"
UPDATE = "feature_flag.update"
ACTION_KEYS = (ENABLE, DISABLE, UPDATE)

ROLLOUT_FIELD = "rollout_percentage"
CONDITION_TYPES = ("any_change", "before_after", "change_amount")
COMPARISONS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}

DEFAULT_EXPIRES_AFTER = timedelta(days=14)

# Lists of condition sets whose entries carry a rollout percentage (absent means 100 %).
_CONDITION_SET_LISTS = ("groups", "super_groups", "holdout_groups")


@dataclass
class DetectedAction:
    """One gated action a flag change performs, with the values an approver needs to see."""

    action_key: str
    current_state: dict[str, Any]
    gated_changes: dict[str, Any]
    triggered_paths: list[str] = field(default_factory=list)

    def rollout_by_path(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The rollout percentages before and after the change, keyed by path."""
        return (
            {entry["path"]: entry["value"] for entry in self.current_state.get(ROLLOUT_FIELD, [])},
            {entry["path"]: entry["value"] for entry in self.gated_changes.get(ROLLOUT_FIELD, [])},
        )


def rollout_percentages(filters: dict[str, Any] | None) -> dict[str, float]:
    """Effective rollout percentage per path, e.g. `{"groups[0].rollout_percentage": 100}`."""
    filters = filters if isinstance(filters, dict) else {}
    found: dict[str, float] = {}
    for list_name in _CONDITION_SET_LISTS:
        entries = filters.get(list_name)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict):
                value = entry.get(ROLLOUT_FIELD)
                found[f"{list_name}[{index}].{ROLLOUT_FIELD}"] = 100 if value is None else value
    multivariate = filters.get("multivariate")
    variants = multivariate.get("variants") if isinstance(multivariate, dict) else None
    for index, variant in enumerate(variants if isinstance(variants, list) else []):
        if isinstance(variant, dict) and ROLLOUT_FIELD in variant:
            found[f"multivariate.variants[{index}].{ROLLOUT_FIELD}"] = variant[ROLLOUT_FIELD]
    return found


def _as_entries(values: dict[str, float]) -> list[dict[str, Any]]:
    return [{"path": path, "value": value} for path, value in values.items()]


def _path_order(path: str) -> tuple[int, str, int]:
    """Sort paths by the list they are in, then by their index (not alphabetically: 10 after 9)."""
    match = re.match(r"^(.*)\[(\d+)\]", path)
    prefix, index = (match.group(1), int(match.group(2))) if match else (path, 0)
    lists = (*_CONDITION_SET_LISTS, "multivariate.variants")
    return (lists.index(prefix) if prefix in lists else len(lists), prefix, index)


def detect_actions(active_before: bool, filters_before: dict[str, Any], changes: dict[str, Any]) -> list[DetectedAction]:
    """The gated actions `changes` performs on a flag that is `active_before` with `filters_before`."""
    detected: list[DetectedAction] = []
    if "active" in changes and bool(changes["active"]) != bool(active_before):
        detected.append(
            DetectedAction(
                action_key=ENABLE if changes["active"] else DISABLE,
                current_state={"active": bool(active_before)},
                gated_changes={"active": bool(changes["active"])},
                triggered_paths=["active"],
            )
        )
    if "filters" in changes:
        before = rollout_percentages(filters_before)
        after = rollout_percentages(changes["filters"])
        changed = sorted(
            (path for path in before.keys() | after.keys() if before.get(path) != after.get(path)), key=_path_order
        )
        if changed:
            detected.append(
                DetectedAction(
                    action_key=UPDATE,
                    current_state={ROLLOUT_FIELD: _as_entries(before)},
                    gated_changes={ROLLOUT_FIELD: _as_entries(after)},
                    triggered_paths=changed,
                )
            )
    return detected


def _changed_values(action: DetectedAction) -> list[tuple[float | None, float | None]]:
    before, after = action.rollout_by_path()
    return [(before.get(path), after.get(path)) for path in action.triggered_paths]


def conditions_match(conditions: dict[str, Any] | None, action: DetectedAction) -> bool:
    """Whether a policy with these (already validated) conditions covers this action."""
    if not conditions:
        return True
    kind = conditions["type"]
    if kind == "any_change":
        return bool(action.triggered_paths)
    compare = COMPARISONS[conditions["operator"]]
    threshold = conditions["value"]
    for before, after in _changed_values(action):
        if kind == "before_after":
            if after is not None and compare(after, threshold):
                return True
        else:
            delta = (after or 0) - (before or 0)
            if conditions.get("absolute"):
                delta = abs(delta)
            if compare(delta, threshold):
                return True
    return False


class InvalidPolicy(ValueError):
    """A policy field that cannot be stored; `attr` names the field."""

    def __init__(self, message: str, attr: str, code: str = "invalid_input"):
        super().__init__(message)
        self.attr = attr
        self.code = code


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_conditions(conditions: Any, action_key: str) -> dict[str, Any]:
    """Check a policy's `conditions` against the rules in this module's docstring."""
    if conditions is None or conditions == {}:
        return {}
    if not isinstance(conditions, dict):
        raise InvalidPolicy("Conditions must be an object.", "conditions", "invalid")
    kind = conditions.get("type")
    if kind not in CONDITION_TYPES:
        raise InvalidPolicy(f'"{kind}" is not a valid condition type.', "conditions", "invalid_choice")
    if action_key != UPDATE:
        raise InvalidPolicy(
            f"Conditions apply to rollout percentages and are only supported for '{UPDATE}'; "
            f"'{action_key}' policies must have empty conditions.",
            "conditions",
        )
    allowed = {"type", "field"} if kind == "any_change" else {"type", "field", "operator", "value"}
    if kind == "change_amount":
        allowed.add("absolute")
    unknown = sorted(set(conditions) - allowed)
    if unknown:
        raise InvalidPolicy(f"Unknown condition keys for '{kind}': {', '.join(unknown)}.", "conditions")
    if conditions.get("field", ROLLOUT_FIELD) != ROLLOUT_FIELD:
        raise InvalidPolicy(f"Only the '{ROLLOUT_FIELD}' field can be gated.", "conditions", "invalid_choice")
    cleaned: dict[str, Any] = {"type": kind, "field": ROLLOUT_FIELD}
    if kind == "any_change":
        return cleaned
    if conditions.get("operator") not in COMPARISONS:
        raise InvalidPolicy(
            f"Condition operator must be one of {', '.join(COMPARISONS)}.", "conditions", "invalid_choice"
        )
    value = conditions.get("value")
    if not _is_number(value):
        raise InvalidPolicy("Condition value must be a number.", "conditions")
    low = -100 if kind == "change_amount" else 0
    if not low <= value <= 100:
        raise InvalidPolicy(f"Condition value must be between {low} and 100.", "conditions")
    cleaned.update(operator=conditions["operator"], value=value)
    if kind == "change_amount":
        absolute = conditions.get("absolute", False)
        if not isinstance(absolute, bool):
            raise InvalidPolicy("Condition 'absolute' must be a boolean.", "conditions")
        cleaned["absolute"] = absolute
    return cleaned


# Django's DurationField format ("[DD] [[HH:]MM:]ss[.uuuuuu]"), which PostHog renders and accepts.
_DURATION = re.compile(
    r"^(?:(?P<days>-?\d+) (days?, )?)?"
    r"(?:(?P<hours>\d+):(?=\d+:\d+))?(?:(?P<minutes>\d+):)?(?P<seconds>\d+)(?:\.(?P<micro>\d{1,6}))?$"
)
_ISO_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


# `expires_after` is stored as whole seconds in a 32-bit integer column.
_MAX_SECONDS = 2**31 - 1


def parse_duration(value: Any) -> timedelta:
    """Accept seconds (number or numeric string), `"14 00:00:00"` or ISO 8601 (`"P14D"`)."""
    if _is_number(value):
        duration = timedelta(seconds=value)
    elif isinstance(value, str) and (text := value.strip()):
        if re.fullmatch(r"\d+(\.\d+)?", text):
            duration = timedelta(seconds=float(text))
        elif match := _DURATION.match(text):
            parts = match.groupdict()
            duration = timedelta(
                days=int(parts["days"] or 0),
                hours=int(parts["hours"] or 0),
                minutes=int(parts["minutes"] or 0),
                seconds=int(parts["seconds"]),
                microseconds=int((parts["micro"] or "0").ljust(6, "0")),
            )
        elif (match := _ISO_DURATION.match(text)) and text not in ("P", "PT"):
            parts = {name: float(part or 0) for name, part in match.groupdict().items()}
            duration = timedelta(**parts)
        else:
            raise InvalidPolicy(
                "Duration has wrong format. Use one of these formats instead: [DD] [HH:[MM:]]ss[.uuuuuu].",
                "expires_after",
                "invalid",
            )
    else:
        raise InvalidPolicy(
            "Duration has wrong format. Use one of these formats instead: [DD] [HH:[MM:]]ss[.uuuuuu].",
            "expires_after",
            "invalid",
        )
    if duration.total_seconds() < 1:
        raise InvalidPolicy("Ensure this value is at least 1 second.", "expires_after", "min_value")
    if duration.total_seconds() > _MAX_SECONDS:
        raise InvalidPolicy(
            f"Ensure this value is at most {_MAX_SECONDS} seconds.", "expires_after", "max_value"
        )
    return duration


def format_duration(seconds: int) -> str:
    """Render like Django's DurationField: `"14 00:00:00"`, `"01:30:00"`."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days} {clock}" if days else clock
