"""Factories shared by the flags tests."""

from typing import Any

import httpx


def boolean_filters(rollout: float | None = 100, properties: list[dict] | None = None) -> dict[str, Any]:
    return {"groups": [{"properties": properties or [], "rollout_percentage": rollout}]}


def multivariate_filters(
    variants: list[tuple[str, float]], rollout: float | None = 100, payloads: dict[str, Any] | None = None
) -> dict[str, Any]:
    filters: dict[str, Any] = {
        "groups": [{"properties": [], "rollout_percentage": rollout}],
        "multivariate": {"variants": [{"key": key, "rollout_percentage": pct} for key, pct in variants]},
    }
    if payloads is not None:
        filters["payloads"] = payloads
    return filters


async def create_flag(client: httpx.AsyncClient, kit, key: str, **fields: Any) -> dict[str, Any]:
    body = {"key": key, "name": fields.pop("name", f"{key} flag"), "filters": boolean_filters(), **fields}
    response = await client.post(f"{kit.base}/feature_flags/", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()
