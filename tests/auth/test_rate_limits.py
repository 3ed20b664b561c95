"""Rate limits (issue 11 item 3): per personal API key on `/api`, per project token on `/flags`,
`/decide` and capture; 429 in PostHog's body with `Retry-After`; off by default; on PostgreSQL
one budget shared by every process."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from experiments_service.app import create_app
from experiments_service.db import create_engine
from experiments_service.ratelimit import RateLimits
from experiments_service.ratelimit.repository import DatabaseCounters
from experiments_service.models import Event, Experiment, PersonalAPIKey, RateLimitCounter
from experiments_service.settings import Settings
from tests.factories import make_kit


def limited_app(url: str, api: str = "3/minute", sdk: str = "3/minute", sync: float = 0.1):
    return create_app(
        Settings(
            database_url=url, run_worker=False, rate_limit_api=api, rate_limit_sdk=sdk, rate_limit_sync_seconds=sync
        )
    )


@pytest.fixture
async def limited(db_name, database_urls) -> AsyncIterator:
    """An app (with its client) limiting keys and tokens to 3 requests a minute."""
    app = limited_app(database_urls[db_name])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield app, client
    await app.state.db.dispose()


def assert_throttled(response: httpx.Response, window_seconds: int = 60) -> None:
    assert response.status_code == 429, response.text
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= window_seconds
    unit = "second" if wait == 1 else "seconds"
    assert response.json() == {
        "type": "throttled_error",
        "code": "throttled",
        "detail": f"Request was throttled. Expected available in {wait} {unit}.",
        "attr": None,
    }


async def count(app, model, project_id: int) -> int:
    async with app.state.db.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model).where(model.project_id == project_id))


def capture_body(token: str) -> dict:
    return {"api_key": token, "batch": [{"event": "limited", "distinct_id": "d", "uuid": str(uuid.uuid4()), "properties": {}}]}


class TestPersonalKeyLimit:
    async def test_a_key_gets_429_after_its_budget_and_other_keys_do_not(self, limited):
        app, client = limited
        kit = await make_kit(app, client)
        other = await make_kit(app, client)
        for _ in range(3):
            assert (await client.get(f"{kit.base}/experiments/", headers=kit.headers)).status_code == 200
        assert_throttled(await client.get(f"{kit.base}/experiments/", headers=kit.headers))
        refused = await client.post(
            f"{kit.base}/experiments/", json={"name": "x", "feature_flag_key": "throttled"}, headers=kit.headers
        )
        assert_throttled(refused)
        assert await count(app, Experiment, kit.project_id) == 0
        assert_throttled(await client.get("/api/personal_api_keys/@current/", headers=kit.headers))
        assert (await client.get(f"{other.base}/experiments/", headers=other.headers)).status_code == 200

    async def test_the_window_reopens(self, db_name, database_urls):
        # A window long enough that three requests fall inside it even on a loaded machine.
        app = limited_app(database_urls[db_name], api="2/5 seconds")
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
                kit = await make_kit(app, client)
                url = f"{kit.base}/feature_flags/"
                statuses = [(await client.get(url, headers=kit.headers)).status_code for _ in range(3)]
                assert statuses == [200, 200, 429]
                await asyncio.sleep(5.1)
                assert (await client.get(url, headers=kit.headers)).status_code == 200
        finally:
            await app.state.db.dispose()


class TestProjectTokenLimit:
    async def test_flags_and_capture_share_the_tokens_budget(self, limited):
        app, client = limited
        kit = await make_kit(app, client)
        other = await make_kit(app, client)
        flags = {"token": kit.project_api_key, "distinct_id": "someone"}
        assert (await client.post("/flags/?v=2", json=flags)).status_code == 200
        assert (await client.post("/decide/?v=3", json=flags)).status_code == 200
        assert (await client.post("/batch/", json=capture_body(kit.project_api_key))).status_code == 200
        assert_throttled(await client.post("/flags/?v=2", json=flags))
        assert_throttled(await client.post("/batch/", json=capture_body(kit.project_api_key)))
        assert await count(app, Event, kit.project_id) == 1
        assert (await client.post("/flags/?v=2", json={**flags, "token": other.project_api_key})).status_code == 200
        # an unknown token is refused as before, without a budget of its own
        assert (await client.post("/flags/?v=2", json={**flags, "token": "phc_unknown"})).status_code == 401

    async def test_the_documented_capture_route_is_limited_too(self, limited):
        app, client = limited
        kit = await make_kit(app, client)
        for _ in range(3):
            assert (await client.post("/e/", json=capture_body(kit.project_api_key))).status_code == 200
        assert_throttled(await client.post("/i/v0/e/", json=capture_body(kit.project_api_key)))
        assert await count(app, Event, kit.project_id) == 3


class TestDefaultsAndSharing:
    async def test_off_by_default(self, app, client, kit):
        assert app.state.rate_limits is None
        for _ in range(25):
            assert (await client.get(f"{kit.base}/experiments/", headers=kit.headers)).status_code == 200
        for _ in range(25):
            assert (await client.post("/flags/?v=2", json={"token": kit.project_api_key, "distinct_id": "d"})).status_code == 200

    async def test_two_processes_share_one_budget_on_postgresql_and_count_alone_on_sqlite(self, db_name, database_urls):
        """Two apps on one database stand for two workers (each has its own engine and memory)."""
        apps = [limited_app(database_urls[db_name], api="4/minute", sync=0) for _ in range(2)]
        try:
            clients = [
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") for app in apps
            ]
            kit = await make_kit(apps[0], clients[0])
            url = f"{kit.base}/experiments/"
            statuses = [(await clients[index % 2].get(url, headers=kit.headers)).status_code for index in range(6)]
            if db_name == "postgresql":
                assert statuses == [200, 200, 200, 200, 429, 429]
            else:
                assert statuses == [200] * 6  # per process: each app has a budget of 4
                assert (await clients[0].get(url, headers=kit.headers)).status_code == 200
                assert (await clients[0].get(url, headers=kit.headers)).status_code == 429
            for client in clients:
                await client.aclose()
        finally:
            for app in apps:
                await app.state.db.dispose()

    async def test_a_busy_key_writes_its_shared_counter_once_per_sync_interval(self, db_name, database_urls):
        if db_name != "postgresql":
            pytest.skip("shared counters are PostgreSQL's")
        app = limited_app(database_urls[db_name], sync=60)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
                kit = await make_kit(app, client)
                statuses = [(await client.get(f"{kit.base}/experiments/", headers=kit.headers)).status_code for _ in range(5)]
                assert statuses == [200, 200, 200, 429, 429]  # decided locally between syncs
                async with app.state.db.sessionmaker() as session:
                    key_id = await session.scalar(select(PersonalAPIKey.id).where(PersonalAPIKey.user_id == kit.user_id))
                    rows = (
                        await session.execute(
                            select(RateLimitCounter.hits).where(RateLimitCounter.bucket.like(f"LIMITER/key/{key_id}/%"))
                        )
                    ).scalars().all()
                assert rows == [1]  # only the first request was written; the rest were counted in memory
        finally:
            await app.state.db.dispose()

    async def test_unreachable_counters_let_requests_through(self, db_name, database_urls):
        if db_name != "postgresql":
            pytest.skip("shared counters are PostgreSQL's")
        app = limited_app(database_urls[db_name], api="1/minute", sdk="1/minute", sync=0)
        gone = make_url(database_urls[db_name]).set(database=f"missing_{uuid.uuid4().hex[:8]}")
        dead_engine = create_engine(gone.render_as_string(hide_password=False))
        app.state.rate_limits = RateLimits(
            storage=DatabaseCounters(dead_engine, 0), api=app.state.rate_limits.api, sdk=app.state.rate_limits.sdk
        )
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
                kit = await make_kit(app, client)
                for _ in range(3):
                    assert (await client.get(f"{kit.base}/experiments/", headers=kit.headers)).status_code == 200
                    flags = await client.post("/flags/?v=2", json={"token": kit.project_api_key, "distinct_id": "d"})
                    assert flags.status_code == 200
        finally:
            await dead_engine.dispose()
            await app.state.db.dispose()
