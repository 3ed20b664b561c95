"""List filters that need more than a column match: the metric event, tags and excluded tags."""

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.experiments import metrics as metric_rules
from experiments_service.experiments.auxiliary_repository import AuxiliaryRepository


async def experiments_using_event(session: AsyncSession, project_id: int, event: str) -> set[int]:
    """Live experiments with an inline or saved metric whose EventsNode names `event`.

    Metrics are free-form JSON, so they are matched in Python with the same walk the metric
    checks use; a project holds few enough experiments for that.
    """
    repo = AuxiliaryRepository(session, project_id)
    found = {
        experiment_id
        for experiment_id, primary, secondary in await repo.metric_definitions()
        if event in metric_rules.referenced_event_names(
            [m for m in list(primary) + list(secondary) if isinstance(m, dict)]
        )
    }
    found |= {
        experiment_id
        for experiment_id, query in await repo.saved_metric_queries()
        if isinstance(query, dict) and event in metric_rules.referenced_event_names([query])
    }
    return found
