"""Experimentation velocity: how many experiments a project launched and completed lately."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.experiments.auxiliary_repository import AuxiliaryRepository
from experiments_service.models import Project


class VelocityStats(BaseModel):
    launched_last_30d: int
    launched_previous_30d: int
    percent_change: float
    active_experiments: int
    completed_last_30d: int


def _today(project: Project) -> datetime:
    """Midnight of the project's current calendar day (its time zone decides which day it is)."""
    try:
        zone = ZoneInfo(project.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.combine(datetime.now(zone).date(), time(0), tzinfo=UTC)


async def velocity_stats(session: AsyncSession, project: Project) -> VelocityStats:
    """Launches in the last 30 days against the 30 before, running experiments, recent completions.

    Deleted and archived experiments are not counted. `percent_change` is 100.0 when nothing was
    launched in the previous window but something was in the last one.
    """
    repo = AuxiliaryRepository(session, project.id)
    today = _today(project)
    tomorrow = today + timedelta(days=1)
    last_start = today - timedelta(days=30)
    previous_start = today - timedelta(days=60)
    launched_last = await repo.count_started_between(last_start, tomorrow)
    launched_previous = await repo.count_started_between(previous_start, last_start)
    if launched_previous == 0:
        percent_change = 100.0 if launched_last > 0 else 0.0
    else:
        percent_change = (launched_last - launched_previous) / launched_previous * 100
    return VelocityStats(
        launched_last_30d=launched_last,
        launched_previous_30d=launched_previous,
        percent_change=round(percent_change, 1),
        active_experiments=await repo.count_active(),
        completed_last_30d=await repo.count_ended_between(last_start, tomorrow),
    )
