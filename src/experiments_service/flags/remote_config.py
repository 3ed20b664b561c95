"""PostHog's remote config (`/array/{token}/config` and `config.js`): the first thing posthog-js
loads, telling it what the project supports. Here: feature flags and event capture are on;
recordings, surveys, heatmaps, exception autocapture and site apps are not offered."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from experiments_service.api_docs import error_responses
from experiments_service.errors import NotFound
from experiments_service.flags.cache import flag_cache
from experiments_service.middleware import sdk_cors_headers

router = APIRouter(tags=["flags"])

TokenPath = Annotated[str, Path(description="The project API key (`phc_...`).")]


class AnalyticsConfig(BaseModel):
    endpoint: str = Field(description="Where posthog-js sends events.")


class RemoteConfig(BaseModel):
    """What posthog-js may use with this project."""

    model_config = ConfigDict(extra="allow")

    token: str
    supportedCompression: list[str]
    hasFeatureFlags: bool
    captureDeadClicks: bool
    capturePerformance: bool
    autocapture_opt_out: bool
    autocaptureExceptions: bool
    analytics: AnalyticsConfig
    elementsChainAsString: bool
    sessionRecording: bool
    heatmaps: bool
    surveys: bool
    defaultIdentifiedOnly: bool
    siteApps: list[Any]


async def remote_config(request: Request, token: str) -> dict[str, Any] | None:
    """The project's remote config, or None for an unknown token."""
    cache = flag_cache(request.app)
    project_id = await cache.project_id_for_token(token)
    if project_id is None:
        return None
    flags = await cache.get(project_id)
    return RemoteConfig(
        token=token,
        supportedCompression=["gzip", "gzip-js"],
        hasFeatureFlags=bool(flags.facts),
        captureDeadClicks=False,
        capturePerformance=False,
        autocapture_opt_out=False,
        autocaptureExceptions=False,
        analytics=AnalyticsConfig(endpoint="/i/v0/e/"),
        elementsChainAsString=True,
        sessionRecording=False,
        heatmaps=False,
        surveys=False,
        defaultIdentifiedOnly=True,
        siteApps=[],
    ).model_dump()


def _unknown_token(request: Request) -> Response:
    return JSONResponse(NotFound().body(), status_code=404, headers=sdk_cors_headers(request.scope))


_NOT_FOUND = error_responses(404, e404="No project has this token")


@router.get("/array/{token}/config/", response_model=RemoteConfig, responses=_NOT_FOUND, summary="Remote config (SDK)")
async def remote_config_json(request: Request, token: TokenPath) -> Response:
    """posthog-js's first request; answered with CORS headers for the site's origin."""
    config = await remote_config(request, token)
    if config is None:
        return _unknown_token(request)
    return JSONResponse(config, headers=sdk_cors_headers(request.scope))


@router.get(
    "/array/{token}/config.js/",
    response_class=Response,
    responses={
        200: {"description": "Sets `window._POSTHOG_REMOTE_CONFIG[token]`", "content": {"application/javascript": {}}},
        **_NOT_FOUND,
    },
    summary="Remote config as a script (SDK)",
)
async def remote_config_js(request: Request, token: TokenPath) -> Response:
    """The same config as a script, for pages that load it with a `<script>` tag."""
    config = await remote_config(request, token)
    if config is None:
        return _unknown_token(request)
    entry = json.dumps({"config": config, "siteApps": []})
    script = (
        "(function(){window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
        f"window._POSTHOG_REMOTE_CONFIG[{json.dumps(token)}]={entry};}})();"
    )
    return Response(script, media_type="application/javascript", headers=sdk_cors_headers(request.scope))
