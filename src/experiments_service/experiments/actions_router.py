"""HTTP routes beside experiment CRUD: copies, exposure cohorts, velocity stats, activity, bulk tags, running time."""

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from experiments_service.approvals.schemas import ActivityLogEntry
from experiments_service.auth.dependencies import ExperimentRead, ExperimentWrite
from experiments_service.cohorts.schemas import CohortOut
from experiments_service.cohorts.service import CohortService
from experiments_service.deps import SessionDep, TransactionalRoute
from experiments_service.experiments.activity_feed import experiment_activity
from experiments_service.experiments.exposure_cohort import create_exposure_cohort
from experiments_service.experiments.duplication import CopyToProjectRequest, DuplicateRequest, ExperimentCopier
from experiments_service.api_docs import DetailBody, ErrorBody
from experiments_service.experiments.router import ERRORS, _documented_body, _parse, action_body
from experiments_service.experiments.running_time import RunningTimeRequest, RunningTimeResult
from experiments_service.experiments.running_time import calculate_running_time as compute_running_time
from experiments_service.experiments.schemas import ExperimentOut
from experiments_service.experiments.service import ExperimentService
from experiments_service.experiments.tags import BulkUpdateTagsRequest, BulkUpdateTagsResult, TagService
from experiments_service.experiments.velocity_stats import VelocityStats, velocity_stats
from experiments_service.pagination import Page, PageDep

router = APIRouter(route_class=TransactionalRoute, tags=["experiments"])

BASE = "/api/projects/{project_id}/experiments/"
DETAIL = BASE + "{experiment_id:int}/"
COPY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {
        "model": ErrorBody | DetailBody,
        "description": 'The key lacks the scope, or may not write the target project (`{"detail": ...}`)',
    },
    404: {
        "model": ErrorBody | DetailBody,
        "description": 'No such experiment, or no such target project (`{"detail": "Target team not found."}`)',
    },
}


@router.post(
    DETAIL + "duplicate/",
    status_code=201,
    response_model=ExperimentOut,
    responses=ERRORS,
    openapi_extra=_documented_body(DuplicateRequest),
)
async def duplicate(
    experiment_id: int, session: SessionDep, context: ExperimentWrite, body: dict[str, Any] = Depends(action_body)
) -> ExperimentOut:
    """A new draft with the source's settings and metrics, named `X (Copy)`; `feature_flag_key` picks another flag."""
    copier = ExperimentCopier(session, context.project_id, context.user)
    service, experiment = await copier.duplicate(experiment_id, _parse(DuplicateRequest, body))
    return await service.render(experiment)


@router.post(
    DETAIL + "copy_to_project/",
    summary="Copy an experiment to another project",
    status_code=201,
    response_model=ExperimentOut,
    responses=COPY_ERRORS,
    openapi_extra=_documented_body(CopyToProjectRequest),
)
async def copy_to_project(
    experiment_id: int, session: SessionDep, context: ExperimentWrite, body: dict[str, Any] = Depends(action_body)
) -> ExperimentOut:
    """A draft copy in project `target_team_id` (its flag created there, disabled, unless the key exists)."""
    copier = ExperimentCopier(session, context.project_id, context.user)
    service, experiment = await copier.copy_to_project(experiment_id, _parse(CopyToProjectRequest, body), context.key)
    return await service.render(experiment)


class ExposureCohortResult(BaseModel):
    cohort: CohortOut


@router.post(DETAIL + "create_exposure_cohort_for_experiment/", status_code=201, response_model=ExposureCohortResult,
             responses=ERRORS, summary="Make a static cohort of the exposed persons")  # fmt: skip
async def create_exposure_cohort_for_experiment(
    experiment_id: int, session: SessionDep, context: ExperimentWrite
) -> ExposureCohortResult:
    """A static cohort of the persons exposed so far (as results count them), named `Users exposed to experiment "X"`."""
    cohort = await create_exposure_cohort(session, context.project_id, context.user, experiment_id)
    return ExposureCohortResult(cohort=await CohortService(session, context.project_id, context.user).render_one(cohort))


@router.get(BASE + "stats/", response_model=VelocityStats, responses=ERRORS)
async def stats(session: SessionDep, context: ExperimentRead) -> VelocityStats:
    """Experiments launched in the last 30 days against the 30 before, running ones, recent completions."""
    return await velocity_stats(session, context.project)


@router.get(DETAIL + "activity/", response_model=Page[ActivityLogEntry], responses=ERRORS)
async def activity(experiment_id: int, session: SessionDep, context: ExperimentRead, page: PageDep) -> dict:
    """This experiment's activity (and its flag's, holdout's and saved metrics'), newest first."""
    experiment = await ExperimentService(session, context.project_id, context.user).get(experiment_id)
    return await experiment_activity(session, context.project_id, experiment, page)


@router.post(BASE + "bulk_update_tags/", response_model=BulkUpdateTagsResult, summary="Add, remove or set tags on experiments", responses=ERRORS)
async def bulk_update_tags(
    body: BulkUpdateTagsRequest, session: SessionDep, context: ExperimentWrite
) -> BulkUpdateTagsResult:
    """Add, remove or set tags on many experiments; ids that are not live experiments here are skipped."""
    return await TagService(session, context.project_id).bulk_update(body)


@router.post(BASE + "calculate_running_time/", response_model=RunningTimeResult, summary="Estimate an experiment's running time", responses=ERRORS)
async def calculate_running_time(body: RunningTimeRequest, context: ExperimentRead) -> RunningTimeResult:
    """Sample size (and days, given the daily exposure rate) to detect `minimum_detectable_effect` percent."""
    return compute_running_time(body)
