"""PostHog's shape of a feature flag's `filters`, for the OpenAPI document and generated clients.

`validation.validate_filters` keeps checking requests with the reference messages; these models
describe what it accepts. Every object allows extra keys, as PostHog keeps them.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PropertyOperator = Literal[
    "exact", "is_not", "icontains", "not_icontains", "regex", "not_regex",
    "gt", "gte", "lt", "lte", "is_set", "is_not_set",
    "is_date_exact", "is_date_before", "is_date_after",
    "semver_eq", "semver_neq", "semver_gt", "semver_gte", "semver_lt", "semver_lte",
    "semver_tilde", "semver_caret", "semver_wildcard",
    "starts_with", "ends_with", "not_starts_with", "not_ends_with",
    "icontains_multi", "not_icontains_multi", "between", "not_between",
    "in", "not_in", "flag_evaluates_to",
]  # fmt: skip


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PropertyFilter(_Open):
    """One condition on a person, group, cohort or flag property (`exact` when `operator` is omitted)."""

    key: str | int = Field(examples=["email"], description="Property name; a cohort id for `type: cohort`.")
    value: Any = Field(None, examples=[["@example.com"]], description="A value or a list of values.")
    operator: PropertyOperator | None = Field(None, examples=["icontains"])
    type: str | None = Field(None, examples=["person"], description="`person`, `group`, `cohort` or `flag`.")
    group_type_index: int | None = Field(None, description="For `type: group`: which group type.")


class FeatureFlagGroup(_Open):
    """A release condition: users matching every property get the flag at `rollout_percentage`."""

    properties: list[PropertyFilter] | None = Field(None, description="All must match (empty: everyone).")
    rollout_percentage: float | None = Field(None, ge=0, le=100, description="null means 100.")
    variant: str | None = Field(None, description="Force this variant for the condition's users.")
    description: str | None = None
    aggregation_group_type_index: int | None = None


class MultivariateVariant(_Open):
    key: str = Field(examples=["control"])
    name: str | None = None
    rollout_percentage: float = Field(ge=0, le=100, description="Shares of all variants sum to 100.")


class Multivariate(_Open):
    variants: list[MultivariateVariant] = Field(max_length=20)


class FlagHoldout(_Open):
    """The experiment holdout applied to the flag (`holdout-<id>` variant for the excluded share)."""

    id: int
    exclusion_percentage: float | None = None


class FeatureFlagFilters(_Open):
    """Who gets the flag and which variant."""

    groups: list[FeatureFlagGroup] | None = Field(None, description="Release conditions, first match wins.")
    multivariate: Multivariate | None = None
    payloads: dict[str, Any] | None = Field(
        None, description="Payload per variant key (`true` for a boolean flag); stored and returned as JSON strings."
    )
    aggregation_group_type_index: int | None = Field(None, description="Evaluate per group of this type.")
    holdout: FlagHoldout | None = None
    super_groups: list[FeatureFlagGroup] | None = Field(None, description="Conditions checked before `groups`.")


FLAG_CREATE_EXAMPLE = {
    "key": "new-checkout",
    "name": "New checkout",
    "active": True,
    "filters": {
        "groups": [
            {"properties": [{"key": "email", "type": "person", "operator": "icontains", "value": "@example.com"}],
             "rollout_percentage": 100},
            {"properties": [], "rollout_percentage": 20},
        ],
        "payloads": {"true": {"button": "green"}},
    },
}  # fmt: skip
