"""The timeseries recalculation table used as a durable job queue."""

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import ExperimentTimeseriesRecalculation
from experiments_service.models.base import utcnow

ACTIVE_RECALCULATION_STATUSES = ("pending", "in_progress")


class JobQueue:
    """The recalculation table used as a durable queue (not project-scoped: the worker serves all)."""

    def __init__(self, session: AsyncSession):
        self.session = session

    async def claim(self, worker_id: str, stale_before: datetime) -> ExperimentTimeseriesRecalculation | None:
        """Take the oldest runnable job: pending, or in progress with a lock nobody refreshed.

        `FOR UPDATE SKIP LOCKED` keeps concurrent PostgreSQL workers off each other's candidate;
        the conditional UPDATE makes the claim a compare-and-set on either database.
        """
        model = ExperimentTimeseriesRecalculation
        runnable = or_(
            model.status == "pending",
            and_(model.status == "in_progress", or_(model.locked_at.is_(None), model.locked_at < stale_before)),
        )
        candidate = (
            await self.session.execute(
                select(model.id).where(runnable).order_by(model.created_at).limit(1).with_for_update(skip_locked=True)
            )
        ).scalar_one_or_none()
        if candidate is None:
            return None
        claimed = await self.session.execute(
            update(model)
            .where(model.id == candidate, runnable)
            .values(
                status="in_progress", locked_by=worker_id, locked_at=utcnow(), attempts=model.attempts + 1,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            return None
        return await self.session.get(model, candidate, populate_existing=True)

    async def get(self, job_id: UUID) -> ExperimentTimeseriesRecalculation | None:
        return await self.session.get(ExperimentTimeseriesRecalculation, job_id, populate_existing=True)

    async def heartbeat(self, job_id: UUID, worker_id: str, **values: Any) -> bool:
        """Refresh the lock (and record progress); False when another worker took the job over."""
        model = ExperimentTimeseriesRecalculation
        result = await self.session.execute(
            update(model)
            .where(model.id == job_id, model.locked_by == worker_id, model.status == "in_progress")
            .values(locked_at=utcnow(), updated_at=utcnow(), **values)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def finish(self, job_id: UUID, worker_id: str, status: str, error: str | None = None) -> None:
        model = ExperimentTimeseriesRecalculation
        await self.session.execute(
            update(model)
            .where(model.id == job_id, model.locked_by == worker_id)
            .values(status=status, error=error, locked_at=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )

