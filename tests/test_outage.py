"""The database goes away under a running app (PostgreSQL only: an SQLite file cannot).

Killed connections cost no request; while the database is unreachable, routes that need it
answer 503 with `Retry-After`, `/flags` answers from its cache, and the app recovers by itself.
"""

import asyncio
import os
import uuid

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from experiments_service import migrate
from experiments_service.app import create_app
from experiments_service.auth.service import create_project, ensure_user, issue_personal_api_key
from experiments_service.models import Event
from experiments_service.settings import Settings

BASE_URL = os.environ.get("TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(not BASE_URL, reason="needs PostgreSQL (TEST_DATABASE_URL)")


async def admin() -> asyncpg.Connection:
    url = make_url(BASE_URL)
    return await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password, database="postgres")


async def terminate_backends(name: str) -> int:
    connection = await admin()
    try:
        killed = await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name
        )
        return len(killed)
    finally:
        await connection.close()


async def rename_database(old: str, new: str) -> None:
    """Rename a database the app is connected to (its connections are killed first, repeatedly)."""
    connection = await admin()
    try:
        for _ in range(50):
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", old
            )
            try:
                await connection.execute(f'ALTER DATABASE "{old}" RENAME TO "{new}"')
                return
            except asyncpg.ObjectInUseError:
                await asyncio.sleep(0.05)
        raise AssertionError("could not rename the database")
    finally:
        await connection.close()


@pytest.fixture
async def outage_app():
    """An app on a database of its own, which the test may kill, rename and restore."""
    name = f"exp_outage_{uuid.uuid4().hex[:10]}"
    connection = await admin()
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    url = make_url(BASE_URL).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(migrate.upgrade, url)
    app = create_app(Settings(
        database_url=url, run_worker=False, database_connect_timeout_seconds=2, database_pool_timeout_seconds=2,
        database_pool_size=3,
    ))
    async with app.state.db.transaction() as session:
        project = await create_project(session, "outage")
        user = await ensure_user(session, "owner@example.com", project)
        issued = await issue_personal_api_key(session, user, ["*"])
    app.state.outage = {"name": name, "project_id": project.id, "token": project.api_token,
                        "headers": {"Authorization": f"Bearer {issued.secret}"}}
    yield app
    await app.state.db.dispose()
    connection = await admin()
    for candidate in (name, name + "_away"):
        await connection.execute(f'DROP DATABASE IF EXISTS "{candidate}" WITH (FORCE)')
    await connection.close()


@pytest.fixture
async def outage_client(outage_app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outage_app), base_url="http://testserver") as client:
        yield client


def unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {
        "type": "server_error", "code": "service_unavailable",
        "detail": "The service cannot reach its database right now. Retry shortly.", "attr": None,
    }


class TestOutage:
    async def test_killed_connections_cost_no_request(self, outage_app, outage_client):
        state = outage_app.state.outage
        experiments = f"/api/projects/{state['project_id']}/experiments/"
        for _ in range(3):
            responses = await asyncio.gather(*(outage_client.get(experiments, headers=state["headers"]) for _ in range(3)))
            assert [response.status_code for response in responses] == [200] * 3
            assert await terminate_backends(state["name"]) >= 1
            responses = await asyncio.gather(*(outage_client.get(experiments, headers=state["headers"]) for _ in range(6)))
            assert [response.status_code for response in responses] == [200] * 6
        batch = {"api_key": state["token"], "batch": [{"event": "a", "distinct_id": "u"}]}
        await terminate_backends(state["name"])
        assert (await outage_client.post("/batch/", json=batch)).status_code == 200

    async def test_an_unreachable_database_answers_503_and_recovers(self, outage_app, outage_client):
        state = outage_app.state.outage
        headers = state["headers"]
        base = f"/api/projects/{state['project_id']}"
        flag = await outage_client.post(f"{base}/feature_flags/", json={"key": "cached", "filters": {"groups": [{"rollout_percentage": 100}]}}, headers=headers)
        assert flag.status_code == 201, flag.text
        person_flag = {"key": "pro-only", "filters": {"groups": [{"properties": [{"key": "plan", "type": "person", "value": "pro"}]}]}}
        assert (await outage_client.post(f"{base}/feature_flags/", json=person_flag, headers=headers)).status_code == 201
        flags_body = {"token": state["token"], "distinct_id": "u"}
        warm = await outage_client.post("/flags/?v=2", json=flags_body)
        assert warm.json()["flags"]["cached"]["enabled"] is True

        await rename_database(state["name"], state["name"] + "_away")
        try:
            unavailable(await outage_client.get(f"{base}/experiments/", headers=headers))
            unavailable(await outage_client.post(f"{base}/experiments/", json={"name": "x", "feature_flag_key": "x"}, headers=headers))
            unavailable(await outage_client.get(f"{base}/feature_flags/", headers=headers))
            unavailable(await outage_client.post("/batch/", json={"api_key": state["token"], "batch": [{"event": "lost", "distinct_id": "u"}]}))
            unavailable(await outage_client.post("/flags/?v=2", json={"token": "phc_unknown", "distinct_id": "u"}))
            await asyncio.sleep(0.6)  # past the cache's TTL: its version check fails, the cache keeps serving
            served = await outage_client.post("/flags/?v=2", json={"token": state["token"], "distinct_id": "u", "person_properties": {"plan": "pro"}})
            assert served.status_code == 200, served.text
            assert served.json()["flags"]["cached"]["enabled"] is True
            assert served.json()["flags"]["pro-only"]["enabled"] is True
            assert served.json()["errorsWhileComputingFlags"] is False
            # A stored person property is needed and cannot be read: answered, with the error flag up.
            degraded = await outage_client.post("/flags/?v=2", json=flags_body)
            assert degraded.status_code == 200, degraded.text
            assert degraded.json()["errorsWhileComputingFlags"] is True
            assert degraded.json()["flags"]["cached"]["enabled"] is True
        finally:
            await rename_database(state["name"] + "_away", state["name"])

        recovered = await outage_client.get(f"{base}/experiments/", headers=headers)
        assert recovered.status_code == 200, recovered.text
        stored = await outage_client.post("/batch/", json={"api_key": state["token"], "batch": [{"event": "back", "distinct_id": "u"}]})
        assert stored.status_code == 200
        async with outage_app.state.db.sessionmaker() as session:
            names = (await session.execute(select(Event.event).where(Event.project_id == state["project_id"]))).scalars()
            assert list(names) == ["back"]  # the refused capture stored nothing


class TestServerDown:
    async def test_a_server_that_refuses_connections_answers_503(self):
        url = make_url(BASE_URL).set(port=1, database="nothing").render_as_string(hide_password=False)
        app = create_app(Settings(database_url=url, run_worker=False, database_connect_timeout_seconds=2))
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
                unavailable(await client.get("/api/projects/1/experiments/", headers={"Authorization": "Bearer phx_x"}))
                unavailable(await client.post("/batch/", json={"api_key": "phc_x", "batch": [{"event": "a", "distinct_id": "u"}]}))
                unavailable(await client.post("/flags/?v=2", json={"token": "phc_x", "distinct_id": "u"}))
                unavailable(await client.post("/decide/?v=3", json={"token": "phc_x", "distinct_id": "u"}))
        finally:
            await app.state.db.dispose()


class TestPoolExhausted:
    async def test_no_free_connection_within_the_pool_timeout_answers_503(self, outage_app):
        state = outage_app.state.outage
        url = outage_app.state.settings.database_url
        app = create_app(Settings(database_url=url, run_worker=False, database_pool_size=1, database_max_overflow=0,
                                  database_pool_timeout_seconds=0.5))
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
                experiments = f"/api/projects/{state['project_id']}/experiments/"
                async with app.state.db.engine.connect() as held:  # the pool's only connection
                    await held.exec_driver_sql("SELECT 1")
                    unavailable(await client.get(experiments, headers=state["headers"]))
                assert (await client.get(experiments, headers=state["headers"])).status_code == 200
        finally:
            await app.state.db.dispose()
