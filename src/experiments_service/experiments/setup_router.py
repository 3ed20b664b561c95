"""HTTP routes for what an experiment is set up with: holdouts, saved metrics, eligible flags.

Included before the experiments router so `experiments/eligible_feature_flags/` is not read as
an experiment id.
"""

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, WithJsonSchema

from experiments_service.api_docs import PROJECT_READ, PROJECT_WRITE, ErrorBody, approval_responses, error_responses
from experiments_service.auth.dependencies import ExperimentRead, ExperimentWrite, FeatureFlagRead
from experiments_service.deps import SessionDep, TransactionalRoute
from experiments_service.flags.eligible import EligibleFlagsPage, EligibleFlagsQuery, eligible_flags
from experiments_service.experiments.holdouts import HoldoutCreate, HoldoutOut, HoldoutService, HoldoutUpdate
from experiments_service.experiments.saved_metrics import (
    SavedMetricCreate,
    SavedMetricOut,
    SavedMetricService,
    SavedMetricUpdate,
)
from experiments_service.pagination import Page, PageDep

READ_ERRORS = error_responses(*PROJECT_READ)
ERRORS = error_responses(*PROJECT_WRITE)
# Holdout changes are re-applied to the flags of the experiments using them (approval gate).
HOLDOUT_WRITE_ERRORS = {**ERRORS, **approval_responses()}

holdouts = APIRouter(route_class=TransactionalRoute, tags=["experiment_holdouts"])
HOLDOUTS = "/api/projects/{project_id}/experiment_holdouts/"


@holdouts.get(HOLDOUTS, response_model=Page[HoldoutOut], responses=READ_ERRORS, summary="List holdouts")
async def list_holdouts(project_id: int, ctx: ExperimentRead, session: SessionDep, page: PageDep) -> dict:
    """List the project's holdouts, newest first."""
    service = HoldoutService(session, ctx.project_id, ctx.user)
    rows, count = await service.list_page(page)
    return page.envelope(await service.render(rows), count)


@holdouts.post(HOLDOUTS, response_model=HoldoutOut, status_code=201, responses=ERRORS, summary="Create a holdout")
async def create_holdout(project_id: int, body: HoldoutCreate, ctx: ExperimentWrite, session: SessionDep) -> HoldoutOut:
    """Create a holdout; its groups get the variant `holdout-<id>`."""
    service = HoldoutService(session, ctx.project_id, ctx.user)
    return await service.render_one(await service.create(body))


@holdouts.get(HOLDOUTS + "{holdout_id}/", response_model=HoldoutOut, responses=READ_ERRORS, summary="Retrieve a holdout")
async def retrieve_holdout(project_id: int, holdout_id: int, ctx: ExperimentRead, session: SessionDep) -> HoldoutOut:
    """One holdout of the project."""
    service = HoldoutService(session, ctx.project_id, ctx.user)
    return await service.render_one(await service.get(holdout_id))


@holdouts.patch(
    HOLDOUTS + "{holdout_id}/", response_model=HoldoutOut, responses=HOLDOUT_WRITE_ERRORS, summary="Update a holdout"
)
async def update_holdout(
    project_id: int, holdout_id: int, body: HoldoutUpdate, ctx: ExperimentWrite, session: SessionDep
) -> HoldoutOut:
    """Change a holdout; new groups are re-applied to the flags of experiments using it."""
    service = HoldoutService(session, ctx.project_id, ctx.user)
    holdout = await service.update(await service.get(holdout_id), body)
    return await service.render_one(holdout)


@holdouts.put(
    HOLDOUTS + "{holdout_id}/", response_model=HoldoutOut, responses=HOLDOUT_WRITE_ERRORS, summary="Replace a holdout"
)
async def replace_holdout(
    project_id: int, holdout_id: int, body: HoldoutCreate, ctx: ExperimentWrite, session: SessionDep
) -> HoldoutOut:
    """Update a holdout, `name` required (PUT); fields left out keep their values."""
    service = HoldoutService(session, ctx.project_id, ctx.user)
    holdout = await service.update(await service.get(holdout_id), body)
    return await service.render_one(holdout)


@holdouts.delete(
    HOLDOUTS + "{holdout_id}/",
    status_code=204,
    response_class=Response,
    responses=HOLDOUT_WRITE_ERRORS,
    summary="Delete a holdout",
)
async def delete_holdout(project_id: int, holdout_id: int, ctx: ExperimentWrite, session: SessionDep) -> Response:
    """Delete a holdout and detach it from the experiments and flags using it."""
    service = HoldoutService(session, ctx.project_id, ctx.user)
    await service.delete(await service.get(holdout_id))
    return Response(status_code=204)


saved_metrics = APIRouter(route_class=TransactionalRoute, tags=["experiment_saved_metrics"])
SAVED_METRICS = "/api/projects/{project_id}/experiment_saved_metrics/"


@saved_metrics.get(
    SAVED_METRICS, response_model=Page[SavedMetricOut], responses=READ_ERRORS, summary="List saved metrics"
)
async def list_saved_metrics(project_id: int, ctx: ExperimentRead, session: SessionDep, page: PageDep) -> dict:
    """List the project's saved metrics, newest first."""
    service = SavedMetricService(session, ctx.project_id, ctx.user)
    rows, count = await service.list_page(page)
    return page.envelope(await service.render(rows), count)


@saved_metrics.post(
    SAVED_METRICS, response_model=SavedMetricOut, status_code=201, responses=ERRORS, summary="Create a saved metric"
)
async def create_saved_metric(
    project_id: int, body: SavedMetricCreate, ctx: ExperimentWrite, session: SessionDep
) -> SavedMetricOut:
    """Save an `ExperimentMetric` query under a name (its `uuid` is assigned if missing)."""
    service = SavedMetricService(session, ctx.project_id, ctx.user)
    return await service.render_one(await service.create(body))


@saved_metrics.get(
    SAVED_METRICS + "{saved_metric_id}/",
    response_model=SavedMetricOut,
    responses=READ_ERRORS,
    summary="Retrieve a saved metric",
)
async def retrieve_saved_metric(
    project_id: int, saved_metric_id: int, ctx: ExperimentRead, session: SessionDep
) -> SavedMetricOut:
    """One saved metric of the project."""
    service = SavedMetricService(session, ctx.project_id, ctx.user)
    return await service.render_one(await service.get(saved_metric_id))


@saved_metrics.patch(
    SAVED_METRICS + "{saved_metric_id}/", response_model=SavedMetricOut, responses=ERRORS, summary="Update a saved metric"
)
async def update_saved_metric(
    project_id: int, saved_metric_id: int, body: SavedMetricUpdate, ctx: ExperimentWrite, session: SessionDep
) -> SavedMetricOut:
    """Change a saved metric; the query keeps its `uuid`."""
    service = SavedMetricService(session, ctx.project_id, ctx.user)
    metric = await service.update(await service.get(saved_metric_id), body)
    return await service.render_one(metric)


@saved_metrics.put(
    SAVED_METRICS + "{saved_metric_id}/", response_model=SavedMetricOut, responses=ERRORS, summary="Replace a saved metric"
)
async def replace_saved_metric(
    project_id: int, saved_metric_id: int, body: SavedMetricCreate, ctx: ExperimentWrite, session: SessionDep
) -> SavedMetricOut:
    """Update a saved metric, `name` required (PUT); fields left out keep their values."""
    service = SavedMetricService(session, ctx.project_id, ctx.user)
    metric = await service.update(await service.get(saved_metric_id), body)
    return await service.render_one(metric)


@saved_metrics.delete(
    SAVED_METRICS + "{saved_metric_id}/",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
    summary="Delete a saved metric",
)
async def delete_saved_metric(project_id: int, saved_metric_id: int, ctx: ExperimentWrite, session: SessionDep) -> Response:
    """Delete a saved metric and its links to experiments."""
    service = SavedMetricService(session, ctx.project_id, ctx.user)
    await service.delete(await service.get(saved_metric_id))
    return Response(status_code=204)


class InvalidPageBody(BaseModel):
    """The eligible-flags list's own 400 for a limit or offset that is not a number."""

    error: str


eligible = APIRouter(route_class=TransactionalRoute, tags=["experiments"])


@eligible.get(
    "/api/projects/{project_id}/experiments/eligible_feature_flags/",
    response_model=EligibleFlagsPage,
    responses={
        **error_responses(*PROJECT_READ),
        400: {
            "model": ErrorBody | InvalidPageBody,
            "description": 'Invalid `order` (error envelope), or `{"error": "Invalid limit or offset"}`',
        },
    },
    summary="List flags eligible for an experiment",
)
async def eligible_feature_flags(
    project_id: int,
    ctx: FeatureFlagRead,
    session: SessionDep,
    limit: Annotated[
        str | None, Query(description="Page size (default 20, at most 100)."), WithJsonSchema({"type": "integer"})
    ] = None,
    offset: Annotated[
        str | None, Query(description="Index of the first result (default 0)."), WithJsonSchema({"type": "integer"})
    ] = None,
    search: Annotated[str | None, Query(description="Case-insensitive match on key or name.")] = None,
    active: Annotated[str | None, Query(description='"true": active flags only; any other value: inactive only.')] = None,
    created_by_id: Annotated[str | None, Query(description="Only flags created by this user.")] = None,
    order: Annotated[str | None, Query(description="created_at, key or name, optionally prefixed with -.")] = None,
    evaluation_runtime: Annotated[
        str | None,
        Query(description="server, client or all."),
        WithJsonSchema({"type": "string", "enum": ["server", "client", "all"]}),
    ] = None,
    has_evaluation_contexts: Annotated[
        str | None, Query(description="true/1/yes: flags with evaluation contexts; other values: without.")
    ] = None,
) -> EligibleFlagsPage:
    """Multivariate flags (at least two variants, `control` first) that can back an experiment."""
    params = EligibleFlagsQuery(
        limit=limit, offset=offset, search=search, active=active, created_by_id=created_by_id, order=order,
        evaluation_runtime=evaluation_runtime, has_evaluation_contexts=has_evaluation_contexts,
    )  # fmt: skip
    return await eligible_flags(session, ctx.project_id, params)


router = APIRouter()
for sub_router in (eligible, holdouts, saved_metrics):
    router.include_router(sub_router)
