"""What the approval gate costs on the flag write path, in process (httpx over ASGI).

For SQLite and PostgreSQL, with `--rounds` requests each, prints p50/p99 latency of:
  * a rollout PATCH in a project without policies (the gate only detects the action),
  * the same PATCH under an update policy (409: rollback, then the stored change request),
  * approving that request (vote, version precondition, flag write, activity log).

    .venv/bin/python bench/approvals.py [--rounds 200]

PostgreSQL comes from `$TEST_DATABASE_URL` (skipped when unset); a database is created for the
run and dropped afterwards.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments_service import migrate  # noqa: E402
from experiments_service.app import create_app  # noqa: E402
from experiments_service.settings import Settings  # noqa: E402
from tests.factories import make_kit  # noqa: E402
from tests.flags.live_server import create_postgres_database, drop_postgres_database  # noqa: E402


def _filters(rollout: int) -> dict:
    return {"groups": [{"properties": [], "rollout_percentage": rollout}]}


async def _timed(call) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    response = await call
    return (time.perf_counter() - start) * 1000, response


def _report(label: str, samples: list[float]) -> None:
    p50, p99 = np.percentile(samples, [50, 99])
    print(f"  {label:<34} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   (n={len(samples)})")


async def _run(url: str, rounds: int) -> None:
    await asyncio.to_thread(migrate.upgrade, url)
    app = create_app(Settings(database_url=url, run_worker=False))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            kit = await make_kit(app, client)
            approver_headers, approver = await kit.key(["*"], email=f"approver-{kit.project_id}@example.com")
            flag = (await client.post(
                f"{kit.base}/feature_flags/", json={"key": "bench", "filters": _filters(0)}, headers=kit.headers
            )).json()
            flag_url = f"{kit.base}/feature_flags/{flag['id']}/"

            free = []
            for i in range(rounds):
                elapsed, response = await _timed(client.patch(flag_url, json={"filters": _filters(1 + i % 2)}, headers=kit.headers))
                assert response.status_code == 200, response.text
                free.append(elapsed)

            await client.post(
                f"{kit.base}/approval_policies/",
                json={"action_key": "feature_flag.update", "approver_config": {"quorum": 1, "users": [approver]}},
                headers=kit.headers,
            )
            gated, applied = [], []
            for i in range(rounds):
                elapsed, response = await _timed(client.patch(flag_url, json={"filters": _filters(10 + i % 80)}, headers=kit.headers))
                assert response.status_code == 409, response.text
                gated.append(elapsed)
                approve = f"{kit.base}/change_requests/{response.json()['change_request_id']}/approve/"
                elapsed, response = await _timed(client.post(approve, headers=approver_headers))
                assert response.json()["status"] == "applied", response.text
                applied.append(elapsed)
        _report("rollout PATCH, no policy", free)
        _report("rollout PATCH, gated (409)", gated)
        _report("approve and apply", applied)
    finally:
        await app.state.db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print("SQLite")
        await _run(f"sqlite+aiosqlite:///{folder}/bench.db", args.rounds)
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        url = await create_postgres_database(base)
        try:
            print("PostgreSQL")
            await _run(url, args.rounds)
        finally:
            await drop_postgres_database(url)


if __name__ == "__main__":
    asyncio.run(main())
