"""Flag evaluation over HTTP: the real server (`experiments serve`, uvicorn) on a fresh
PostgreSQL database, a project with 10 flags (an experiment's flag, payloads, person-property
conditions), and `POST /flags/?v=2` driven over 32 keep-alive connections on loopback.

Prints throughput and p50/p99 latency for `--workers 1` and then `--workers 2`, with the CPU
time the server used (requests per CPU-second stays meaningful on a machine shared with other
work, where wall-clock throughput does not).

    .venv/bin/python bench/flags_http.py [--seconds 10] [--connections 32] [--generators 1]

`--flags 10,100,1000` measures projects of that many active flags instead (a third plain rollouts, a
third person-property conditions, a third multivariate), every request asking for all of them as
posthog-js does, and prints the curve. `--bare` also measures a bare ASGI app on the same uvicorn
(`bench/bare_asgi.py`: it reads the request body and answers the same bytes /flags answered) and
prints the ratio of /flags to that ceiling.

The load generator is a bare asyncio protocol speaking HTTP/1.1 keep-alive (uvloop, requests
serialised before the clock starts) in `--generators` processes; it reports its own CPU time,
which stays a small fraction of the server's.
The PostgreSQL server comes from `--database-url` (default `$TEST_DATABASE_URL`, else
`postgresql+asyncpg://postgres@127.0.0.1:5432/postgres`); a database is created for the run and
dropped afterwards.
"""

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments_service import migrate  # noqa: E402
from experiments_service.auth.service import create_project, ensure_user, issue_personal_api_key  # noqa: E402
from experiments_service.db import Database  # noqa: E402
from experiments_service.settings import Settings  # noqa: E402
from tests.flags.live_server import (  # noqa: E402
    LiveServer,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    running_server,
)

DEFAULT_SERVER_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _person(key: str, value, operator: str = "exact") -> dict:
    return {"key": key, "value": value, "operator": operator, "type": "person"}


def _group(rollout=100, properties=(), variant=None) -> dict:
    return {"properties": list(properties), "rollout_percentage": rollout, "variant": variant}


FLAGS = [
    {"key": "rollout-half", "filters": {"groups": [_group(50)], "payloads": {"true": {"banner": "new"}}}},
    {"key": "everyone", "filters": {"groups": [_group(100)]}},
    {
        "key": "pricing-page",
        "filters": {
            "groups": [_group(90)],
            "multivariate": {"variants": [
                {"key": "control", "rollout_percentage": 34}, {"key": "monthly", "rollout_percentage": 33},
                {"key": "yearly", "rollout_percentage": 33},
            ]},
            "payloads": {"control": {"price": 10}, "monthly": {"price": 9}, "yearly": {"price": 99}},
        },
    },
    {"key": "staff-tools", "filters": {"groups": [_group(100, [_person("email", "@example.com", "icontains")])]}},
    {"key": "paid-plans", "filters": {"groups": [_group(100, [_person("plan", ["pro", "enterprise"])])]}},
    {"key": "outside-norway", "filters": {"groups": [_group(30, [_person("country", "NO", "is_not")])]}},
    {"key": "new-app", "filters": {"groups": [_group(100, [_person("app_version", "2.0.0", "semver_gte")])]}},
    {"key": "adults", "filters": {"groups": [_group(100, [_person("age", "18", "gt")]), _group(10)]}},
    {
        "key": "theme",
        "filters": {
            "groups": [_group(100, [_person("plan", "enterprise")], variant="dark"), _group(60)],
            "multivariate": {"variants": [{"key": "light", "rollout_percentage": 50}, {"key": "dark", "rollout_percentage": 50}]},
        },
    },
]


async def prepare_project(database_url: str) -> dict:
    db = Database(Settings(database_url=database_url))
    try:
        async with db.transaction() as session:
            project = await create_project(session, "flags benchmark")
            user = await ensure_user(session, "bench@example.com", project)
            issued = await issue_personal_api_key(session, user, ["*"])
        return {"project_id": project.id, "token": project.api_token, "headers": {"Authorization": f"Bearer {issued.secret}"}}
    finally:
        await db.dispose()


def create_flags(base: str, project: dict) -> None:
    """Nine flags through the flags API and one through an experiment (launched)."""
    api = f"{base}/api/projects/{project['project_id']}"
    with httpx.Client(headers=project["headers"], timeout=30) as http:
        for flag in FLAGS:
            http.post(f"{api}/feature_flags/", json=flag).raise_for_status()
        experiment = http.post(f"{api}/experiments/", json={"name": "Checkout", "feature_flag_key": "checkout-experiment"})
        experiment.raise_for_status()
        http.post(f"{api}/experiments/{experiment.json()['id']}/launch/").raise_for_status()
        listed = http.get(f"{api}/feature_flags/?limit=100").json()
        assert listed["count"] == 10, listed["count"]


def generated_flags(count: int) -> list[dict]:
    """`count` flags of a large project: a third plain rollouts, a third person-property
    conditions, a third multivariate."""
    flags = []
    for n in range(count):
        kind = n % 3
        if kind == 0:
            filters = {"groups": [_group(10 + (n * 37) % 90)]}  # rollouts spread over 10-99 %
        elif kind == 1:
            filters = {"groups": [_group(100, [_person("plan", ["pro", "enterprise"])]), _group(100, [_person("age", "30", "gt")])]}
        else:
            filters = {
                "groups": [_group(100)],
                "multivariate": {"variants": [{"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50}]},
            }
        flags.append({"key": f"flag-{n:04d}", "filters": filters})
    return flags


def create_generated_flags(base: str, project: dict, count: int) -> None:
    api = f"{base}/api/projects/{project['project_id']}"
    with httpx.Client(headers=project["headers"], timeout=30) as http:
        for flag in generated_flags(count):
            http.post(f"{api}/feature_flags/", json=flag).raise_for_status()
        assert http.get(f"{api}/feature_flags/?limit=1").json()["count"] == count


def build_requests(port: int, token: str, count: int = 10_000, seed: int = 11) -> list[bytes]:
    """Serialised `POST /flags/?v=2` requests for distinct persons; every property a condition
    reads is supplied, as server SDKs do, so no stored person is looked up."""
    rng = random.Random(seed)
    requests = []
    for n in range(count):
        body = orjson.dumps({
            "token": token,
            "distinct_id": f"user-{n}",
            "person_properties": {
                "email": rng.choice(["a@example.com", "b@shop.test", "c@corp.test"]),
                "plan": rng.choice(["free", "pro", "enterprise"]),
                "country": rng.choice(["NO", "SE", "US"]),
                "app_version": rng.choice(["1.9.3", "2.0.0", "2.4.1"]),
                "age": rng.randrange(12, 70),
            },
            "groups": {},
            "geoip_disable": True,
        })
        head = (
            f"POST /flags/?v=2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: posthog-python/7.0.0\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        requests.append(head + body)
    return requests


class _KeepAliveClient(asyncio.Protocol):
    """One keep-alive connection sending the next request as soon as a response is complete
    (a bare protocol: far less per-request work than asyncio streams)."""

    def __init__(self, requests: list[bytes], start: int, deadline: float, latencies: list[float], errors: list[int], done: asyncio.Future):
        self.requests, self.index, self.deadline = requests, start, deadline
        self.latencies, self.errors, self.done = latencies, errors, done
        self.buffer = b""
        self.began = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        self.began = time.perf_counter()
        self.transport.write(self.requests[self.index % len(self.requests)])
        self.index += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        lower = self.buffer[:end].lower()
        at = lower.index(b"content-length:") + 15
        line_end = lower.find(b"\r\n", at)
        length = int(lower[at : line_end if line_end >= 0 else len(lower)])
        if len(self.buffer) < end + 4 + length:
            return
        now = time.perf_counter()
        self.latencies.append(now - self.began)
        if self.buffer[9:12] != b"200":
            self.errors.append(int(self.buffer[9:12]))
        self.buffer = self.buffer[end + 4 + length:]
        if now < self.deadline:
            self._send()
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def generate_load(port: int, requests: list[bytes], connections: int, seconds: float, offset: int) -> tuple[list[float], list[int], float]:
    """One generator process: `connections` keep-alive connections until the deadline.

    Returns latencies, non-200 statuses and the CPU seconds the generator itself used."""
    import resource

    import uvloop

    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadline = time.perf_counter() + seconds
        finished = []
        for i in range(connections):
            done = loop.create_future()
            finished.append(done)
            await loop.create_connection(
                lambda done=done, i=i: _KeepAliveClient(requests, offset + i * 997, deadline, latencies, errors, done),
                "127.0.0.1",
                port,
            )
        await asyncio.gather(*finished)

    before = resource.getrusage(resource.RUSAGE_SELF)
    uvloop.run(main())
    after = resource.getrusage(resource.RUSAGE_SELF)
    return latencies, errors, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(port: int, requests: list[bytes], connections: int, generators: int, seconds: float) -> dict:
    per_process = [connections // generators + (1 if i < connections % generators else 0) for i in range(generators)]
    with ProcessPoolExecutor(generators) as pool:
        started = time.perf_counter()
        futures = [
            pool.submit(generate_load, port, requests, n, seconds, i * 5003) for i, n in enumerate(per_process)
        ]
        results = [future.result() for future in futures]
        elapsed = time.perf_counter() - started
    latencies = np.array([value for lat, _, _ in results for value in lat]) * 1000
    errors = sum(len(err) for _, err, _ in results)
    return {
        "generator_cpu": sum(cpu for _, _, cpu in results),
        "requests": int(latencies.size),
        "errors": errors,
        "rps": latencies.size / min(elapsed, seconds + 0.5),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


@contextmanager
def running_bare_app(body: bytes, workers: int):
    """`bench/bare_asgi.py` on uvicorn with the options `experiments serve` uses."""
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(body)
        file.flush()
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bare_asgi:app", "--app-dir", str(Path(__file__).parent), "--host",
             "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
            env={**os.environ, "BARE_ASGI_BODY": file.name}, stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.post(f"http://127.0.0.1:{port}/", content=b"{}", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("the bare ASGI app did not start") from None
                    time.sleep(0.1)
            yield LiveServer(url=f"http://127.0.0.1:{port}", port=port, process_group=process.pid)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)


def run_measured(server: LiveServer, requests: list[bytes], args) -> dict:
    """Warm every worker, then measure; adds the server's CPU seconds."""
    measure(server.port, requests, args.connections, args.generators, 2)
    cpu_before = server.cpu_seconds()
    result = measure(server.port, requests, args.connections, args.generators, args.seconds)
    result["server_cpu"] = server.cpu_seconds() - cpu_before
    return result


def print_result(label: str, result: dict, args) -> None:
    print(
        f"{label} connections={args.connections} seconds={args.seconds:g}: "
        f"{result['rps']:,.0f} req/s, p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
        f"{result['requests']} requests, {result['errors']} errors; "
        f"server CPU {result['server_cpu']:.1f} s = {result['requests'] / result['server_cpu']:,.0f} requests per "
        f"CPU-second (load generator CPU {result['generator_cpu']:.1f} s); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--generators", type=int, default=1)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to measure")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_SERVER_URL))

    parser.add_argument("--flags", help="comma-separated project sizes (active flags) to measure instead of the 10-flag project")
    parser.add_argument("--bare", action="store_true", help="also measure the bare ASGI ceiling and print the ratio")
    args = parser.parse_args()
    sizes = [int(n) for n in args.flags.split(",")] if args.flags else [None]
    for size in sizes:
        for workers in [int(w) for w in args.workers.split(",")]:
            measure_project(args, size, workers)
    return 0


def measure_project(args, size: int | None, workers: int) -> None:
    """One fresh database and project (the 10-flag one, or `size` generated flags), /flags with
    `workers` workers, then the bare ceiling with the same answer bytes when `--bare`."""
    database_url = asyncio.run(create_postgres_database(args.database_url))
    try:
        migrate.upgrade(database_url)
        project = asyncio.run(prepare_project(database_url))
        with running_server(database_url, workers=workers) as server:
            if size is None:
                create_flags(server.url, project)
            else:
                create_generated_flags(server.url, project, size)
            requests = build_requests(server.port, project["token"])
            answer = httpx.post(f"{server.url}/flags/?v=2", content=requests[0].split(b"\r\n\r\n", 1)[1])
            sample = answer.json()
            assert len(sample["flags"]) == (size or 10) and not sample["errorsWhileComputingFlags"], sample
            flags = run_measured(server, requests, args)
        label = f"/flags {size or 10} flags workers={workers}"
        print_result(label, flags, args)
        if args.bare:
            with running_bare_app(answer.content, workers) as bare:
                ceiling = run_measured(bare, requests, args)
            print_result(f"bare ASGI ({len(answer.content)} bytes) workers={workers}", ceiling, args)
            print(f"  /flags / bare ceiling: {flags['rps'] / ceiling['rps']:.2f}", flush=True)
    finally:
        asyncio.run(drop_postgres_database(database_url))


if __name__ == "__main__":
    raise SystemExit(main())
