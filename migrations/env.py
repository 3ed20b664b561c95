"""Async Alembic environment; batch mode so SQLite can alter tables.

Replicas may all migrate at start-up: on PostgreSQL the upgrade runs under a transaction-level
advisory lock, so one process migrates while the others wait and then find the schema at head;
on SQLite an exclusive lock on a file beside the database does the same.
"""

import asyncio
import fcntl
from contextlib import contextmanager, nullcontext
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from experiments_service.db import create_engine
from experiments_service.models import Base
from experiments_service.settings import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata

# pg_advisory_xact_lock key of schema migrations (any fixed bigint; this one spells "exp-migr").
MIGRATION_LOCK_KEY = 0x6578702D6D696772


def database_url() -> str:
    return config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


@contextmanager
def sqlite_file_lock(url: str):
    """Hold an exclusive lock on `<database file>.migrate-lock` (nothing to lock in memory)."""
    database = make_url(url).database
    if not database or database == ":memory:":
        yield
        return
    with open(Path(database).with_name(Path(database).name + ".migrate-lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


async def run_async_migrations() -> None:
    url = database_url()
    engine = create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    try:
        with sqlite_file_lock(url) if sqlite else nullcontext():
            async with engine.connect() as connection:
                if not sqlite:
                    # Held until the commit below: the upgrade reads the schema version only once it has it.
                    await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                await connection.run_sync(do_run_migrations)
                await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
