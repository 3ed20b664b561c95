"""Validation of flag keys and `filters`, with the reference messages."""

import re
from typing import Any

from experiments_service.errors import ValidationError

KEY_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")


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


def validate_filters(filters: Any) -> dict[str, Any]:
    """Check the parts of `filters` every writer must respect (raises the reference 400s)."""
    if not isinstance(filters, dict):
        raise ValidationError(
            f'Expected a dictionary of items but got type "{type(filters).__name__}".', code="invalid", attr="filters"
        )
    variants = variants_of(filters)
    if variants:
        total = 0.0
        for variant in variants:
            if not isinstance(variant, dict):
                raise ValidationError("Invalid variant definitions: each variant must be an object.", attr="filters")
            percentage = variant.get("rollout_percentage", 0)
            if isinstance(percentage, bool) or not isinstance(percentage, int | float):
                raise ValidationError("Invalid variant definitions: rollout_percentage must be a number.", attr="filters")
            total += percentage
        if round(total, 6) != 100:
            raise ValidationError(
                "Invalid variant definitions: Variant rollout percentages must sum to 100.", attr="filters"
            )
    return filters
