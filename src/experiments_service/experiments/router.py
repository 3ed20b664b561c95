"""HTTP routes of the experiments domain (thin: parse, call the service, render)."""

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, WithJsonSchema
from pydantic import ValidationError as PydanticValidationError

from experiments_service.api_docs import PROJECT_READ, PROJECT_WRITE, approval_responses, error_responses
from experiments_service.auth.dependencies import ExperimentRead, ExperimentWrite, ProjectContext
from experiments_service.deps import SessionDep, TransactionalRoute
from experiments_service.errors import CustomBodyError, ParseError, validation_error_from_pydantic
from experiments_service.experiments.schemas import (
    EndRequest,
    ExperimentCreate,
    ExperimentList,
    ExperimentOut,
    ExperimentUpdate,
    ShipVariantRequest,
)
from experiments_service.experiments.service import LIST_ORDER_FIELDS, ExperimentService, parse_list_query
from experiments_service.pagination import PageDep

router = APIRouter(route_class=TransactionalRoute, tags=["experiments"])

BASE = "/api/projects/{project_id}/experiments/"
DETAIL = BASE + "{experiment_id:int}/"
MAX_PAGE_SIZE = 100
NO_EXPERIMENT = "No such experiment (or project) for this key"
READ_ERRORS = error_responses(*PROJECT_READ, e404=NO_EXPERIMENT)
LIST_ERRORS = error_responses(400, *PROJECT_READ)
ERRORS = error_responses(*PROJECT_WRITE, e404=NO_EXPERIMENT)
# Writes that change the feature flag pass the approval gate.
ACTION_ERRORS = {**ERRORS, **approval_responses()}


def _documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """Describe a leniently parsed action body in the OpenAPI document."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}


def _service(session: SessionDep, context: ProjectContext) -> ExperimentService:
    return ExperimentService(session, context.project_id, context.user)


async def _act(
    experiment_id: int, session: SessionDep, context: ProjectContext, step: Callable[..., Awaitable[Any]], *args: Any
) -> ExperimentOut:
    """Lock the experiment and its flag, run one lifecycle step on them, render the result."""
    service = _service(session, context)
    experiment, flag = await service.get_for_write(experiment_id)
    return await service.render(await step(service, experiment, flag, *args))


async def action_body(request: Request) -> dict[str, Any]:
    """An action's JSON body; empty or non-object bodies count as `{}` (as the reference ignores them)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError as error:
        raise ParseError(f"JSON parse error - {error}") from None
    return parsed if isinstance(parsed, dict) else {}


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except PydanticValidationError as error:
        raise validation_error_from_pydantic(list(error.errors())) from None


@router.get(BASE, response_model=ExperimentList, responses=LIST_ERRORS, summary="List experiments")
async def list_experiments(
    page: PageDep,
    session: SessionDep,
    context: ExperimentRead,
    status: Annotated[
        str | None,
        Query(description="`draft`, `running`, `paused`, `stopped` (or `complete`); other values: no filter."),
        WithJsonSchema({"type": "string", "enum": ["draft", "running", "paused", "stopped", "complete"]}),
    ] = None,
    archived: Annotated[str | None, Query(description="`true`: archived experiments only (default: not archived).")] = None,
    created_by_id: Annotated[
        str | None, Query(description="A user id, a comma-separated list or a JSON list of user ids.")
    ] = None,
    feature_flag_id: Annotated[
        str | None, Query(description="Only the experiment of this flag."), WithJsonSchema({"type": "integer"})
    ] = None,
    search: Annotated[str | None, Query(description="Case-insensitive match on the experiment's name.")] = None,
    event: Annotated[str | None, Query(description="Only experiments with a metric (inline or saved) on this event.")] = None,
    tags: Annotated[str | None, Query(description="Experiments with any of these tags: a JSON list or a comma-separated list.")] = None,
    excluded_tags: Annotated[
        str | None, Query(description="Experiments with none of these tags: a JSON list or a comma-separated list.")
    ] = None,
    order: Annotated[
        str | None,
        Query(description="Sort field, `-` prefix for descending (default `-created_at`)."),
        WithJsonSchema({"type": "string", "enum": [f"{sign}{field}" for field in LIST_ORDER_FIELDS for sign in ("", "-")]}),
    ] = None,
) -> dict[str, Any]:
    """The project's experiments (not deleted; archived only with `archived=true`), newest first, 100 at most a page."""
    page = dataclasses.replace(page, limit=min(page.limit, MAX_PAGE_SIZE))
    filters = {"status": status, "archived": archived, "created_by_id": created_by_id,
               "feature_flag_id": feature_flag_id, "search": search, "event": event, "tags": tags,
               "excluded_tags": excluded_tags, "order": order}  # fmt: skip
    query = parse_list_query(
        {name: value for name, value in filters.items() if value is not None}, limit=page.limit, offset=page.offset
    )
    count, results = await _service(session, context).page(query)
    return page.envelope(results, count)


@router.post(BASE, status_code=201, response_model=ExperimentOut, responses=ACTION_ERRORS, summary="Create an experiment")
async def create_experiment(data: ExperimentCreate, session: SessionDep, context: ExperimentWrite) -> ExperimentOut:
    """Create an experiment with a new feature flag, or linked to an existing one by key."""
    service = _service(session, context)
    return await service.render(await service.create(data))


@router.get(DETAIL, response_model=ExperimentOut, responses=READ_ERRORS, summary="Retrieve an experiment")
async def retrieve_experiment(experiment_id: int, session: SessionDep, context: ExperimentRead) -> ExperimentOut:
    """One experiment."""
    service = _service(session, context)
    return await service.render(await service.get(experiment_id))


async def _update(experiment_id: int, data: ExperimentUpdate, session: SessionDep, context: ProjectContext):
    service = _service(session, context)
    restoring = "deleted" in data.model_fields_set and data.deleted is False
    experiment, flag = await service.get_for_write(experiment_id, include_deleted=restoring)
    return await service.render(await service.update(experiment, flag, data))


@router.patch(DETAIL, response_model=ExperimentOut, responses=ACTION_ERRORS, summary="Update an experiment")
async def update_experiment(
    experiment_id: int, data: ExperimentUpdate, session: SessionDep, context: ExperimentWrite
) -> ExperimentOut:
    """Change an experiment; `start_date` launches a draft, `end_date` ends it, `deleted: false` restores it."""
    return await _update(experiment_id, data, session, context)


@router.put(DETAIL, response_model=ExperimentOut, responses=ACTION_ERRORS, summary="Update an experiment (PUT)")
async def replace_experiment(
    experiment_id: int, data: ExperimentUpdate, session: SessionDep, context: ExperimentWrite
) -> ExperimentOut:
    """Same as PATCH: only the keys sent change."""
    return await _update(experiment_id, data, session, context)


@router.delete(
    DETAIL,
    status_code=405,
    response_class=Response,
    responses={405: {"description": "Experiments are never hard-deleted"}, **error_responses(*PROJECT_READ)},
    summary="Delete an experiment (refused)",
)
async def destroy_experiment(experiment_id: int, context: ExperimentWrite) -> None:
    """Refused: soft-delete with `PATCH {"deleted": true}` instead."""
    raise CustomBodyError(405, None)


@router.post(DETAIL + "launch/", response_model=ExperimentOut, responses=ACTION_ERRORS, summary="Launch an experiment")
async def launch(experiment_id: int, session: SessionDep, context: ExperimentWrite) -> ExperimentOut:
    """Start a draft now and turn its feature flag on."""
    return await _act(experiment_id, session, context, ExperimentService.launch)


@router.post(DETAIL + "pause/", response_model=ExperimentOut, responses=ACTION_ERRORS, summary="Pause an experiment")
async def pause(experiment_id: int, session: SessionDep, context: ExperimentWrite) -> ExperimentOut:
    """Stop serving variants (flag off) without ending the experiment."""
    return await _act(experiment_id, session, context, ExperimentService.pause)


@router.post(DETAIL + "resume/", response_model=ExperimentOut, responses=ACTION_ERRORS, summary="Resume an experiment")
async def resume(experiment_id: int, session: SessionDep, context: ExperimentWrite) -> ExperimentOut:
    """Serve variants again (flag on)."""
    return await _act(experiment_id, session, context, ExperimentService.resume)


@router.post(
    DETAIL + "end/",
    response_model=ExperimentOut,
    responses=ERRORS,
    openapi_extra=_documented_body(EndRequest),
    summary="End an experiment",
)
async def end(
    experiment_id: int,
    session: SessionDep,
    context: ExperimentWrite,
    body: dict[str, Any] = Depends(action_body),
) -> ExperimentOut:
    """End a running or paused experiment; body `{conclusion, conclusion_comment}` (both optional)."""
    request = _parse(EndRequest, body)
    return await _act(experiment_id, session, context, ExperimentService.end, request)


@router.post(
    DETAIL + "ship_variant/",
    response_model=ExperimentOut,
    responses=ACTION_ERRORS,
    openapi_extra=_documented_body(ShipVariantRequest),
    summary="Ship a variant and end the experiment",
)
async def ship_variant(
    experiment_id: int,
    session: SessionDep,
    context: ExperimentWrite,
    body: dict[str, Any] = Depends(action_body),
) -> ExperimentOut:
    """Serve one variant to everyone (`release_to_everyone`, default true) and end the experiment.

    Body: `{variant_key, release_to_everyone?, conclusion?, conclusion_comment?}`.
    """
    request = _parse(ShipVariantRequest, body)
    return await _act(experiment_id, session, context, ExperimentService.ship_variant, request)


@router.post(DETAIL + "reset/", response_model=ExperimentOut, responses=ERRORS, summary="Reset an experiment to draft")
async def reset(experiment_id: int, session: SessionDep, context: ExperimentWrite) -> ExperimentOut:
    """Back to draft: dates, archive flag and conclusion cleared; the feature flag is left alone."""
    return await _act(experiment_id, session, context, ExperimentService.reset)


@router.post(DETAIL + "archive/", response_model=ExperimentOut, responses=ERRORS, summary="Archive an experiment")
async def archive(experiment_id: int, session: SessionDep, context: ExperimentWrite) -> ExperimentOut:
    """Hide an ended experiment from the default list."""
    return await _act(experiment_id, session, context, ExperimentService.archive)


@router.post(DETAIL + "unarchive/", response_model=ExperimentOut, responses=ERRORS, summary="Unarchive an experiment")
async def unarchive(experiment_id: int, session: SessionDep, context: ExperimentWrite) -> ExperimentOut:
    """Show an archived experiment in the default list again."""
    return await _act(experiment_id, session, context, ExperimentService.unarchive)
