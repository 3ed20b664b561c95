"""The few reads the operational endpoints make (schema revision, job counts)."""

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import ExperimentTimeseriesRecalculation


async def schema_revisions(session: AsyncSession) -> set[str]:
    """The revisions Alembic recorded as applied (empty before the first migration)."""
    rows = await session.execute(text("SELECT version_num FROM alembic_version"))
    return {row[0] for row in rows}


async def timeseries_jobs_by_state(session: AsyncSession) -> dict[str, int]:
    job = ExperimentTimeseriesRecalculation
    rows = await session.execute(select(job.status, func.count()).group_by(job.status))
    return {status: count for status, count in rows}
