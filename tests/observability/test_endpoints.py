"""/readyz, /version and /metrics through HTTP, on both databases."""

import asyncio
import uuid
from importlib.metadata import version

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from experiments_service import migrate
from experiments_service.app import create_app
from experiments_service.settings import Settings


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def value(scraped, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def _get(app, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        return await client.get(path)


class TestReadyz:
    async def test_ready_when_database_answers_at_head(self, client):
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {
            "status": "ok",
            "checks": {"database": "ok", "migrations": "ok", "worker": "disabled"},
        }

    async def test_not_ready_before_the_last_migration(self, fresh_database_url):
        await asyncio.to_thread(migrate.upgrade, fresh_database_url, "0006")
        app = create_app(Settings(database_url=fresh_database_url, run_worker=False))
        try:
            response = await _get(app, "/readyz")
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"
            body = response.json()
            assert body["status"] == "unavailable"
            assert body["checks"]["database"] == "ok"
            assert body["checks"]["migrations"] == f"at 0006, head is {','.join(sorted(migrate.head_revisions()))}"
            await asyncio.to_thread(migrate.upgrade, fresh_database_url)
            assert (await _get(app, "/readyz")).status_code == 200
        finally:
            await app.state.db.dispose()

    async def test_not_ready_when_database_is_unreachable(self, db_name, tmp_path):
        url = (
            f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
            if db_name == "sqlite"
            else "postgresql+asyncpg://postgres@127.0.0.1:1/nothing"
        )
        app = create_app(Settings(database_url=url, run_worker=False))
        try:
            response = await _get(app, "/readyz")
        finally:
            await app.state.db.dispose()
        assert response.status_code == 503
        assert response.json()["checks"] == {"database": "unreachable", "migrations": "unknown", "worker": "disabled"}

    async def test_not_ready_when_the_worker_has_stopped(self, database_urls, db_name):
        app = create_app(Settings(database_url=database_urls[db_name], run_worker=True))
        async with app.router.lifespan_context(app):
            ready = await _get(app, "/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["worker"] == "ok"
            task = app.state.results_worker.task
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            stopped = await _get(app, "/readyz")
            assert stopped.status_code == 503 and stopped.json()["checks"]["worker"] == "stopped"

    async def test_healthz_needs_no_database(self, tmp_path):
        app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'no' / 'x.db'}", run_worker=False))
        assert (await _get(app, "/healthz")).status_code == 200


class TestVersion:
    async def test_version_and_schema_revision(self, client):
        response = await client.get("/version")
        assert response.status_code == 200
        assert response.json() == {
            "version": version("experiments-service"),
            "schema_revision": ",".join(sorted(migrate.head_revisions())),
        }


class TestRequestId:
    async def test_client_request_id_is_echoed(self, client):
        response = await client.get("/healthz", headers={"X-Request-ID": "lb-1234.abc"})
        assert response.headers["x-request-id"] == "lb-1234.abc"

    async def test_missing_or_unusable_id_is_replaced(self, client):
        generated = (await client.get("/healthz")).headers["x-request-id"]
        assert len(generated) == 32 and int(generated, 16) >= 0
        odd = (await client.get("/healthz", headers={"X-Request-ID": "x" * 200})).headers["x-request-id"]
        assert odd != "x" * 200 and len(odd) == 32
        assert (await client.get("/healthz")).headers["x-request-id"] != generated

    async def test_errors_and_sdk_answers_carry_it_too(self, client):
        missing = await client.get("/api/projects/1/nothing-here/", headers={"X-Request-ID": "r-404"})
        assert missing.status_code == 404 and missing.headers["x-request-id"] == "r-404"
        flags = await client.post("/flags/?v=2", json={"distinct_id": "x"}, headers={"X-Request-ID": "r-flags"})
        assert flags.status_code == 401 and flags.headers["x-request-id"] == "r-flags"


class TestMetrics:
    async def test_requests_by_route_template_and_status(self, kit):
        route = "/api/projects/{project_id}/experiments/"
        before = await scrape(kit.client)
        for _ in range(3):
            assert (await kit.client.get(f"{kit.base}/experiments/", headers=kit.headers)).status_code == 200
        assert (await kit.client.get(f"{kit.base}/experiments/")).status_code == 401
        assert (await kit.client.get(f"/no/such/{uuid.uuid4().hex}")).status_code == 404
        after = await scrape(kit.client)
        labels = {"method": "GET", "route": route}
        assert value(after, "experiments_http_requests_total", **labels, status="200") - value(
            before, "experiments_http_requests_total", **labels, status="200"
        ) == 3
        assert value(after, "experiments_http_request_duration_seconds_count", **labels, status="401") - value(
            before, "experiments_http_request_duration_seconds_count", **labels, status="401"
        ) == 1
        unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
        assert value(after, "experiments_http_requests_total", **unmatched) - value(
            before, "experiments_http_requests_total", **unmatched
        ) == 1
        assert not any("/no/such/" in str(labels) for _, labels in after)

    async def test_flag_evaluations_and_cache(self, kit):
        made = await kit.client.post(
            f"{kit.base}/feature_flags/",
            json={"key": "metered", "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}},
            headers=kit.headers,
        )
        assert made.status_code == 201, made.text
        before = await scrape(kit.client)
        for i in range(2):
            answer = await kit.client.post("/flags/?v=2", json={"token": kit.project_api_key, "distinct_id": f"u{i}"})
            assert answer.status_code == 200 and answer.json()["flags"]["metered"]["enabled"] is True
        after = await scrape(kit.client)

        def delta(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("experiments_flag_evaluations_total") == 2
        assert delta("experiments_flag_cache_lookups_total", result="miss") == 1  # the write evicted the entry
        assert delta("experiments_flag_cache_lookups_total", result="hit") == 1
        assert delta("experiments_http_requests_total", method="POST", route="/flags/", status="200") == 2

        patched = await kit.client.patch(
            f"{kit.base}/feature_flags/{made.json()['id']}/", json={"name": "renamed"}, headers=kit.headers
        )
        assert patched.status_code == 200
        assert value(await scrape(kit.client), "experiments_flag_cache_invalidations_total") == value(
            after, "experiments_flag_cache_invalidations_total"
        ) + 1

    async def test_events_accepted_and_dropped_by_reason(self, kit):
        before = await scrape(kit.client)
        batch = [
            {"event": "ok", "distinct_id": "a"},
            {"event": "no-id"},
            {"event": "bad-uuid", "distinct_id": "a", "uuid": "nope"},
            "not an object",
        ]
        response = await kit.client.post("/batch/", json={"api_key": kit.project_api_key, "batch": batch})
        assert response.status_code == 200
        after = await scrape(kit.client)

        def delta(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("experiments_events_accepted_total") == 1
        assert delta("experiments_events_stored_total") == 1
        assert delta("experiments_events_dropped_total", reason="missing_distinct_id") == 1
        assert delta("experiments_events_dropped_total", reason="invalid_uuid") == 1
        assert delta("experiments_events_dropped_total", reason="not_an_object") == 1

    async def test_results_time_and_jobs_by_state(self, kit):
        metric = {
            "kind": "ExperimentMetric",
            "metric_type": "mean",
            "uuid": str(uuid.uuid4()),
            "fingerprint": uuid.uuid4().hex,
            "source": {"kind": "EventsNode", "event": "purchase"},
        }
        created = await kit.client.post(
            f"{kit.base}/experiments/",
            json={
                "name": "Metered", "feature_flag_key": f"metered-{uuid.uuid4().hex[:6]}", "metrics": [metric],
                "allow_unknown_events": True,
            },
            headers=kit.headers,
        )
        assert created.status_code == 201, created.text
        experiment = f"{kit.base}/experiments/{created.json()['id']}"
        assert (await kit.client.post(f"{experiment}/launch/", headers=kit.headers)).status_code == 200
        before = await scrape(kit.client)
        assert (await kit.client.get(f"{experiment}/results/", headers=kit.headers)).status_code == 200
        queued = await kit.client.post(
            f"{experiment}/recalculate_timeseries/",
            json={"metric": metric, "fingerprint": metric["fingerprint"]},
            headers=kit.headers,
        )
        assert queued.status_code == 201, queued.text
        after = await scrape(kit.client)
        assert value(after, "experiments_results_computation_seconds_count", kind="live") == value(
            before, "experiments_results_computation_seconds_count", kind="live"
        ) + 1
        assert value(after, "experiments_timeseries_jobs", state="pending") == value(
            before, "experiments_timeseries_jobs", state="pending"
        ) + 1
        assert ("experiments_timeseries_jobs", frozenset({("state", "failed")})) in after
