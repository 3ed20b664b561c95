import os

import pytest

from tests.flags.live_server import create_postgres_database, drop_postgres_database


@pytest.fixture
async def fresh_database_url(db_name, tmp_path):
    """A database of the parametrised kind that nothing has migrated yet."""
    if db_name == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    url = await create_postgres_database(os.environ["TEST_DATABASE_URL"])
    yield url
    await drop_postgres_database(url)
