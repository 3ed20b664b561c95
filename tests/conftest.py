"""Test harness: real migrations on a fresh SQLite file and (when TEST_DATABASE_URL is set) a
fresh PostgreSQL database per run; every HTTP test runs once per database.

Tests isolate by data, not by rollback: each test makes its own project (every query is
project-scoped), so concurrent-request tests see real commits.
"""

import asyncio
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from experiments_service import migrate
from experiments_service.app import create_app
from experiments_service.settings import Settings
from tests.factories import Kit, make_kit
from tests.flags.live_server import create_postgres_database, drop_postgres_database

DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
async def database_urls(tmp_path_factory) -> AsyncIterator[dict[str, str]]:
    """Fresh, migrated databases for this run: always SQLite, PostgreSQL when configured."""
    urls = {"sqlite": f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"}
    pg_base = os.environ.get("TEST_DATABASE_URL")
    if pg_base:
        urls["postgresql"] = await create_postgres_database(pg_base)
    for url in urls.values():
        await asyncio.to_thread(migrate.upgrade, url)
    yield urls
    if "postgresql" in urls:
        await drop_postgres_database(urls["postgresql"])


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


@pytest.fixture
async def kit(app, client) -> Kit:
    return await make_kit(app, client)
