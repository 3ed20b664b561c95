"""HTTP routes for cohorts. Create and update take JSON, or a multipart form with a `csv` file
for a static cohort's members (as PostHog's UI uploads them)."""

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from experiments_service.auth.dependencies import CohortRead, CohortWrite
from experiments_service.cohorts.schemas import CohortCreate, CohortOut, CohortUpdate
from experiments_service.cohorts.service import CohortService
from experiments_service.deps import SessionDep, TransactionalRoute
from experiments_service.api_docs import error_responses
from experiments_service.errors import ParseError, validation_error_from_pydantic
from experiments_service.pagination import Page, PageDep

ERRORS = error_responses(400, 401, 403, 404, e404="No such project, or no such cohort in it")
COHORTS = "/api/projects/{project_id}/cohorts/"

router = APIRouter(route_class=TransactionalRoute, tags=["cohorts"], responses=ERRORS)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The request body as OpenAPI should show it (read by hand so multipart works too)."""
    form = {"type": "object", "properties": {
        "name": {"type": "string"}, "description": {"type": "string"}, "is_static": {"type": "boolean"},
        "csv": {"type": "string", "format": "binary"},
    }}  # fmt: skip
    return {"requestBody": {"content": {
        "application/json": {"schema": model.model_json_schema()},
        "multipart/form-data": {"schema": form},
    }}}  # fmt: skip


_FORM_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


async def _read_body(request: Request, model: type[BaseModel]) -> tuple[Any, bytes | None]:
    """The validated fields and the uploaded CSV (None without one)."""
    csv_file = None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                if key == "csv":
                    csv_file = await value.read()
            elif key in ("is_static", "deleted"):
                fields[key] = _FORM_BOOLEANS.get(value.lower(), value)
            else:
                fields[key] = value
    else:
        raw = await request.body()
        try:
            fields = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as error:
            raise ParseError(f"JSON parse error - {error}") from None
    try:
        return model.model_validate(fields), csv_file
    except PydanticValidationError as error:
        raise validation_error_from_pydantic([{**item, "loc": ("body", *item["loc"])} for item in error.errors()]) from None


@router.get(COHORTS, response_model=Page[CohortOut], summary="List cohorts")
async def list_cohorts(
    project_id: int,
    ctx: CohortRead,
    session: SessionDep,
    page: PageDep,
    type: Annotated[str | None, Query(description="`static` or `dynamic`")] = None,
    search: Annotated[str | None, Query(description="Part of the name")] = None,
) -> dict:
    """List the project's cohorts (deleted ones left out), newest first."""
    service = CohortService(session, ctx.project_id, ctx.user)
    rows, count = await service.list_page(page, type, search)
    return page.envelope(await service.render(rows), count)


@router.post(COHORTS, response_model=CohortOut, status_code=201, summary="Create a cohort", openapi_extra=_body_schema(CohortCreate))
async def create_cohort(project_id: int, request: Request, ctx: CohortWrite, session: SessionDep) -> CohortOut:
    """Create a dynamic cohort (person-property `filters`) or a static one (distinct ids or a CSV)."""
    data, csv_file = await _read_body(request, CohortCreate)
    service = CohortService(session, ctx.project_id, ctx.user)
    return await service.render_one(await service.create(data, csv_file))


@router.get(COHORTS + "{cohort_id}/", response_model=CohortOut, responses=ERRORS, summary="Retrieve a cohort")
async def retrieve_cohort(project_id: int, cohort_id: int, ctx: CohortRead, session: SessionDep) -> CohortOut:
    """One cohort of the project (soft-deleted ones too, as PostHog shows them)."""
    service = CohortService(session, ctx.project_id, ctx.user)
    return await service.render_one(await service.get(cohort_id))


@router.patch(COHORTS + "{cohort_id}/", response_model=CohortOut, responses=ERRORS, summary="Update a cohort",
              openapi_extra=_body_schema(CohortUpdate))  # fmt: skip
async def update_cohort(
    project_id: int, cohort_id: int, request: Request, ctx: CohortWrite, session: SessionDep
) -> CohortOut:
    """Change a cohort; `deleted: true` soft-deletes it unless an active flag uses it."""
    data, csv_file = await _read_body(request, CohortUpdate)
    service = CohortService(session, ctx.project_id, ctx.user)
    return await service.render_one(await service.update(await service.get(cohort_id), data, csv_file))
