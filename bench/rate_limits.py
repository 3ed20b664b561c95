"""Cost of the rate limits on the hottest route: `POST /flags/?v=2`, in-process over ASGI,
without limits, with in-memory counters and (when `--postgres URL` is given) with shared
PostgreSQL counters. Prints requests per second and the added time per request.

    .venv/bin/python bench/rate_limits.py [--requests 2000] [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]
"""

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments_service import migrate  # noqa: E402
from experiments_service.app import create_app  # noqa: E402
from experiments_service.auth.service import create_project  # noqa: E402
from experiments_service.settings import Settings  # noqa: E402
from tests.flags.live_server import create_postgres_database, drop_postgres_database  # noqa: E402

GENEROUS = "1000000/hour"


async def rate(url: str, sdk_limit: str, requests: int, force_memory: bool = False) -> float:
    app = create_app(Settings(database_url=url, run_worker=False, rate_limit_sdk=sdk_limit))
    if force_memory and sdk_limit:
        from experiments_service.ratelimit import build_rate_limits

        app.state.rate_limits = build_rate_limits("", sdk_limit)
    async with app.state.db.transaction() as session:
        token = (await create_project(session, "bench")).api_token
    body = {"token": token, "distinct_id": "bench-user"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        for _ in range(50):
            await client.post("/flags/?v=2", json=body)
        started = time.perf_counter()
        for _ in range(requests):
            response = await client.post("/flags/?v=2", json=body)
            assert response.status_code == 200, response.text
        elapsed = time.perf_counter() - started
    await app.state.db.dispose()
    return requests / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sqlite = f"sqlite+aiosqlite:///{folder}/bench.db"
        await asyncio.to_thread(migrate.upgrade, sqlite)
        off = await rate(sqlite, "", args.requests)
        memory = await rate(sqlite, GENEROUS, args.requests)
        print(f"SQLite, no limits:        {off:8.0f} req/s")
        print(f"SQLite, memory counters:  {memory:8.0f} req/s  (+{(1 / memory - 1 / off) * 1e6:5.0f} µs/request)")
    if args.postgres:
        url = await create_postgres_database(args.postgres)
        try:
            await asyncio.to_thread(migrate.upgrade, url)
            off = await rate(url, "", args.requests)
            memory = await rate(url, GENEROUS, args.requests, force_memory=True)
            shared = await rate(url, GENEROUS, args.requests)
            print(f"PostgreSQL, no limits:    {off:8.0f} req/s")
            print(f"PostgreSQL, memory:       {memory:8.0f} req/s  (+{(1 / memory - 1 / off) * 1e6:5.0f} µs/request)")
            print(f"PostgreSQL, shared table: {shared:8.0f} req/s  (+{(1 / shared - 1 / off) * 1e6:5.0f} µs/request)")
        finally:
            await drop_postgres_database(url)


if __name__ == "__main__":
    asyncio.run(main())
