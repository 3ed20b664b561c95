"""Migrations: head matches the models exactly, and base <-> head round-trips, on both databases."""

import asyncio
import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from experiments_service import migrate
from experiments_service.db import create_engine
from experiments_service.models import Base
from tests.flags.live_server import create_postgres_database, drop_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set")
    url = await create_postgres_database(base)
    yield url
    await drop_postgres_database(url)


async def _schema_diff(url: str) -> list:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync_conn: compare_metadata(
                    MigrationContext.configure(sync_conn, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


async def _table_names(url: str) -> set[str]:
    from sqlalchemy import inspect

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync_conn: inspect(sync_conn).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_to_head_has_no_autogenerate_diff(empty_database_url):
    await asyncio.to_thread(migrate.upgrade, empty_database_url)
    assert await _schema_diff(empty_database_url) == []


async def test_downgrade_to_base_and_back_up(empty_database_url):
    await asyncio.to_thread(migrate.upgrade, empty_database_url)
    await asyncio.to_thread(migrate.downgrade, empty_database_url, "base")
    assert await _table_names(empty_database_url) <= {"alembic_version"}
    await asyncio.to_thread(migrate.upgrade, empty_database_url)
    assert set(Base.metadata.tables) <= await _table_names(empty_database_url)
    assert await _schema_diff(empty_database_url) == []
