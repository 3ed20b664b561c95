"""Validation of flag keys and `filters`, with the reference messages."""

import json
import math
import re
from typing import Any, get_args

from experiments_service.errors import ValidationError
from experiments_service.flags.properties import regex_error
from experiments_service.flags.shapes import PropertyOperator

KEY_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")

MAX_VARIANTS = 20

# Operators a release condition may use (PostHog's property operators for flags).
PROPERTY_OPERATORS = frozenset(get_args(PropertyOperator))


def validate_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValidationError("This field is required.", code="required", attr="key")
    if len(key) > 400:
        raise ValidationError("Ensure this field has no more than 400 characters.", code="max_length", attr="key")
    if not KEY_PATTERN.match(key):
        raise ValidationError(
            "Only letters, numbers, hyphens (-) & underscores (_) are allowed.", code="invalid_key", attr="key"
        )
    return key


def variants_of(filters: dict[str, Any]) -> list[dict[str, Any]]:
    multivariate = filters.get("multivariate") or {}
    variants = multivariate.get("variants") if isinstance(multivariate, dict) else None
    return variants if isinstance(variants, list) else []


# --- which flags can back an experiment ------------------------------------------------------
# PostHog's rule: a multivariate flag with at least two variants, one of them keyed `control`.
# Its eligible-flags list (FlagRepository.eligible_for_experiments) shows the same flags narrowed
# to those whose *first* variant is `control`, as PostHog's list does.
CONTROL = "control"
TOO_FEW_VARIANTS = "Feature flag must have at least 2 variants (control and at least one test variant)"
NO_CONTROL_VARIANT = "Feature flag must have a variant with key 'control'"


def variant_keys(variants: list[dict[str, Any]]) -> list[str]:
    return [variant.get("key") for variant in variants if isinstance(variant, dict)]


def flag_variant_problem(variants: list[dict[str, Any]]) -> str | None:
    """Why a flag with these variants cannot back an experiment (None when it can)."""
    if len(variants) < 2:
        return TOO_FEW_VARIANTS
    if CONTROL not in variant_keys(variants):
        return NO_CONTROL_VARIANT
    return None


def _invalid(detail: str, code: str = "invalid_input") -> ValidationError:
    return ValidationError(detail, code=code, attr="filters")


def _check_percentage(value: Any, path: str, *, allow_null: bool) -> None:
    if value is None:
        if not allow_null:
            raise _invalid(f"{path} must be a number, got null")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        expected = "a number or null" if allow_null else "a number"
        raise _invalid(f"{path} must be {expected}, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or value > 100:
        raise _invalid(f"{path} must be between 0 and 100, got {value}")


def _check_group_type_index(value: Any, path: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise _invalid(f"{path} must be an integer or null, got {type(value).__name__}")


def _validate_variants(filters: dict[str, Any]) -> set[str]:
    multivariate = filters.get("multivariate")
    if multivariate is None:
        return set()
    if not isinstance(multivariate, dict) or not isinstance(multivariate.get("variants", []), list):
        raise _invalid("Invalid variant definitions: multivariate must be an object with a list of variants.")
    variants = multivariate.get("variants") or []
    if len(variants) > MAX_VARIANTS:
        raise _invalid(f"Invalid variant definitions: a flag can have at most {MAX_VARIANTS} variants.")
    keys: set[str] = set()
    total = 0.0
    for index, variant in enumerate(variants):
        if not isinstance(variant, dict) or not isinstance(variant.get("key"), str) or not variant["key"]:
            raise _invalid("Invalid variant definitions: each variant must be an object with a 'key'.")
        if variant["key"] in keys:
            raise _invalid(f"Invalid variant definitions: duplicate variant key '{variant['key']}'.")
        keys.add(variant["key"])
        _check_percentage(
            variant.get("rollout_percentage"), f"multivariate.variants[{index}].rollout_percentage", allow_null=False
        )
        total += variant["rollout_percentage"]
    if variants and round(total, 6) != 100:
        raise _invalid("Invalid variant definitions: Variant rollout percentages must sum to 100.")
    return keys


def _validate_property(prop: Any, path: str) -> None:
    if not isinstance(prop, dict) or not isinstance(prop.get("key"), str | int) or prop.get("key") == "":
        raise _invalid(f"Filters are not valid ({path} must be an object with a 'key')")
    operator = prop.get("operator")
    if operator is not None and (not isinstance(operator, str) or operator not in PROPERTY_OPERATORS):
        raise _invalid(f"Invalid operator: {operator}", code="invalid_operator")
    _check_group_type_index(prop.get("group_type_index"), f"{path}.group_type_index")
    if operator in ("regex", "not_regex") and isinstance(prop.get("value"), str):
        reason = regex_error(prop["value"])
        if reason is not None:
            raise _invalid(
                f"{path}.value: invalid regex pattern ({reason}). Regex conditions use RE2 syntax: "
                "no lookaround or backreferences."
            )


def _normalised_payloads(payloads: Any, variant_keys: set[str]) -> dict[str, str]:
    """Payloads are stored as JSON strings, as PostHog stores and serves them."""
    if not isinstance(payloads, dict):
        raise _invalid("Payloads must be passed as a dictionary")
    normalised: dict[str, str] = {}
    for key, value in payloads.items():
        if isinstance(value, str):
            try:
                json.loads(value)
            except ValueError:
                raise _invalid("Payload value is not valid JSON") from None
            normalised[key] = value
        else:
            normalised[key] = json.dumps(value)
    if variant_keys:
        if any(key not in variant_keys for key in normalised):
            raise _invalid("Payload keys must match a variant key for multivariate flags")
    elif any(key != "true" for key in normalised):
        raise _invalid("Payload keys must be 'true' for boolean flags")
    return normalised


def validate_filters(filters: Any) -> dict[str, Any]:
    """Check `filters` the way every writer must respect; return it with payloads normalised.

    Raises the reference 400s (attr `filters`).
    """
    if not isinstance(filters, dict):
        raise ValidationError(
            f'Expected a dictionary of items but got type "{type(filters).__name__}".', code="invalid", attr="filters"
        )
    filters = dict(filters)
    groups = filters.get("groups", [])
    if groups is None:
        groups = []
    if not isinstance(groups, list):
        raise _invalid("Filters are not valid (groups must be a list)")
    _check_group_type_index(filters.get("aggregation_group_type_index"), "aggregation_group_type_index")
    variant_keys = _validate_variants(filters)
    for index, group in enumerate(groups):
        path = f"groups[{index}]"
        if not isinstance(group, dict):
            raise _invalid(f"Filters are not valid ({path} must be an object)")
        _check_percentage(group.get("rollout_percentage"), f"{path}.rollout_percentage", allow_null=True)
        _check_group_type_index(group.get("aggregation_group_type_index"), f"{path}.aggregation_group_type_index")
        variant = group.get("variant")
        if variant is not None and not isinstance(variant, str):
            raise _invalid(f"{path}.variant must be a string or null, got {type(variant).__name__}")
        if variant and variant not in variant_keys:
            raise _invalid("Filters are not valid (variant override does not exist)")
        properties = group.get("properties") or []
        if not isinstance(properties, list):
            raise _invalid(f"Filters are not valid ({path}.properties must be a list)")
        for prop_index, prop in enumerate(properties):
            _validate_property(prop, f"{path}.properties[{prop_index}]")
    if "payloads" in filters and filters["payloads"] is not None:
        filters["payloads"] = _normalised_payloads(filters["payloads"], variant_keys)
    return filters
