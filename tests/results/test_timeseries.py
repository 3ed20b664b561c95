"""recalculate_timeseries, timeseries_results and the durable background worker."""

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx

import pytest
from sqlalchemy import select, update

from experiments_service.app import create_app
from experiments_service.models import ExperimentMetricResult, ExperimentTimeseriesRecalculation, Project
from experiments_service.results.worker import run_pending_jobs, start_results_worker
from experiments_service.settings import Settings
from tests.results.helpers import START, create_experiment, event, flag_called, insert_events, mean_metric, minutes

END = START + timedelta(days=2, hours=1)
DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]


async def seed(app, kit, **experiment):
    metric = mean_metric()
    created = await create_experiment(app, kit.project_id, end=END, metrics=[metric], **experiment)
    rows = []
    for day in range(3):
        for i in range(30):
            user = f"d{day}-{i}"
            variant = "control" if i % 2 else "test"
            at = START + timedelta(days=day, minutes=i)
            rows += [flag_called(user, created.flag_key, variant, at), event("purchase", user, at + minutes(1))]
    await insert_events(app, kit.project_id, rows)
    return created, metric


async def recalculate(kit, experiment_id, metric, fingerprint=None):
    return await kit.client.post(
        f"{kit.base}/experiments/{experiment_id}/recalculate_timeseries/",
        json={"metric": metric, "fingerprint": fingerprint or metric["fingerprint"]},
        headers=kit.headers,
    )


async def timeseries(kit, experiment_id, metric):
    response = await kit.client.get(
        f"{kit.base}/experiments/{experiment_id}/timeseries_results/",
        params={"metric_uuid": metric["uuid"], "fingerprint": metric["fingerprint"]},
        headers=kit.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def set_job(app, job_id, **values):
    """Put a job in the state a crashed or busy process would leave it in."""
    async with app.state.db.transaction() as session:
        await session.execute(
            update(ExperimentTimeseriesRecalculation).where(ExperimentTimeseriesRecalculation.id == job_id).values(**values)
        )


async def job_row(app, job_id):
    async with app.state.db.sessionmaker() as session:
        return await session.get(ExperimentTimeseriesRecalculation, job_id)


class TestRecalculateTimeseries:
    async def test_creates_a_pending_job_then_returns_it_while_active(self, app, kit):
        created, metric = await seed(app, kit)

        first = await recalculate(kit, created.id, metric)
        again = await recalculate(kit, created.id, metric)

        assert first.status_code == 201
        body = first.json()
        assert set(body) == {"id", "experiment_id", "metric_uuid", "fingerprint", "status", "created_at"}
        assert (body["experiment_id"], body["metric_uuid"], body["status"]) == (created.id, metric["uuid"], "pending")
        assert body["fingerprint"] == metric["fingerprint"] and body["created_at"].endswith("+00:00")
        assert again.status_code == 200 and again.json() == body
        job = await job_row(app, UUID(body["id"]))
        assert job.status == "pending" and job.metric == metric

    @pytest.mark.parametrize(
        "payload, detail",
        [
            ({"fingerprint": "f"}, "metric is required"),
            ({"metric": {"uuid": "x"}}, "fingerprint is required"),
        ],
    )
    async def test_requires_metric_and_fingerprint(self, app, kit, payload, detail):
        created, _ = await seed(app, kit)

        response = await kit.client.post(
            f"{kit.base}/experiments/{created.id}/recalculate_timeseries/", json=payload, headers=kit.headers
        )

        assert response.status_code == 400 and response.json()["detail"] == detail

    async def test_draft_experiment_cannot_be_recalculated(self, app, kit):
        metric = mean_metric()
        created = await create_experiment(app, kit.project_id, start=None, metrics=[metric])

        response = await recalculate(kit, created.id, metric)

        assert response.status_code == 400
        assert response.json()["detail"] == "Cannot recalculate timeseries for experiment that hasn't started"
        async with app.state.db.sessionmaker() as session:
            rows = await session.execute(
                select(ExperimentTimeseriesRecalculation).where(ExperimentTimeseriesRecalculation.experiment_id == created.id)
            )
            assert rows.first() is None

    async def test_write_scope_is_required(self, app, kit):
        created, metric = await seed(app, kit)
        headers, _ = await kit.key(["experiment:read"])

        response = await kit.client.post(
            f"{kit.base}/experiments/{created.id}/recalculate_timeseries/",
            json={"metric": metric, "fingerprint": metric["fingerprint"]}, headers=headers,
        )

        assert response.status_code == 403


class TestTimeseriesResults:
    async def test_worker_fills_cumulative_days_then_results_read_back(self, app, kit):
        created, metric = await seed(app, kit)
        job_id = UUID((await recalculate(kit, created.id, metric)).json()["id"])

        before = await timeseries(kit, created.id, metric)
        assert before["status"] == "pending"
        assert before["timeseries"] == dict.fromkeys(DAYS)
        assert before["errors"] is None and before["computed_at"] is None
        assert before["recalculation_status"] == "pending"
        assert before["recalculation_created_at"].endswith("+00:00")

        assert job_id in await run_pending_jobs(app.state.db)

        after = await timeseries(kit, created.id, metric)
        assert after["status"] == "completed"
        assert after["recalculation_status"] is None and after["recalculation_created_at"] is None
        assert after["errors"] is None and after["computed_at"].endswith("+00:00")
        assert list(after["timeseries"]) == DAYS
        # Cumulative: 30 people exposed per day, each with one purchase.
        for day_index, day in enumerate(DAYS):
            day_result = after["timeseries"][day]
            assert day_result["baseline"]["key"] == "control"
            assert day_result["baseline"]["number_of_samples"] == 15 * (day_index + 1)
            assert day_result["baseline"]["sum"] == 15 * (day_index + 1)
            assert day_result["variant_results"][0]["number_of_samples"] == 15 * (day_index + 1)
        job = await job_row(app, job_id)
        assert (job.status, job.attempts, job.last_successful_date.isoformat()) == ("completed", 1, DAYS[-1])
        async with app.state.db.sessionmaker() as session:
            rows = (await session.execute(
                select(ExperimentMetricResult).where(ExperimentMetricResult.experiment_id == created.id)
                .order_by(ExperimentMetricResult.query_to)
            )).scalars().all()
        assert [row.query_to for row in rows] == [
            datetime(2026, 1, 6, tzinfo=UTC), datetime(2026, 1, 7, tzinfo=UTC), datetime(2026, 1, 8, tzinfo=UTC)
        ]
        assert {row.status for row in rows} == {"completed"}

        # A new request clears the stored days and queues a fresh job.
        fresh = await recalculate(kit, created.id, metric)
        assert fresh.status_code == 201 and fresh.json()["id"] != str(job_id)
        assert (await timeseries(kit, created.id, metric))["status"] == "pending"

    async def test_failed_days_are_stored_with_their_error(self, app, kit):
        created, metric = await seed(app, kit)
        broken = metric | {"source": {"kind": "EventsNode", "event": "purchase", "math": "sum"}}
        job_id = UUID((await recalculate(kit, created.id, broken)).json()["id"])

        await run_pending_jobs(app.state.db)

        body = await timeseries(kit, created.id, metric)
        assert body["status"] == "failed"
        assert body["timeseries"] == dict.fromkeys(DAYS)
        assert body["errors"] == dict.fromkeys(DAYS, "source: math 'sum' requires math_property.")
        assert (await job_row(app, job_id)).status == "failed"

    async def test_some_days_missing_is_partial(self, app, kit):
        created, metric = await seed(app, kit)
        await recalculate(kit, created.id, metric)
        await run_pending_jobs(app.state.db)
        async with app.state.db.transaction() as session:
            row = (await session.execute(
                select(ExperimentMetricResult).where(ExperimentMetricResult.experiment_id == created.id)
                .order_by(ExperimentMetricResult.query_to)
            )).scalars().first()
            await session.delete(row)

        body = await timeseries(kit, created.id, metric)

        assert body["status"] == "partial"
        assert body["timeseries"][DAYS[0]] is None and body["timeseries"][DAYS[1]] is not None

    async def test_days_follow_the_project_timezone(self, app, kit):
        async with app.state.db.transaction() as session:
            await session.execute(update(Project).where(Project.id == kit.project_id).values(timezone="Asia/Tokyo"))
        created, metric = await seed(app, kit)
        await recalculate(kit, created.id, metric)
        await run_pending_jobs(app.state.db)

        body = await timeseries(kit, created.id, metric)

        # 12:00 UTC is 21:00 in Tokyo: Jan 5 21:00 → Jan 7 21:00 local.
        assert list(body["timeseries"]) == DAYS and body["status"] == "completed"
        async with app.state.db.sessionmaker() as session:
            query_to = (await session.execute(
                select(ExperimentMetricResult.query_to).where(ExperimentMetricResult.experiment_id == created.id)
                .order_by(ExperimentMetricResult.query_to)
            )).scalars().all()
        # Each Tokyo day ends at 15:00 UTC.
        assert query_to == [datetime(2026, 1, day, 15, tzinfo=UTC) for day in (5, 6, 7)]
        assert body["timeseries"][DAYS[0]]["baseline"]["number_of_samples"] == 15

    @pytest.mark.parametrize(
        "params, detail",
        [({"fingerprint": "f"}, "metric_uuid query parameter is required"),
         ({"metric_uuid": "m"}, "fingerprint query parameter is required")],
    )
    async def test_requires_metric_uuid_and_fingerprint(self, app, kit, params, detail):
        created, _ = await seed(app, kit)

        response = await kit.client.get(
            f"{kit.base}/experiments/{created.id}/timeseries_results/", params=params, headers=kit.headers
        )

        assert response.status_code == 400 and response.json()["detail"] == detail

    async def test_draft_experiment_has_no_timeseries(self, app, kit):
        created = await create_experiment(app, kit.project_id, start=None)

        response = await kit.client.get(
            f"{kit.base}/experiments/{created.id}/timeseries_results/",
            params={"metric_uuid": "m", "fingerprint": "f"}, headers=kit.headers,
        )

        assert response.status_code == 400 and response.json()["detail"] == "Experiment has not been started yet"


class TestWorker:
    async def test_job_left_by_a_crashed_process_is_picked_up_again(self, app, kit):
        created, metric = await seed(app, kit)
        job_id = UUID((await recalculate(kit, created.id, metric)).json()["id"])
        await set_job(app, job_id, status="in_progress", locked_by="dead-process", attempts=1,
                      locked_at=datetime.now(UTC) - timedelta(minutes=10))

        ran = await run_pending_jobs(app.state.db, worker_id="fresh-process")

        assert job_id in ran
        job = await job_row(app, job_id)
        assert (job.status, job.locked_by, job.attempts) == ("completed", "fresh-process", 2)
        assert (await timeseries(kit, created.id, metric))["status"] == "completed"

    async def test_a_resumed_job_continues_after_its_last_successful_day(self, app, kit):
        created, metric = await seed(app, kit)
        job_id = UUID((await recalculate(kit, created.id, metric)).json()["id"])
        await set_job(app, job_id, status="in_progress", locked_by="dead-process",
                      locked_at=datetime.now(UTC) - timedelta(minutes=10), last_successful_date=datetime(2026, 1, 6).date())

        await run_pending_jobs(app.state.db)

        body = await timeseries(kit, created.id, metric)
        assert [day for day, value in body["timeseries"].items() if value is not None] == [DAYS[2]]
        assert body["status"] == "partial"
        assert (await job_row(app, job_id)).status == "completed"

    async def test_job_with_a_live_lock_is_left_alone(self, app, kit):
        created, metric = await seed(app, kit)
        job_id = UUID((await recalculate(kit, created.id, metric)).json()["id"])
        await set_job(app, job_id, status="in_progress", locked_by="busy-process", locked_at=datetime.now(UTC))

        ran = await run_pending_jobs(app.state.db, worker_id="other-process")

        assert job_id not in ran
        job = await job_row(app, job_id)
        assert (job.status, job.locked_by) == ("in_progress", "busy-process")
        await set_job(app, job_id, status="failed")  # later tests' workers skip it for good

    async def test_worker_in_the_app_runs_a_new_job_at_once(self, app, kit, database_urls, db_name):
        created, metric = await seed(app, kit)
        serving = create_app(Settings(database_url=database_urls[db_name], run_worker=True))
        stop = await start_results_worker(serving)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=serving), base_url="http://t") as client:
                response = await client.post(
                    f"{kit.base}/experiments/{created.id}/recalculate_timeseries/",
                    json={"metric": metric, "fingerprint": metric["fingerprint"]}, headers=kit.headers,
                )
                assert response.status_code == 201
                job_id = UUID(response.json()["id"])
                for _ in range(100):
                    if (await job_row(app, job_id)).status == "completed":
                        break
                    await asyncio.sleep(0.1)
        finally:
            await stop()
            await serving.state.db.dispose()
        assert (await job_row(app, job_id)).status == "completed"


async def test_two_workers_on_postgresql_never_run_one_job_twice(apps, database_urls):
    if "postgresql" not in database_urls:
        pytest.skip("TEST_DATABASE_URL is not set")
    from tests.factories import make_kit

    app = apps["postgresql"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as pg_client:
        kit = await make_kit(app, pg_client)
        job_ids = set()
        for _ in range(6):
            created, metric = await seed(app, kit)
            job_ids.add(UUID((await recalculate(kit, created.id, metric)).json()["id"]))
    other = create_app(Settings(database_url=database_urls["postgresql"], run_worker=False))
    try:
        first, second = await asyncio.gather(
            run_pending_jobs(app.state.db, worker_id="worker-a"), run_pending_jobs(other.state.db, worker_id="worker-b")
        )
    finally:
        await other.state.db.dispose()
    assert not set(first) & set(second)
    assert job_ids <= set(first) | set(second)
    for job_id in job_ids:
        job = await job_row(app, job_id)
        assert (job.status, job.attempts) == ("completed", 1)
