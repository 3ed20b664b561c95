"""Engine and session factory: one code path for SQLite (embedded) and PostgreSQL."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Table, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from experiments_service.settings import Settings


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, **kwargs) -> AsyncEngine:
    """Create the engine; SQLite gets one serialised connection so writers never race."""
    if is_sqlite_url(url):
        engine = create_async_engine(
            url,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            connect_args={"timeout": 30},
            **kwargs,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - driver glue
            # Let SQLAlchemy emit BEGIN itself so SAVEPOINTs and rollbacks behave.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - driver glue
            conn.exec_driver_sql("BEGIN")

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # A pooled connection the server dropped (restart, pg_terminate_backend, idle timeout) is
    # replaced at checkout instead of failing the request that drew it.
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def engine_options(settings: Settings) -> dict:
    """Pool and connect settings for a PostgreSQL engine (SQLite keeps its one connection)."""
    if is_sqlite_url(settings.database_url):
        return {}
    return {
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_max_overflow,
        "pool_timeout": settings.database_pool_timeout_seconds,
        "pool_recycle": settings.database_pool_recycle_seconds,
        "connect_args": {"timeout": settings.database_connect_timeout_seconds},
    }


def insert_on_conflict(session: AsyncSession, table: Table):
    """A Core `INSERT` that takes `ON CONFLICT` clauses, in the session's dialect (on the table,
    not the ORM entity: plain executemany without per-row ORM bookkeeping)."""
    dialect = session.get_bind().dialect.name
    return (postgresql_insert if dialect == "postgresql" else sqlite_insert)(table)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


class Database:
    """The engine and session factory a running app (or CLI command) uses."""

    def __init__(self, settings: Settings):
        self.url = settings.database_url
        self.engine = create_engine(self.url, **engine_options(settings))
        self.sessionmaker = create_sessionmaker(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite_url(self.url)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on error."""
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()
