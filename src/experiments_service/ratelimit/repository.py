"""Rate-limit counters in PostgreSQL, so every worker of a deployment counts against one budget.

A `limits` storage: the fixed-window strategy calls `incr` once per request (one upsert, in
autocommit on its own pooled connection, so no request transaction ever holds the row) and
`get`/`get_expiry` only to say when a refused client may retry.
"""

import time

from limits.aio.storage import Storage
from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from experiments_service.models import RateLimitCounter


def _now_ms() -> int:
    return int(time.time() * 1000)


class DatabaseCounters(Storage):
    """`limits` storage over the `rate_limit_counters` table (one row per limited bucket)."""

    STORAGE_SCHEME = ["experiments+database"]

    def __init__(self, engine: AsyncEngine):
        super().__init__(wrap_exceptions=False)
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = _now_ms()
        table = RateLimitCounter.__table__
        live = table.c.expires_at > now
        statement = (
            insert(table)
            .values(bucket=key, expires_at=now + int(expiry * 1000), hits=amount)
            .on_conflict_do_update(
                index_elements=[table.c.bucket],
                set_={
                    "hits": case((live, table.c.hits + amount), else_=amount),
                    "expires_at": case((live, table.c.expires_at), else_=now + int(expiry * 1000)),
                },
            )
            .returning(table.c.hits)
        )
        async with self.engine.connect() as connection:
            return int((await connection.execute(statement)).scalar_one())

    async def _row(self, key: str) -> tuple[int, int] | None:
        table = RateLimitCounter.__table__
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(select(table.c.hits, table.c.expires_at).where(table.c.bucket == key))
            ).first()
        return None if row is None else (int(row[0]), int(row[1]))

    async def get(self, key: str) -> int:
        row = await self._row(key)
        return row[0] if row is not None and row[1] > _now_ms() else 0

    async def get_expiry(self, key: str) -> float:
        row = await self._row(key)
        return row[1] / 1000 if row is not None and row[1] > _now_ms() else time.time()

    async def check(self) -> bool:
        try:
            await self._row("")
        except SQLAlchemyError:
            return False
        return True

    async def reset(self) -> int | None:
        async with self.engine.connect() as connection:
            return (await connection.execute(delete(RateLimitCounter.__table__))).rowcount

    async def clear(self, key: str) -> None:
        table = RateLimitCounter.__table__
        async with self.engine.connect() as connection:
            await connection.execute(delete(table).where(table.c.bucket == key))
