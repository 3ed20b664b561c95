"""Results latency: a 3-variant experiment with 1,000,000 exposures and 1,000,000 conversion events on
PostgreSQL, bulk-loaded with INSERT ... SELECT, then `GET .../results/` timed in-process (ASGI, no network).

The first call of each metric computes every entity's value from the events and stores it; each
later call first captures `--new-events` fresh events through `POST /batch/` (new exposures and
purchases, untimed) and then times a results call, which folds in only the entities those events
touched. Prints seconds per call for a mean (count) metric, a funnel and a ratio metric, then for
all three in one call. Target: ≤ 1 s.

    .venv/bin/python bench/results.py [--exposures 1000000] [--conversions 1000000] [--calls 5] [--new-events 1000]

The PostgreSQL server comes from `--database-url` (default `$TEST_DATABASE_URL`, else
`postgresql+asyncpg://postgres@127.0.0.1:5432/postgres`); a database is created for the run and
dropped afterwards.
"""

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from experiments_service import migrate
from experiments_service.app import create_app
from experiments_service.auth.service import create_project, ensure_user, issue_personal_api_key
from experiments_service.models import Experiment, FeatureFlag
from experiments_service.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.flags.live_server import create_postgres_database, drop_postgres_database  # noqa: E402

DEFAULT_SERVER_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
VARIANTS = ("control", "test", "test_2")
FLAG_KEY = "bench-results"


async def connect(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host or "127.0.0.1", port=parsed.port or 5432, user=parsed.username or "postgres",
        password=parsed.password, database=parsed.database,
    )


def metric(metric_type: str, **definition) -> dict:
    return {"kind": "ExperimentMetric", "metric_type": metric_type, "uuid": f"bench-{metric_type}", **definition}


METRICS = [
    metric("mean", source={"kind": "EventsNode", "event": "purchase"}),
    metric("funnel", series=[{"kind": "EventsNode", "event": "purchase"}]),
    metric("ratio", numerator={"kind": "EventsNode", "event": "purchase", "math": "sum", "math_property": "amount"},
           denominator={"kind": "EventsNode", "event": "purchase"}),
]


async def load_events(url: str, project_id: int, exposures: int, conversions: int, start: datetime) -> None:
    """Bulk INSERT ... SELECT in the database: one `$feature_flag_called` per person over six days,
    then conversions on the seventh day spread over random people (seeded, so runs repeat)."""
    conn = await connect(url)
    try:
        await conn.execute("SELECT setseed(0.42)")
        await conn.execute(
            """
            INSERT INTO events (project_id, uuid, event, distinct_id, timestamp, properties, flag_key, flag_response, created_at)
            SELECT $1, gen_random_uuid(), '$feature_flag_called', 'user-' || i,
                   $2::timestamptz + make_interval(secs => floor(random() * 6 * 86400)),
                   json_build_object('$feature_flag', $3::text, '$feature_flag_response', ($4::text[])[i % 3 + 1]),
                   $3, ($4::text[])[i % 3 + 1], now()
            FROM generate_series(0, $5 - 1) AS i
            """,
            project_id, start, FLAG_KEY, list(VARIANTS), exposures,
        )
        await conn.execute(
            """
            INSERT INTO events (project_id, uuid, event, distinct_id, timestamp, properties, created_at)
            SELECT $1, gen_random_uuid(), 'purchase', 'user-' || floor(random() * $3)::int,
                   $2::timestamptz + make_interval(secs => 6 * 86400 + floor(random() * 86400)),
                   json_build_object('amount', round((random() * 40)::numeric, 2)), now()
            FROM generate_series(1, $4)
            """,
            project_id, start, exposures, conversions,
        )
        # What autovacuum does soon after a bulk load: statistics, and the visibility map that
        # lets exposures be read from the covering index alone.
        await conn.execute("VACUUM ANALYZE events")
    finally:
        await conn.close()


class NewEvents:
    """Fresh traffic between timed calls: half new people exposed, half purchases by known people."""

    def __init__(self, api_token: str, known_people: int, per_round: int):
        self.api_token = api_token
        self.known_people = known_people
        self.per_round = per_round
        self.new_people = 0
        self.random = random.Random(7)

    async def capture(self, client: httpx.AsyncClient) -> None:
        now = datetime.now(UTC).isoformat()
        batch = []
        for index in range(self.per_round):
            if index % 2 == 0:
                person = self.known_people + self.new_people
                self.new_people += 1
                variant = VARIANTS[person % 3]
                batch.append({"event": "$feature_flag_called", "distinct_id": f"user-{person}", "timestamp": now,
                              "properties": {"$feature_flag": FLAG_KEY, "$feature_flag_response": variant}})
            else:
                person = self.random.randrange(self.known_people + self.new_people)
                batch.append({"event": "purchase", "distinct_id": f"user-{person}", "timestamp": now,
                              "properties": {"amount": round(self.random.uniform(0, 40), 2)}})
        for offset in range(0, len(batch), 100):
            response = await client.post("/batch/", json={"api_key": self.api_token, "batch": batch[offset : offset + 100]})
            assert response.status_code == 200, response.text


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_SERVER_URL))
    parser.add_argument("--exposures", type=int, default=1_000_000)
    parser.add_argument("--conversions", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--new-events", type=int, default=1000, help="events captured before each timed call")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args()

    url = await create_postgres_database(args.database_url)
    app = None
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        app = create_app(Settings(database_url=url, run_worker=False))
        print(f"database {make_url(url).database}")
        start = datetime.now(UTC) - timedelta(days=8)
        async with app.state.db.transaction() as session:
            project = await create_project(session, "bench")
            user = await ensure_user(session, "bench@example.com", project)
            key = await issue_personal_api_key(session, user, ["experiment:read"])
            flag = FeatureFlag(project_id=project.id, key=FLAG_KEY, name=FLAG_KEY, filters={
                "groups": [{"properties": [], "rollout_percentage": 100}],
                "multivariate": {"variants": [{"key": k, "rollout_percentage": p} for k, p in zip(VARIANTS, (34, 33, 33), strict=True)]},
            })
            session.add(flag)
            await session.flush()
            experiment = Experiment(project_id=project.id, name="bench", feature_flag_id=flag.id, start_date=start,
                                    status="running", metrics=METRICS, stats_config={"method": "bayesian"})
            session.add(experiment)
            await session.flush()
        loading = time.perf_counter()
        await load_events(url, project.id, args.exposures, args.conversions, start)
        print(f"loaded {args.exposures:,} exposures + {args.conversions:,} conversions in {time.perf_counter() - loading:.1f} s")

        headers = {"Authorization": f"Bearer {key.secret}"}
        path = f"/api/projects/{project.id}/experiments/{experiment.id}/results/"
        fresh = NewEvents(project.api_token, args.exposures, args.new_events)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=600) as client:

            async def timed_results(**params) -> tuple[float, dict]:
                began = time.perf_counter()
                response = await client.get(path, params=params, headers=headers)
                elapsed = time.perf_counter() - began
                assert response.status_code == 200, response.text
                return elapsed, response.json()

            for entry in METRICS:
                first, _ = await timed_results(metric_uuid=entry["uuid"])
                timings = []
                for _ in range(args.calls):
                    await fresh.capture(client)
                    elapsed, body = await timed_results(metric_uuid=entry["uuid"])
                    timings.append(elapsed)
                print(
                    f"{entry['metric_type']:>6}: first call {first:.3f} s (stores every entity's value); then, "
                    f"{args.new_events:,} new events before each call: median {statistics.median(timings):.3f} s/call "
                    f"(min {min(timings):.3f}, max {max(timings):.3f}) exposures={body['exposures']}"
                )
            await timed_results()  # every metric up to date, as when the results page is open
            timings = []
            for _ in range(args.calls):
                await fresh.capture(client)
                elapsed, body = await timed_results()
                timings.append(elapsed)
            print(
                f"all {len(METRICS)} metrics in one call, {args.new_events:,} new events before each: "
                f"median {statistics.median(timings):.3f} s/call (min {min(timings):.3f}, max {max(timings):.3f})"
            )
            expected = args.exposures + fresh.new_people
            assert sum(body["exposures"].values()) == expected, (body["exposures"], expected)
    finally:
        if app is not None:
            await app.state.db.dispose()
        if not args.keep:
            await drop_postgres_database(url)


if __name__ == "__main__":
    asyncio.run(main())
