"""Flag definitions cached in memory stay coherent across processes.

Two real server processes share one PostgreSQL database: a change made through one is served
by the other within a second (LISTEN/NOTIFY; the TTL is set far above a second to prove it).
Without a notification, the periodic version check picks the change up (both databases).
"""

import asyncio
import time

import httpx
import pytest
from sqlalchemy import update

from experiments_service.db import Database
from experiments_service.flags.cache import FlagCache
from experiments_service.flags.evaluation import EvaluationContext
from experiments_service.models import FeatureFlag, FlagDefinitionsVersion
from experiments_service.settings import Settings
from tests.factories import boolean_filters
from tests.flags.live_server import running_server


async def _served(http: httpx.AsyncClient, base: str, token: str, key: str):
    response = await http.post(f"{base}/flags/?v=2", json={"token": token, "distinct_id": "someone"})
    assert response.status_code == 200, response.text
    detail = response.json()["flags"].get(key)
    return None if detail is None else detail["enabled"]


async def _wait_until(predicate, limit: float) -> float:
    """Seconds until `predicate()` holds; fails after `limit` seconds."""
    started = time.monotonic()
    while not await predicate():
        elapsed = time.monotonic() - started
        assert elapsed < limit, f"not observed within {limit} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_change_through_one_process_is_served_by_the_other(kit, db_name, database_urls):
    if db_name != "postgresql":
        pytest.skip("several processes share PostgreSQL; SQLite serves one process")
    url = database_urls["postgresql"]
    slow_ttl = {"FLAG_CACHE_TTL_SECONDS": "30"}
    with running_server(url, env=slow_ttl) as a, running_server(url, env=slow_ttl) as b:
        server_a, server_b = a.url, b.url
        async with httpx.AsyncClient(timeout=10) as http:
            created = await http.post(
                f"{server_a}/api/projects/{kit.project_id}/feature_flags/",
                json={"key": "cross-process", "filters": boolean_filters(100)},
                headers=kit.headers,
            )
            assert created.status_code == 201
            flag_url = f"{server_a}/api/projects/{kit.project_id}/feature_flags/{created.json()['id']}/"
            token = kit.project_api_key

            async def b_serves_it() -> bool:
                return await _served(http, server_b, token, "cross-process") is True

            await _wait_until(b_serves_it, 1.0)  # B loaded its cache after the creation

            assert (await http.patch(flag_url, json={"filters": boolean_filters(0)}, headers=kit.headers)).status_code == 200

            async def b_sees_rollout_zero() -> bool:
                return await _served(http, server_b, token, "cross-process") is False

            assert await _wait_until(b_sees_rollout_zero, 1.0) < 1.0

            assert (await http.patch(flag_url, json={"active": False}, headers=kit.headers)).status_code == 200

            async def b_omits_it() -> bool:
                return await _served(http, server_b, token, "cross-process") is None

            assert await _wait_until(b_omits_it, 1.0) < 1.0
            # A served its own change at once (evicted on commit).
            assert await _served(http, server_a, token, "cross-process") is None


async def test_version_check_picks_up_changes_without_notification(app, client, kit):
    created = await client.post(
        f"{kit.base}/feature_flags/", json={"key": "quiet", "filters": boolean_filters(100)}, headers=kit.headers
    )
    flag_id = created.json()["id"]
    assert await _served(client, "", kit.project_api_key, "quiet") is True
    # A write that bypasses this process (as another process's would, with its NOTIFY lost).
    async with app.state.db.transaction() as session:
        await session.execute(update(FeatureFlag).where(FeatureFlag.id == flag_id).values(filters=boolean_filters(0)))
        await session.execute(
            update(FlagDefinitionsVersion)
            .where(FlagDefinitionsVersion.project_id == kit.project_id)
            .values(version=FlagDefinitionsVersion.version + 1)
        )

    async def served_off() -> bool:
        return await _served(client, "", kit.project_api_key, "quiet") is False

    assert await _wait_until(served_off, app.state.settings.flag_cache_ttl_seconds + 1.0) <= app.state.settings.flag_cache_ttl_seconds + 1.0


async def test_cached_flags_are_served_while_the_database_is_unreachable(app, client, kit):
    await client.post(f"{kit.base}/feature_flags/", json={"key": "resilient", "filters": boolean_filters(100)}, headers=kit.headers)
    cache = FlagCache(app.state.db, ttl_seconds=0.0)
    entry = await cache.get(kit.project_id)
    # From now on every version check hits a server that refuses connections.
    cache.db = Database(Settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:9/unreachable"))
    try:
        served = await cache.get(kit.project_id)
    finally:
        await cache.db.dispose()
    assert served is entry
    result = served.compiled.evaluate(EvaluationContext(distinct_id="anyone"))
    assert result["resilient"].enabled is True
