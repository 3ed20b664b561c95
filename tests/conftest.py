"""Test harness: real migrations on a fresh SQLite file and (when TEST_DATABASE_URL is set) a
fresh PostgreSQL database per run; every HTTP test runs once per database.

Tests isolate by data, not by rollback: each test makes its own project (every query is
project-scoped), so concurrent-request tests see real commits.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from experiments_service import migrate
from experiments_service.app import create_app
from experiments_service.auth.service import create_project, ensure_user, issue_personal_api_key
from experiments_service.settings import Settings
from tests.flags.live_server import create_postgres_database as _create_postgres_database
from tests.flags.live_server import drop_postgres_database as _drop_postgres_database

DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
async def database_urls(tmp_path_factory) -> AsyncIterator[dict[str, str]]:
    """Fresh, migrated databases for this run: always SQLite, PostgreSQL when configured."""
    urls = {"sqlite": f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"}
    pg_base = os.environ.get("TEST_DATABASE_URL")
    if pg_base:
        urls["postgresql"] = await _create_postgres_database(pg_base)
    for url in urls.values():
        await asyncio.to_thread(migrate.upgrade, url)
    yield urls
    if "postgresql" in urls:
        await _drop_postgres_database(urls["postgresql"])


@pytest.fixture(scope="session")
async def apps(database_urls):
    built = {name: create_app(Settings(database_url=url, run_worker=False)) for name, url in database_urls.items()}
    yield built
    for app in built.values():
        await app.state.db.dispose()


@pytest.fixture(params=DATABASES)
def db_name(request, database_urls) -> str:
    if request.param not in database_urls:
        pytest.skip("TEST_DATABASE_URL is not set")
    return request.param


@pytest.fixture
def app(apps, db_name):
    return apps[db_name]


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


@dataclass
class Kit:
    """A fresh project with an all-scopes key: what most tests start from."""

    app: object
    client: httpx.AsyncClient
    project_id: int
    project_api_key: str
    personal_api_key: str
    user_id: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"/api/projects/{self.project_id}"

    async def key(self, scopes: list[str], email: str | None = None) -> tuple[dict[str, str], int]:
        """Mint another key (optionally for another member) and return its headers and user id."""
        async with self.app.state.db.transaction() as session:
            from experiments_service.auth.repository import AuthRepository

            project = await AuthRepository(session).project(self.project_id)
            user = await ensure_user(session, email or f"user-{uuid.uuid4().hex[:8]}@example.com", project)
            issued = await issue_personal_api_key(session, user, scopes)
        return {"Authorization": f"Bearer {issued.secret}"}, user.id


async def make_kit(app, client, scopes: list[str] | None = None, email: str | None = None) -> Kit:
    async with app.state.db.transaction() as session:
        project = await create_project(session, f"project-{uuid.uuid4().hex[:8]}")
        user = await ensure_user(session, email or f"owner-{uuid.uuid4().hex[:8]}@example.com", project)
        issued = await issue_personal_api_key(session, user, scopes or ["*"])
    return Kit(
        app=app,
        client=client,
        project_id=project.id,
        project_api_key=project.api_token,
        personal_api_key=issued.secret,
        user_id=user.id,
        headers={"Authorization": f"Bearer {issued.secret}"},
    )


@pytest.fixture
async def kit(app, client) -> Kit:
    return await make_kit(app, client)
