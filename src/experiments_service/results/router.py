"""HTTP routes of the results domain (thin: parse, call the service, render)."""

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response, status
from pydantic import BaseModel, Field

from experiments_service.api_docs import PROJECT_READ, PROJECT_WRITE, DocumentedAs, error_responses
from experiments_service.auth.dependencies import ExperimentRead, ExperimentWrite
from experiments_service.deps import SessionDep, TransactionalRoute
from experiments_service.experiments.shapes import ExperimentMetric
from experiments_service.results.schemas import (
    ExperimentResultsOut,
    RecalculationOut,
    RequiresFlagImplementationOut,
    TimeseriesOut,
)
from experiments_service.results.service import ResultsService
from experiments_service.results.timeseries import TimeseriesService, recalculation_out
from experiments_service.results.worker import wake_worker

router = APIRouter(route_class=TransactionalRoute, tags=["results"])

EXPERIMENT_PATH = "/api/projects/{project_id}/experiments/{experiment_id}"
ERRORS = error_responses(
    400, *PROJECT_READ, e400="Invalid input, or the experiment has not started",
    e404="No such experiment (or metric) in this project",
)  # fmt: skip
WRITE_ERRORS = error_responses(*PROJECT_WRITE, e400=ERRORS[400]["description"], e404=ERRORS[404]["description"])


class RecalculateTimeseriesIn(BaseModel):
    """Which metric to recompute: the experiment's metric as returned (with its `uuid`) and its `fingerprint`."""

    metric: Annotated[dict[str, Any] | None, DocumentedAs(ExperimentMetric)] = Field(
        None, description="The full metric object, `uuid` included (required)."
    )
    fingerprint: str | None = Field(None, description="The metric's `fingerprint` as returned (required, 64 hex).")


@router.get(
    "/api/projects/{project_id}/experiments/requires_flag_implementation/",
    response_model=RequiresFlagImplementationOut,
    responses=ERRORS,
    summary="Whether the experiment's flag still needs implementing",
)
async def requires_flag_implementation(
    context: ExperimentRead,
    session: SessionDep,
    events: str | None = Query(None, description='Legacy insight filter: JSON list such as `[{"id": "$pageview"}]`.'),
    actions: str | None = Query(None, description="Legacy insight filter: JSON list of actions."),
    limit: int = Query(20, ge=1, le=1000, description="Events sampled per referenced event."),
) -> RequiresFlagImplementationOut:
    """Whether recent events of the filter lack `$feature/...` properties (flag not yet in code)."""
    service = ResultsService.for_project(session, context.project_id)
    return await service.requires_flag_implementation(events, actions, limit)


@router.get(
    f"{EXPERIMENT_PATH}/results/", response_model=ExperimentResultsOut, responses=ERRORS, summary="Experiment results"
)
async def experiment_results(
    experiment_id: int,
    context: ExperimentRead,
    session: SessionDep,
    metric_uuid: str | None = Query(None, description="Only this metric; every metric when omitted."),
) -> ExperimentResultsOut:
    """Exposures, sample-ratio check and per-metric statistics of every variant against the baseline."""
    service = ResultsService.for_project(session, context.project_id)
    return await service.experiment_results(experiment_id, metric_uuid)


@router.post(
    f"{EXPERIMENT_PATH}/recalculate_timeseries/",
    response_model=RecalculationOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        **WRITE_ERRORS,
        200: {"description": "A recalculation for this fingerprint is already active.", "model": RecalculationOut},
    },
    summary="Recalculate a metric's timeseries",
)
async def recalculate_timeseries(
    experiment_id: int,
    context: ExperimentWrite,
    session: SessionDep,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    body: RecalculateTimeseriesIn | None = None,
) -> RecalculationOut:
    """Queue a recalculation of a metric's daily cumulative results (201), or return the active one (200)."""
    service = TimeseriesService.for_project(session, context.project_id)
    job, created = await service.request_recalculation(experiment_id, body.model_dump() if body else {})
    if created:
        background.add_task(wake_worker, request.app)
    else:
        response.status_code = status.HTTP_200_OK
    return recalculation_out(job)


@router.get(
    f"{EXPERIMENT_PATH}/timeseries_results/",
    response_model=TimeseriesOut,
    responses=ERRORS,
    summary="A metric's daily cumulative results",
)
async def timeseries_results(
    experiment_id: int,
    context: ExperimentRead,
    session: SessionDep,
    metric_uuid: str | None = Query(None, description="The metric's `uuid` (required)."),
    fingerprint: str | None = Query(None, description="The metric's current `fingerprint` (required)."),
) -> TimeseriesOut:
    """A metric's stored daily cumulative results, keyed by project-timezone day."""
    service = TimeseriesService.for_project(session, context.project_id)
    return await service.timeseries(experiment_id, metric_uuid, fingerprint)
