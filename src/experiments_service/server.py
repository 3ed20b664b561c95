"""`experiments serve`: logging, the metrics directory shared by the workers, migrations, uvicorn.

Workers are separate processes that import `served_app`, so each configures its own logging.
prometheus-client picks its storage when first imported, so the metrics directory is put in the
environment before anything imports it (this module and the CLI do not).
"""

import os
import shutil
import tempfile
from pathlib import Path

from fastapi import FastAPI

from experiments_service.settings import get_settings

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def served_app() -> FastAPI:
    """The app factory uvicorn's workers call: logging first, then the app."""
    from experiments_service.app import create_app
    from experiments_service.observability.logs import configure_logging

    settings = get_settings()
    configure_logging(settings)
    return create_app(settings)


def prepare_metrics_dir(path: str | None) -> Path:
    """Make `path` (or a new temporary directory) the empty directory the workers share, and say
    so in the environment prometheus-client reads: files left by an earlier run would otherwise be
    added to this run's counts."""
    directory = Path(path) if path else Path(tempfile.mkdtemp(prefix="experiments-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[METRICS_DIR_ENV] = str(directory)
    return directory


def serve(host: str, port: int, workers: int | None, log_level: str | None) -> None:
    if log_level:  # the command line wins over LOG_LEVEL, in this process and in the workers
        os.environ["LOG_LEVEL"] = log_level
        get_settings.cache_clear()
    settings = get_settings()
    given_dir = settings.prometheus_multiproc_dir
    metrics_dir = prepare_metrics_dir(given_dir)

    import uvicorn

    from experiments_service import migrate
    from experiments_service.observability.logs import configure_logging

    configure_logging(settings)
    try:
        migrate.upgrade(settings.database_url)
        uvicorn.run(
            "experiments_service.server:served_app",
            factory=True,
            host=host,
            port=port,
            workers=workers or settings.workers,
            log_config=None,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    finally:
        if not given_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
