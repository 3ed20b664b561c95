"""Daily cumulative results: requesting a recalculation, computing one day, and reading them back.

Days are calendar days in the project's timezone; a day's row covers events from the experiment's
start up to (exclusive) the next day's start, stored as `query_to`.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.errors import ValidationError
from experiments_service.models import Experiment, ExperimentTimeseriesRecalculation
from experiments_service.results.repository import ResultsRepository
from experiments_service.results.schemas import RecalculationOut, TimeseriesOut
from experiments_service.results.service import ExperimentMetric, ResultsService, baseline_variant_key

ONE_MICROSECOND = timedelta(microseconds=1)


def project_zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def experiment_days(experiment: Experiment, zone: ZoneInfo, today: date | None = None) -> list[date]:
    """Calendar days from the start date to the end date (or today), inclusive."""
    first = experiment.start_date.astimezone(zone).date()
    last = experiment.end_date.astimezone(zone).date() if experiment.end_date else (
        today or datetime.now(zone).date()
    )
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """(start, exclusive end) of a project-timezone day, in UTC."""
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """`isoformat()` in UTC, always with microseconds and `+00:00` (the reference's hand-built style)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def recalculation_out(job: ExperimentTimeseriesRecalculation) -> RecalculationOut:
    return RecalculationOut(
        id=str(job.id),
        experiment_id=job.experiment_id,
        metric_uuid=(job.metric or {}).get("uuid"),
        fingerprint=job.fingerprint,
        status=job.status,
        created_at=iso(job.created_at),
    )


class TimeseriesService:
    @classmethod
    def for_project(cls, session: AsyncSession, project_id: int) -> "TimeseriesService":
        return cls(ResultsRepository(session, project_id))

    def __init__(self, repository: ResultsRepository):
        self.repository = repository
        self.results = ResultsService(repository)

    async def request_recalculation(
        self, experiment_id: int, body: Any
    ) -> tuple[ExperimentTimeseriesRecalculation, bool]:
        """The active job for this fingerprint, or a new one (True) after clearing old rows."""
        experiment = await self.results.experiment(experiment_id)
        body = body if isinstance(body, dict) else {}
        metric, fingerprint = body.get("metric"), body.get("fingerprint")
        if not metric:
            raise ValidationError("metric is required", attr="metric")
        if not fingerprint:
            raise ValidationError("fingerprint is required", attr="fingerprint")
        if not isinstance(metric, dict):
            raise ValidationError("metric must be an object", attr="metric")
        if not isinstance(fingerprint, str) or len(fingerprint) > 64:
            raise ValidationError("fingerprint must be a string of at most 64 characters", attr="fingerprint")
        if experiment.start_date is None:
            raise ValidationError("Cannot recalculate timeseries for experiment that hasn't started")
        active = await self.repository.active_recalculation(experiment.id, fingerprint)
        if active is not None:
            return active, False
        await self.repository.delete_metric_results(experiment.id, str(metric.get("uuid")), fingerprint)
        job = ExperimentTimeseriesRecalculation(
            project_id=self.repository.project_id,
            experiment_id=experiment.id,
            metric=metric,
            fingerprint=fingerprint,
            status="pending",
        )
        return await self.repository.add_recalculation(job), True

    async def compute_day(
        self, experiment: Experiment, job: ExperimentTimeseriesRecalculation, day: date, zone: ZoneInfo
    ) -> bool:
        """Store the cumulative result through the end of `day`; False when the metric failed."""
        _, query_to = day_bounds(day, zone)
        until = min(query_to - ONE_MICROSECOND, experiment.end_date or query_to)
        metric = ExperimentMetric(job.metric or {}, "primary")
        rules, _ = await self.results.exposure_rules(experiment, until)
        entry, _ = await self.results.metric_result(
            experiment, metric, rules, baseline_variant_key(experiment), live=False
        )
        result = None if entry.error else entry.model_dump(mode="json", include={"baseline", "variant_results"})
        await self.store_day(experiment, job, day, zone, result=result, error=entry.error or None)
        return not entry.error

    async def store_day(
        self,
        experiment: Experiment,
        job: ExperimentTimeseriesRecalculation,
        day: date,
        zone: ZoneInfo,
        *,
        result: dict[str, Any] | None,
        error: str | None,
    ) -> None:
        _, query_to = day_bounds(day, zone)
        await self.repository.save_metric_result(
            experiment.id, str((job.metric or {}).get("uuid")), job.fingerprint, experiment.start_date, query_to,
            result=result, error_message=error,
        )

    async def timeseries(self, experiment_id: int, metric_uuid: str | None, fingerprint: str | None) -> TimeseriesOut:
        if not metric_uuid:
            raise ValidationError("metric_uuid query parameter is required", attr="metric_uuid")
        if not fingerprint:
            raise ValidationError("fingerprint query parameter is required", attr="fingerprint")
        experiment = await self.results.started_experiment(experiment_id)
        zone = project_zone((await self.repository.project()).timezone)
        rows = await self.repository.metric_results(experiment.id, metric_uuid, fingerprint)
        by_day = {(row.query_to - ONE_MICROSECOND).astimezone(zone).date(): row for row in rows}
        timeseries: dict[str, dict[str, Any] | None] = {}
        errors: dict[str, str] = {}
        for day in experiment_days(experiment, zone):
            row = by_day.get(day)
            key = day.isoformat()
            timeseries[key] = row.result if row is not None and row.status == "completed" else None
            if row is not None and row.status == "failed" and row.error_message:
                errors[key] = row.error_message
        statuses = {row.status for row in rows}
        if not statuses & {"completed", "failed", "pending"}:
            status = "pending"
        elif "completed" not in statuses and "failed" in statuses:
            status = "failed"
        elif all(value is not None for value in timeseries.values()):
            status = "completed"
        else:
            status = "partial"
        completed_at = [row.completed_at for row in rows if row.completed_at is not None]
        active = await self.repository.active_recalculation(experiment.id, fingerprint)
        return TimeseriesOut(
            experiment_id=experiment.id,
            metric_uuid=metric_uuid,
            status=status,
            timeseries=timeseries,
            errors=errors or None,
            computed_at=iso(max(completed_at)) if completed_at else None,
            created_at=iso(min(row.created_at for row in rows) if rows else experiment.created_at),
            updated_at=iso(max(row.updated_at for row in rows) if rows else experiment.updated_at),
            recalculation_status=active.status if active else None,
            recalculation_created_at=iso(active.created_at) if active else None,
        )
