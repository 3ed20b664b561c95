"""The timeseries recalculation worker: a durable queue in `experiment_timeseries_recalculations`.

Jobs survive restarts: a `pending` job, or an `in_progress` one whose lock was not refreshed within
the lease (its process died), is claimed again. Several processes share the queue safely because a
claim is a compare-and-set (with `FOR UPDATE SKIP LOCKED` on PostgreSQL) and every day's progress
re-checks that this worker still holds the lock.
"""

import asyncio
import logging
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.db import Database
from experiments_service.models import Experiment, ExperimentTimeseriesRecalculation
from experiments_service.results.repository import JobQueue, ResultsRepository
from experiments_service.results.timeseries import TimeseriesService, experiment_days, project_zone

logger = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 0.5
LEASE = timedelta(seconds=60)
MISSING_EXPERIMENT = "Experiment is missing or not started."


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def _load_job(
    session: AsyncSession, job_id: UUID
) -> tuple[ExperimentTimeseriesRecalculation, TimeseriesService, Experiment | None]:
    """The job, a service scoped to its project, and its experiment, in this transaction."""
    job = await JobQueue(session).get(job_id)
    service = TimeseriesService(ResultsRepository(session, job.project_id))
    return job, service, await service.results.experiments.get(job.experiment_id)


async def run_job(db: Database, job_id: UUID, worker_id: str) -> None:
    """Compute every day of one claimed job, one transaction per day, then mark it finished."""
    async with db.transaction() as session:
        job, service, experiment = await _load_job(session, job_id)
        if experiment is None or experiment.start_date is None:
            await JobQueue(session).finish(job_id, worker_id, "failed", MISSING_EXPERIMENT)
            return
        zone = project_zone((await service.repository.project()).timezone)
        done_through = job.last_successful_date
        days = [day for day in experiment_days(experiment, zone) if done_through is None or day > done_through]
        succeeded = job.last_successful_date is not None
    for day in days:
        async with db.transaction() as session:
            queue = JobQueue(session)
            if not await queue.heartbeat(job_id, worker_id):
                logger.warning("Recalculation %s was taken over by another worker", job_id)
                return
            job, service, experiment = await _load_job(session, job_id)
            if experiment is None:
                await queue.finish(job_id, worker_id, "failed", MISSING_EXPERIMENT)
                return
            try:
                async with session.begin_nested():
                    ok = await service.compute_day(experiment, job, day, zone)
            except Exception as error:  # noqa: BLE001 - a day's failure is recorded, not raised
                logger.exception("Recalculation %s failed for %s", job_id, day)
                ok = False
                await service.store_day(experiment, job, day, zone, result=None, error=str(error) or type(error).__name__)
            if ok:
                succeeded = True
                await queue.heartbeat(job_id, worker_id, last_successful_date=day)
    async with db.transaction() as session:
        await JobQueue(session).finish(
            job_id, worker_id, "completed" if succeeded or not days else "failed",
            None if succeeded or not days else "No day could be computed.",
        )


async def run_pending_jobs(db: Database, worker_id: str | None = None, lease: timedelta = LEASE) -> list[UUID]:
    """Claim and run jobs until none is runnable; returns the ids this worker ran."""
    worker_id = worker_id or new_worker_id()
    ran = []
    while True:
        async with db.transaction() as session:
            job = await JobQueue(session).claim(worker_id, datetime.now(UTC) - lease)
        if job is None:
            return ran
        try:
            await run_job(db, job.id, worker_id)
        except Exception as error:  # noqa: BLE001 - the job fails, the worker keeps serving others
            logger.exception("Recalculation %s crashed", job.id)
            async with db.transaction() as session:
                await JobQueue(session).finish(job.id, worker_id, "failed", str(error) or type(error).__name__)
        ran.append(job.id)


class ResultsWorker:
    """Polls the queue every `POLL_INTERVAL_SECONDS`, and at once when woken by a new job."""

    def __init__(self, db: Database):
        self.db = db
        self.worker_id = new_worker_id()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None

    def wake(self) -> None:
        self.wakeup.set()

    async def serve(self) -> None:
        while True:
            try:
                await run_pending_jobs(self.db, self.worker_id)
            except Exception:  # noqa: BLE001 - e.g. the database is briefly unavailable
                logger.exception("Results worker poll failed")
            try:
                await asyncio.wait_for(self.wakeup.wait(), POLL_INTERVAL_SECONDS)
            except TimeoutError:
                pass
            self.wakeup.clear()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass


async def start_results_worker(app: FastAPI):
    """Background starter: run the worker in this process when `settings.run_worker` is on."""
    worker = ResultsWorker(app.state.db)
    app.state.results_worker = worker
    if app.state.settings.run_worker:
        worker.task = asyncio.create_task(worker.serve(), name="results-worker")
    return worker.stop


def wake_worker(app: FastAPI) -> None:
    worker = getattr(app.state, "results_worker", None)
    if worker is not None:
        worker.wake()
