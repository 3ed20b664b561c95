"""HTTP routes of the events domain (thin: parse, call the service, render)."""

from fastapi import APIRouter, Request, Response

from experiments_service.deps import TransactionalRoute
from experiments_service.events.schemas import CaptureErrorBody, CaptureResponse
from experiments_service.events.service import CaptureService, RecentEventNames
from experiments_service.flags.cache import flag_cache
from experiments_service.middleware import read_body_within, sdk_cors_headers
from experiments_service.ratelimit import rate_limit_project_token

router = APIRouter(route_class=TransactionalRoute, tags=["events"])

# PostHog's capture paths, all with the same behaviour (the SDKs' default is `/batch/`).
CAPTURE_PATHS = {
    "/batch/": "capture_batch",
    "/capture/": "capture_event",
    "/e/": "capture_e",
    "/i/v0/e/": "capture_i_v0_e",
}
_CAPTURE_SUMMARIES = {
    "/batch/": "Capture a batch of events (SDK)",
    "/capture/": "Capture events (SDK)",
    "/e/": "Capture events, browser path (SDK)",
    "/i/v0/e/": "Capture events, ingestion path (SDK)",
}

_CAPTURE_BODY = {
    "required": True,
    "description": (
        "A PostHog capture payload: one event object, `{\"api_key\", \"batch\": [...], \"sent_at\"}`, or a bare "
        "list of events; JSON, gzip (`Content-Encoding: gzip` or `?compression=gzip`), base64, or form `data=`."
    ),
    "content": {
        "application/json": {"schema": {"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}}
    },
}
_CAPTURE_ERRORS = {
    400: {"model": CaptureErrorBody, "description": "The body cannot be read"},
    401: {"model": CaptureErrorBody, "description": "Project API key missing or invalid"},
    413: {"model": CaptureErrorBody, "description": "Body (or its decompressed form) over the size limit"},
}


_ACCEPTED = CaptureResponse().model_dump_json().encode()


def recent_event_names(request: Request) -> RecentEventNames:
    """The app's record of recently written event names (one per app, so per database)."""
    state = request.app.state
    if not hasattr(state, "recent_event_names"):
        state.recent_event_names = RecentEventNames()
    return state.recent_event_names


async def respond_capture(request: Request) -> Response:
    """Answer one capture request in its own transaction (served ahead of routing by
    `SDKFastPath`, and by the documented routes below)."""
    max_bytes = request.app.state.settings.max_body_bytes
    body = await read_body_within(request, max_bytes)
    project_for_token = flag_cache(request.app).project_id_for_token

    async def rate_limited_project(token: str) -> int | None:
        project_id = await project_for_token(token)
        if project_id is not None:
            await rate_limit_project_token(request, project_id)
        return project_id

    async with request.app.state.db.transaction() as session:
        await CaptureService(session, recent_event_names(request), rate_limited_project).capture(
            body,
            content_type=request.headers.get("content-type", ""),
            content_encoding=request.headers.get("content-encoding", ""),
            query=request.query_params,
            max_bytes=max_bytes,
        )
    return Response(_ACCEPTED, media_type="application/json")


CAPTURE_FAST_PATHS = {path: respond_capture for path in CAPTURE_PATHS}


async def capture(request: Request) -> Response:
    """Capture events (PostHog's capture API): invalid events are dropped, valid ones stored."""
    response = await respond_capture(request)
    response.headers.update(sdk_cors_headers(request.scope))
    return response


async def capture_preflight(request: Request) -> Response:
    """Browsers ask before posting JSON from a site's page (posthog-js)."""
    return Response(status_code=200, headers=sdk_cors_headers(request.scope))


for _path, _name in CAPTURE_PATHS.items():
    router.add_api_route(
        _path,
        capture,
        methods=["POST"],
        name=_name,
        summary=_CAPTURE_SUMMARIES[_path],
        response_model=CaptureResponse,
        responses=_CAPTURE_ERRORS,
        openapi_extra={"requestBody": _CAPTURE_BODY},
    )
    router.add_api_route(_path, capture_preflight, methods=["OPTIONS"], name=f"{_name}_preflight", include_in_schema=False)
