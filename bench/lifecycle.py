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

`--against-unleash` compares the operation that changes a flag's state with a peer: `--clients`
clients (8 by default there) each alternate pause/resume on a running experiment of their own
for `--seconds`, then the same clients toggle Unleash features off/on through Unleash's admin API
(`POST /api/admin/projects/default/features/{name}/environments/development/off|on`). Unleash
(npm `unleash-server`, `--unleash-version`) is installed into a temporary directory (or
`--unleash-dir`, reused when it already holds that version), never into the repository, and
runs as one Node process on a database of its own on the same PostgreSQL server. The two drivers
run alternately `--rounds` times; each round's figures and the throughput ratio are printed.
"""

import argparse
import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.flags.live_server import (  # noqa: E402
    bootstrap,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    process_group_cpu_seconds,
    running_server,
    stop_process_group,
    wait_until_healthy,
)

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


UNLEASH_ADMIN_TOKEN = "*:*.lifecycle-bench-admin-token"


def unleash_installed(directory: Path, version: str) -> Path:
    """`unleash-server@version` installed with npm into `directory`; returns its server script."""
    script = directory / "node_modules" / "unleash-server" / "dist" / "server.js"
    package = directory / "node_modules" / "unleash-server" / "package.json"
    if not (package.exists() and f'"version": "{version}"' in package.read_text()):
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(directory),
             f"unleash-server@{version}"],
            check=True, timeout=900,
        )  # fmt: skip
    return script


@contextmanager
def running_unleash(script: Path, database_url: str, timeout: float = 120):
    """Unleash as one Node process on its own database; yields its base URL."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{url.username or 'postgres'}@{url.host or '127.0.0.1'}:{url.port or 5432}/{url.database}",
        "DATABASE_SSL": "false",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "INIT_ADMIN_API_TOKENS": UNLEASH_ADMIN_TOKEN,
        "LOG_LEVEL": "error",
        "UNLEASH_TELEMETRY_DISABLED": "true",
        "CHECK_VERSION": "false",
        "TZ": "UTC",
    }
    process = subprocess.Popen(["node", str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, f"{base}/health", timeout, exited=lambda: "unleash-server exited during start-up")
        yield base, process.pid
    finally:
        stop_process_group(process)


async def toggle(server: str, headers: dict, urls: list[tuple[str, str]], seconds: float) -> tuple[Recorder, float]:
    """Each client alternates between its own two URLs (off, on) until the deadline."""
    recorder = Recorder()

    async def client_loop(off: str, on: str) -> None:
        async with httpx.AsyncClient(base_url=server, headers=headers, timeout=30) as client:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for url in (off, on):
                    await recorder.call("toggle", 200, client.post(url))

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(off, on) for off, on in urls))
    return recorder, time.perf_counter() - started


def toggle_figures(recorder: Recorder, elapsed: float) -> dict:
    samples = recorder.latencies.get("toggle") or [float("nan")]
    p50, p99 = np.percentile(samples, [50, 99])
    errors = recorder.server_errors + sum(recorder.unexpected.values()) + recorder.transport_errors
    return {"rps": len(samples) / elapsed, "p50": p50, "p99": p99, "n": len(samples), "errors": errors}


def our_toggle_urls(server: str, key: str, project_id: int, clients: int) -> list[tuple[str, str]]:
    """One running experiment per client; its pause and resume URLs."""
    base = f"/api/projects/{project_id}/experiments"
    urls = []
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        for n in range(clients):
            created = http.post(f"{base}/", json={"name": f"Toggle {n}", "feature_flag_key": f"toggle-{n}"})
            created.raise_for_status()
            url = f"{base}/{created.json()['id']}"
            http.post(f"{url}/launch/").raise_for_status()
            urls.append((f"{url}/pause/", f"{url}/resume/"))
    return urls


def unleash_toggle_urls(base: str, clients: int) -> list[tuple[str, str]]:
    """One feature per client in Unleash's default project; its off and on URLs."""
    features = "/api/admin/projects/default/features"
    urls = []
    with httpx.Client(base_url=base, headers={"Authorization": UNLEASH_ADMIN_TOKEN}, timeout=30) as http:
        for n in range(clients):
            http.post(f"{features}", json={"name": f"toggle-{n}"}).raise_for_status()
            env = f"{features}/toggle-{n}/environments/development"
            http.post(f"{env}/on").raise_for_status()
            urls.append((f"{env}/off", f"{env}/on"))
    return urls


def against_unleash(args) -> int:
    """Alternate rounds of our pause/resume and Unleash's off/on; print each and the ratio."""
    ours_db = asyncio.run(create_postgres_database(args.database_url))
    peer_db = asyncio.run(create_postgres_database(args.database_url))
    scratch = None if args.unleash_dir else tempfile.mkdtemp(prefix="unleash-")
    try:
        script = unleash_installed(Path(args.unleash_dir or scratch), args.unleash_version)
        project = bootstrap(ours_db, "Toggle benchmark")
        headers = {"Authorization": f"Bearer {project['personal_api_key']}"}
        with running_server(ours_db, workers=args.workers) as server, running_unleash(script, peer_db) as (peer, group):
            ours_urls = our_toggle_urls(server.url, project["personal_api_key"], project["project_id"], args.clients)
            peer_urls = unleash_toggle_urls(peer, args.clients)
            peer_headers = {"Authorization": UNLEASH_ADMIN_TOKEN}
            asyncio.run(toggle(server.url, headers, ours_urls, 2))  # warm-up, not measured
            asyncio.run(toggle(peer, peer_headers, peer_urls, 2))
            failed = 0
            for round_ in range(1, args.rounds + 1):
                cpu = server.cpu_seconds()
                ours = toggle_figures(*asyncio.run(toggle(server.url, headers, ours_urls, args.seconds)))
                ours_cpu = (server.cpu_seconds() - cpu) * 1000 / max(ours["n"], 1)
                cpu = process_group_cpu_seconds(group)
                theirs = toggle_figures(*asyncio.run(toggle(peer, peer_headers, peer_urls, args.seconds)))
                theirs_cpu = (process_group_cpu_seconds(group) - cpu) * 1000 / max(theirs["n"], 1)
                failed += ours["errors"] + theirs["errors"]
                print(f"round {round_}: {args.clients} clients, {args.seconds:g} s each, load average "
                      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
                for name, fig, cpu_ms in (("experiments pause/resume", ours, ours_cpu),
                                          (f"unleash {args.unleash_version} off/on", theirs, theirs_cpu)):  # fmt: skip
                    print(f"  {name:<28} {fig['rps']:7.1f} req/s  p50 {fig['p50']:7.2f} ms  p99 {fig['p99']:7.2f} ms  "
                          f"server CPU {cpu_ms:5.2f} ms/request  n={fig['n']}  errors={fig['errors']}")  # fmt: skip
                print(f"  ratio (ours / unleash): throughput {ours['rps'] / theirs['rps']:.2f}x, "
                      f"p99 {ours['p99'] / theirs['p99']:.2f}x", flush=True)  # fmt: skip
        return 1 if failed else 0
    finally:
        asyncio.run(drop_postgres_database(ours_db))
        asyncio.run(drop_postgres_database(peer_db))
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", DEFAULT_SERVER_URL))
    parser.add_argument("--against-unleash", action="store_true", help="compare pause/resume with Unleash's toggle")
    parser.add_argument("--unleash-version", default="8.2.0")
    parser.add_argument("--unleash-dir", help="where to install unleash-server (default: a temporary directory)")
    parser.add_argument("--seconds", type=float, default=15, help="length of each measured round (--against-unleash)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (--against-unleash)")
    args = parser.parse_args()
    if args.against_unleash:
        if args.clients == parser.get_default("clients"):
            args.clients = 8
        if args.workers == parser.get_default("workers"):
            args.workers = 2
        return against_unleash(args)

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
