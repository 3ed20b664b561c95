"""Operational endpoints: `/readyz`, `/version`, `/metrics` (beside `/healthz`); not part of the
public API schema."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from experiments_service import migrate
from experiments_service.observability import metrics
from experiments_service.observability.readiness import readiness, timeseries_job_gauge
from experiments_service.observability.version import __version__

router = APIRouter(tags=["ops"], include_in_schema=False)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when the database answers, its schema is at head and the job worker runs; else 503."""
    ready, body = await readiness(request.app)
    return JSONResponse(body, status_code=200 if ready else 503, headers={} if ready else {"Retry-After": "5"})


@router.get("/version")
async def version() -> dict[str, str]:
    """The service's version and the schema revision it expects."""
    return {"version": __version__, "schema_revision": ",".join(sorted(migrate.head_revisions()))}


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus text exposition, summed over every worker process of this server."""
    jobs = await timeseries_job_gauge(request.app)
    body, content_type = metrics.render(
        [("experiments_timeseries_jobs", "Timeseries recalculation jobs in the job table, by state.", "state", jobs)]
        if jobs
        else []
    )
    return Response(body, media_type=content_type)
