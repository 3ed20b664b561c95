"""Rate-limit counters in PostgreSQL, so every worker of a deployment counts against one budget.

A `limits` storage. Each process counts locally and adds its count to the bucket's row (one
upsert in autocommit on its own pooled connection, so no request transaction holds the row),
reading back the total of every process, at most once per `sync_seconds` per bucket. A busy
bucket thus costs a few statements a second rather than one per request; between syncs a
process decides on the last total plus its own count, so the whole deployment can overshoot a
limit by what the other workers admit within one sync interval.
"""

import time
from dataclasses import dataclass

from limits.aio.storage import Storage
from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from experiments_service.models import RateLimitCounter

COUNTERS = RateLimitCounter.__table__


@dataclass
class _Bucket:
    hits: int = 0  # the deployment's total at the last sync, plus this process's hits since
    pending: int = 0  # this process's hits not yet written
    expires_at: float = 0.0  # end of the window, epoch seconds
    synced_at: float = 0.0
    syncing: bool = False


class DatabaseCounters(Storage):
    """`limits` storage over the `rate_limit_counters` table (one row per limited bucket)."""

    STORAGE_SCHEME = ["experiments+database"]

    def __init__(self, engine: AsyncEngine, sync_seconds: float = 0.1):
        super().__init__(wrap_exceptions=False)
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.sync_seconds = sync_seconds
        self.buckets: dict[str, _Bucket] = {}

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    async def _add(self, key: str, expiry: float, amount: int) -> tuple[int, float]:
        """Add `amount` to the bucket's row (a new window when the stored one is over); return
        the deployment's total and the window's end."""
        now_ms = int(time.time() * 1000)
        live = COUNTERS.c.expires_at > now_ms
        ends = now_ms + int(expiry * 1000)
        statement = (
            insert(COUNTERS)
            .values(bucket=key, expires_at=ends, hits=amount)
            .on_conflict_do_update(
                index_elements=[COUNTERS.c.bucket],
                set_={
                    "hits": case((live, COUNTERS.c.hits + amount), else_=amount),
                    "expires_at": case((live, COUNTERS.c.expires_at), else_=ends),
                },
            )
            .returning(COUNTERS.c.hits, COUNTERS.c.expires_at)
        )
        async with self.engine.connect() as connection:
            hits, expires_ms = (await connection.execute(statement)).one()
        return int(hits), expires_ms / 1000

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        bucket = self.buckets.get(key)
        if bucket is None or now >= bucket.expires_at:
            bucket = self.buckets[key] = _Bucket(expires_at=now + expiry)
        bucket.hits += amount
        bucket.pending += amount
        if bucket.syncing or now - bucket.synced_at < self.sync_seconds:
            return bucket.hits
        bucket.syncing = True
        sent, bucket.pending = bucket.pending, 0
        try:
            total, bucket.expires_at = await self._add(key, expiry, sent)
        except BaseException:
            bucket.pending += sent
            raise
        finally:
            bucket.syncing = False
        bucket.hits = total + bucket.pending  # hits admitted while the statement ran
        bucket.synced_at = time.time()
        return bucket.hits

    async def get(self, key: str) -> int:
        bucket = self.buckets.get(key)
        return bucket.hits if bucket is not None and time.time() < bucket.expires_at else 0

    async def get_expiry(self, key: str) -> float:
        bucket = self.buckets.get(key)
        return bucket.expires_at if bucket is not None else time.time()

    async def check(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(select(COUNTERS.c.bucket).limit(1))
        except SQLAlchemyError:
            return False
        return True

    async def reset(self) -> int | None:
        self.buckets.clear()
        async with self.engine.connect() as connection:
            return (await connection.execute(delete(COUNTERS))).rowcount

    async def clear(self, key: str) -> None:
        self.buckets.pop(key, None)
        async with self.engine.connect() as connection:
            await connection.execute(delete(COUNTERS).where(COUNTERS.c.bucket == key))
