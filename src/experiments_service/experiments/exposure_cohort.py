"""PostHog's `create_exposure_cohort_for_experiment`: the persons exposed to an experiment, as its
results count them, frozen into a static cohort that flags and other experiments can target."""

from datetime import UTC, datetime

from experiments_service.cohorts.repository import CohortRepository
from experiments_service.cohorts.schemas import CohortCreate
from experiments_service.cohorts.service import CohortService
from experiments_service.errors import ValidationError
from experiments_service.models import Cohort, User
from experiments_service.results.service import ResultsService

NO_FLAG = "Experiment does not have a feature flag"
NO_START_DATE = "Experiment does not have a start date"


def cohort_name(experiment_name: str) -> str:
    return f'Users exposed to experiment "{experiment_name}"'


async def create_exposure_cohort(session, project_id: int, actor: User, experiment_id: int) -> Cohort:
    """Refusals come before anything is written; the cohort and its members are one change."""
    results = ResultsService.for_project(session, project_id)
    experiment = await results.experiment(experiment_id)
    if await results.flags.get(experiment.feature_flag_id) is None:
        raise ValidationError(NO_FLAG)
    if experiment.start_date is None:
        raise ValidationError(NO_START_DATE)
    now = datetime.now(UTC)
    until = min(experiment.end_date, now) if experiment.end_date else now
    rules, _ = await results.exposure_rules(experiment, until)
    exposed = await results.repository.exposed_persons(rules)
    cohorts = CohortService(session, project_id, actor)
    cohort = await cohorts.create(CohortCreate(name=cohort_name(experiment.name), is_static=True), None)
    await CohortRepository(session, project_id).add_members(cohort.id, exposed)
    return cohort
