"""The ASGI application factory."""

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from experiments_service.api_docs import install_openapi

from experiments_service.approvals.router import router as approvals_router
from experiments_service.auth.router import router as auth_router
from experiments_service.background import start_background_services
from experiments_service.cohorts.router import router as cohorts_router
from experiments_service.db import Database
from experiments_service.errors import install_error_handlers
from experiments_service.events.router import CAPTURE_FAST_PATHS, router as events_router
from experiments_service.experiments.actions_router import router as experiments_actions_router
from experiments_service.experiments.setup_router import router as experiment_setup_router
from experiments_service.experiments.router import router as experiments_router
from experiments_service.flags.remote_config import router as remote_config_router
from experiments_service.flags.router import router as flags_router
from experiments_service.flags.sdk import SDK_FAST_PATHS, SDKFastPath
from experiments_service.edge import RequestLimitsMiddleware
from experiments_service.json_limits import JsonLimits
from experiments_service.middleware import APICORSMiddleware, TrailingSlashMiddleware
from experiments_service.observability.middleware import RequestObservabilityMiddleware, RouteRecorder
from experiments_service.observability.router import router as observability_router
from experiments_service.observability.version import __version__
from experiments_service.ratelimit import build_rate_limits
from experiments_service.results.router import router as results_router
from experiments_service.settings import Settings, get_settings
from experiments_service.wiring import connect_flag_hooks


DOCS_STATIC = "/docs/static"


def _operation_id(route: APIRoute) -> str:
    """Stable operationIds: `<tag>_<handler name>`."""
    return f"{route.tags[0]}_{route.name}" if route.tags else route.name


def _include_routers(app: FastAPI) -> None:
    for router in (
        # Results before experiments: `/experiments/requires_flag_implementation/` is not an experiment id.
        experiment_setup_router, results_router, experiments_router, flags_router, events_router, approvals_router,
        experiments_actions_router,
        auth_router,
        cohorts_router,
        observability_router,
        remote_config_router,
    ):
        app.include_router(router)


@asynccontextmanager
async def lifespan(app: FastAPI):
    stop = await start_background_services(app)
    try:
        yield
    finally:
        await stop()
        await app.state.db.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    connect_flag_hooks()
    # Swagger UI and ReDoc from the package's own files: /docs works without internet.
    app = FastAPIOffline(
        static_url=DOCS_STATIC,
        swagger_ui_parameters={"persistAuthorization": True, "displayRequestDuration": True},
        title="Experiments service",
        version=__version__,
        description="A/B experiments, feature flags and results; wire-compatible with PostHog's Experiments API.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.db = Database(settings)
    app.state.rate_limits = build_rate_limits(
        settings.rate_limit_api,
        settings.rate_limit_sdk,
        None if app.state.db.is_sqlite else app.state.db.engine,
        settings.rate_limit_sync_seconds,
    )
    install_error_handlers(app)
    install_openapi(app)
    _include_routers(app)
    app.add_middleware(RouteRecorder)  # innermost: sees the scope the router fills in
    app.add_middleware(SDKFastPath, more_paths=CAPTURE_FAST_PATHS)
    if settings.cors_origins:
        app.add_middleware(APICORSMiddleware, allowed_origins=settings.cors_origins)
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_bytes=settings.max_body_bytes,
        limits=JsonLimits(max_depth=settings.max_json_depth, max_string_length=settings.max_string_length),
        sdk_paths=(*SDK_FAST_PATHS, *CAPTURE_FAST_PATHS),
    )
    app.add_middleware(TrailingSlashMiddleware)
    # Outermost (keep it the last middleware added): every answer gets a request id, a log line, metrics.
    app.add_middleware(RequestObservabilityMiddleware, static_routes=[*SDK_FAST_PATHS, *CAPTURE_FAST_PATHS])

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
