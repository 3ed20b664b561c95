"""Readiness: may a load balancer send this process traffic? Liveness (`/healthz`) is separate
and never touches the database, so an outage does not get healthy processes restarted."""

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from experiments_service import migrate
from experiments_service.observability import repository

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
JOB_STATES = ("pending", "in_progress", "completed", "failed")


def _worker_state(app: FastAPI) -> str:
    if not app.state.settings.run_worker:
        return "disabled"
    worker = getattr(app.state, "results_worker", None)
    task = getattr(worker, "task", None)
    if task is None:
        return "not started"
    return "stopped" if task.done() else "ok"


async def _schema_state(app: FastAPI) -> tuple[str, str]:
    """(database, migrations) states: one query answers both."""
    try:
        async with app.state.db.sessionmaker() as session:
            applied = await asyncio.wait_for(repository.schema_revisions(session), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return "timeout", "unknown"
    except (OSError, SQLAlchemyError) as error:
        log.warning("readiness: database check failed: %s", error)
        return "unreachable", "unknown"
    if applied == migrate.head_revisions():
        return "ok", "ok"
    return "ok", f"at {', '.join(sorted(applied)) or 'base'}, head is {', '.join(sorted(migrate.head_revisions()))}"


async def readiness(app: FastAPI) -> tuple[bool, dict[str, Any]]:
    """Whether every check passes, and the body that says which did not."""
    database, migrations = await _schema_state(app)
    worker = _worker_state(app)
    checks = {"database": database, "migrations": migrations, "worker": worker}
    ready = database == "ok" and migrations == "ok" and worker in ("ok", "disabled")
    return ready, {"status": "ok" if ready else "unavailable", "checks": checks}


async def timeseries_job_gauge(app: FastAPI) -> dict[str, float]:
    """Jobs in the shared job table by state (every state reported, 0 included); empty when the
    database does not answer, so a scrape during an outage still returns the other metrics."""
    try:
        async with app.state.db.sessionmaker() as session:
            counts = await asyncio.wait_for(repository.timeseries_jobs_by_state(session), CHECK_TIMEOUT_SECONDS)
    except (TimeoutError, OSError, SQLAlchemyError) as error:
        log.warning("metrics: job counts unavailable: %s", error)
        return {}
    return {state: float(counts.get(state, 0)) for state in (*JOB_STATES, *counts)}
