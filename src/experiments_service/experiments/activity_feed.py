"""One experiment's activity: its own entries, its flag's, and its holdout's and saved metrics'."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.approvals.schemas import ActivityLogEntry
from experiments_service.approvals.service import load_users
from experiments_service.experiments.auxiliary_repository import AuxiliaryRepository
from experiments_service.models import Experiment
from experiments_service.pagination import PageRequest


async def experiment_activity(
    session: AsyncSession, project_id: int, experiment: Experiment, page: PageRequest
) -> dict[str, Any]:
    """A page of the entries that concern this experiment, newest first."""
    repo = AuxiliaryRepository(session, project_id)
    entries, total = await repo.experiment_activity(
        page,
        experiment_id=experiment.id,
        flag_id=experiment.feature_flag_id,
        holdout_id=experiment.holdout_id,
        saved_metric_ids=await repo.saved_metric_ids_of(experiment.id),
    )
    users = await load_users(session, [entry.user_id for entry in entries])
    return page.envelope([ActivityLogEntry.of(entry, users) for entry in entries], total)
