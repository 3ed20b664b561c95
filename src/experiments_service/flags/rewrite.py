"""Pure rewrites of a flag's `filters` that other domains ask for (no database access).

Experiments keep their flag's variants, rollout, payloads and holdout in step with their
`parameters`; ship_variant serves one variant; holdouts stamp `filters.holdout` on the flags
of the experiments using them.
"""

import copy
from typing import Any

from experiments_service.models import ExperimentHoldout

DEFAULT_VARIANTS = [
    {"key": "control", "name": "Control Group", "rollout_percentage": 50},
    {"key": "test", "name": "Test Variant", "rollout_percentage": 50},
]

SHIPPED_RELEASE_CONDITION_DESCRIPTION = (
    "Added automatically when the experiment was ended to keep only one variant."
)


def ship_variant_filters(filters: dict[str, Any], variant_key: str, release_to_everyone: bool) -> dict[str, Any]:
    """Serve only `variant_key`: it goes to 100 %, every other variant to 0 %.

    With `release_to_everyone` a catch-all condition is prepended (deleting it rolls the release
    back) unless the first condition already is that catch-all; otherwise the release conditions
    stay exactly as they were. Every other key is kept.
    """
    shipped = copy.deepcopy(filters)
    multivariate = shipped.get("multivariate") or {}
    variants = []
    for variant in multivariate.get("variants") or []:
        key = variant.get("key")
        rewritten = {"key": key, "rollout_percentage": 100 if key == variant_key else 0}
        if variant.get("name"):
            rewritten["name"] = variant["name"]
        variants.append(rewritten)
    shipped["multivariate"] = {**multivariate, "variants": variants}
    shipped["payloads"] = shipped.get("payloads") or {}
    groups = shipped.get("groups") or []
    catch_all = {"properties": [], "rollout_percentage": 100, "description": SHIPPED_RELEASE_CONDITION_DESCRIPTION}
    # Shipping again (e.g. retrying after an approved change request) adds no second catch-all.
    if release_to_everyone and (not groups or groups[0] != catch_all):
        groups = [catch_all, *groups]
    shipped["groups"] = groups
    return shipped


def holdout_flag_filter(holdout: ExperimentHoldout | None) -> dict[str, Any] | None:
    """The `filters.holdout` value a flag carries for this holdout (null without one)."""
    if holdout is None:
        return None
    groups = holdout.filters or []
    exclusion = groups[0].get("rollout_percentage") if groups else None
    return {"id": holdout.id, "exclusion_percentage": exclusion}


def with_holdout(filters: dict[str, Any], flag_holdout: dict[str, Any] | None) -> dict[str, Any]:
    return {**copy.deepcopy(filters), "holdout": flag_holdout}


def experiment_flag_filters(
    flag_filters: dict[str, Any], parameters: dict[str, Any], holdout: ExperimentHoldout | None
) -> dict[str, Any]:
    """A copy of flag filters with the experiment's variants, aggregation, rollout, payloads and holdout applied."""
    filters = copy.deepcopy(flag_filters)
    multivariate = filters.get("multivariate") if isinstance(filters.get("multivariate"), dict) else {}
    if "feature_flag_variants" in parameters:
        variants = parameters["feature_flag_variants"] or copy.deepcopy(DEFAULT_VARIANTS)
        filters["multivariate"] = {**multivariate, "variants": variants}
    filters["aggregation_group_type_index"] = parameters.get("aggregation_group_type_index")
    if parameters.get("rollout_percentage") is not None:
        groups = filters.get("groups") or [{"properties": []}]
        groups[0] = {**groups[0], "rollout_percentage": parameters["rollout_percentage"]}
        filters["groups"] = groups
    if parameters.get("feature_flag_payloads") is not None:
        filters["payloads"] = parameters["feature_flag_payloads"]
    filters["holdout"] = holdout_flag_filter(holdout)
    return filters


def new_experiment_flag_filters(parameters: dict[str, Any], holdout: ExperimentHoldout | None) -> dict[str, Any]:
    """The filters of the flag an experiment creates for itself: everyone in, control/test by default."""
    base = {
        "groups": [{"properties": [], "rollout_percentage": 100}],
        "multivariate": {"variants": DEFAULT_VARIANTS},
        "aggregation_group_type_index": None,
        "holdout": None,
    }
    return experiment_flag_filters(base, parameters, holdout)
