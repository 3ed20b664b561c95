"""Pure rewrites of a flag's `filters` that other domains ask for (no database access)."""

import copy
from typing import Any

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
