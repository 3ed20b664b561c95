"""The experiment lifecycle over HTTP against the real server.

Starts `experiments serve` (uvicorn) on a free loopback port with a fresh PostgreSQL database,
bootstraps a project with `experiments bootstrap`, then drives `--experiments` experiments
through create -> launch -> pause -> resume -> ship_variant with `--clients` concurrent httpx
clients (each client takes the next experiment when it finishes one). Prints p50/p99 latency per
action and the error count (5xx and any status other than the expected one).

    .venv/bin/python bench/lifecycle.py [--experiments 200] [--clients 20] [--workers 1]

The PostgreSQL server comes from `--database-url` (default `$TEST_DATABASE_URL`, else
`postgresql+asyncpg://postgres@127.0.0.1:5432/postgres`); a database is created for the run and
dropped afterwards. The run stops starting experiments after `--max-seconds`.
"""

import argparse
import asyncio
import itertools
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.flags.live_server import bootstrap, create_postgres_database, drop_postgres_database, running_server  # noqa: E402

DEFAULT_SERVER_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
# (action, expected status); each experiment goes through them in this order.
STEPS = [("create", 201), ("launch", 200), ("pause", 200), ("resume", 200), ("ship_variant", 200)]


class Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.unexpected: Counter[tuple[str, int]] = Counter()
        self.server_errors = 0
        self.transport_errors = 0

    async def call(self, action: str, expected: int, request) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            response = await request
        except httpx.TransportError:
            self.transport_errors += 1
            return None
        self.latencies[action].append((time.perf_counter() - start) * 1000)
        if response.status_code >= 500:
            self.server_errors += 1
        if response.status_code != expected:
            self.unexpected[(action, response.status_code)] += 1
            return None
        return response


async def one_experiment(client: httpx.AsyncClient, base: str, index: int, recorder: Recorder) -> None:
    created = await recorder.call(
        "create", 201,
        client.post(f"{base}/experiments/", json={"name": f"Bench {index}", "feature_flag_key": f"bench-{index}"}),
    )  # fmt: skip
    if created is None:
        return
    url = f"{base}/experiments/{created.json()['id']}/"
    for action, expected in STEPS[1:]:
        body = {"variant_key": "test", "conclusion": "won"} if action == "ship_variant" else None
        if await recorder.call(action, expected, client.post(url + f"{action}/", json=body)) is None:
            return


async def drive(server: str, key: str, project_id: int, experiments: int, clients: int, max_seconds: float):
    recorder = Recorder()
    numbers = itertools.count()
    deadline = time.monotonic() + max_seconds
    base = f"/api/projects/{project_id}"
    headers = {"Authorization": f"Bearer {key}"}

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=server, headers=headers, timeout=30) as client:
            while time.monotonic() < deadline:
                index = next(numbers)
                if index >= experiments:
                    return
                await one_experiment(client, base, index, recorder)

    # Warm the server's connection pool and code paths; not measured.
    async with httpx.AsyncClient(base_url=server, headers=headers, timeout=30) as client:
        await one_experiment(client, base, -1, Recorder())
    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return recorder, time.perf_counter() - started, min(next(numbers), experiments)


def report(recorder: Recorder, elapsed: float, started: int, clients: int, workers: int, server_cpu: float) -> int:
    total = sum(len(samples) for samples in recorder.latencies.values())
    print(f"lifecycle: {started} experiments, {clients} clients, {workers} worker(s), {elapsed:.1f} s, "
          f"{total / elapsed:.0f} requests/s, server CPU {server_cpu * 1000 / max(total, 1):.1f} ms/request "
          f"(warm-up included), load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    for action, _ in STEPS:
        samples = recorder.latencies.get(action) or [float("nan")]
        p50, p99 = np.percentile(samples, [50, 99])
        print(f"  {action:<13} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   max {max(samples):7.2f} ms   n={len(samples)}")
    errors = recorder.server_errors + sum(recorder.unexpected.values()) + recorder.transport_errors
    print(f"  errors: {errors} (5xx: {recorder.server_errors}, transport: {recorder.transport_errors}, "
          f"unexpected statuses: {dict(recorder.unexpected) or 'none'})")  # fmt: skip
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_SERVER_URL))
    args = parser.parse_args()

    database_url = asyncio.run(create_postgres_database(args.database_url))
    try:
        project = bootstrap(database_url, "Lifecycle benchmark")
        with running_server(database_url, workers=args.workers) as server:
            cpu_before = server.cpu_seconds()
            recorder, elapsed, started = asyncio.run(
                drive(server.url, project["personal_api_key"], project["project_id"], args.experiments, args.clients,
                      args.max_seconds)
            )  # fmt: skip
            server_cpu = server.cpu_seconds() - cpu_before
        return report(recorder, elapsed, started, args.clients, args.workers, server_cpu)
    finally:
        asyncio.run(drop_postgres_database(database_url))


if __name__ == "__main__":
    raise SystemExit(main())
