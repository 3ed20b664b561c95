"""The real `experiments serve` and `experiments migrate`: JSON logs on stderr, metrics summed over
workers, `--version`, and replicas migrating one fresh database at once."""

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from experiments_service import migrate
from experiments_service.db import create_engine
from experiments_service.observability.version import __version__
from tests.flags.live_server import free_port

EXPERIMENTS = Path(sys.executable).with_name("experiments")


@dataclass
class Server:
    process: subprocess.Popen
    base: str
    log_file: Path

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.log_file.read_text()[-2000:]
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_server(database_url: str, log_file: Path, workers: int = 1, **env: str) -> Server:
    """`experiments serve` on a free port, its stderr in `log_file`."""
    port = free_port()
    with open(log_file, "wb") as stderr:
        process = subprocess.Popen(
            [str(EXPERIMENTS), "serve", "--port", str(port), "--workers", str(workers)],
            env={**os.environ, "DATABASE_URL": database_url, "RUN_WORKER": "false", **env},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    return Server(process, f"http://127.0.0.1:{port}", log_file)


@contextmanager
def serving(database_url: str, log_file: Path, workers: int, **env: str):
    server = start_server(database_url, log_file, workers, **env)
    try:
        server.wait_ready()
        yield server.base
    finally:
        server.stop()


def json_lines(log_file: Path) -> list[dict]:
    return [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]


def counter(text_body: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text_body):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_served_logs_are_json_with_the_request_id_and_metrics_add_up_over_workers(fresh_database_url, tmp_path):
    log_file = tmp_path / "serve.log"
    with serving(fresh_database_url, log_file, workers=2, LOG_FORMAT="json") as base:
        answered = httpx.get(f"{base}/version", headers={"X-Request-ID": "live-1"})
        assert answered.status_code == 200 and answered.headers["x-request-id"] == "live-1"
        for _ in range(19):  # a new connection each: the kernel spreads them over the workers
            assert httpx.get(f"{base}/version").status_code == 200
        scraped = {counter(httpx.get(f"{base}/metrics").text, "experiments_http_requests_total",
                           method="GET", route="/version", status="200") for _ in range(4)}
        deadline = time.monotonic() + 10
        while not any(line.get("request_id") == "live-1" for line in json_lines(log_file)):
            assert time.monotonic() < deadline, log_file.read_text()[-2000:]
            time.sleep(0.1)
    # Whichever worker answered the scrape, it counted every worker's requests.
    assert scraped == {20.0}
    records = json_lines(log_file)  # every line on stderr is JSON, uvicorn's and Alembic's included
    [access] = [line for line in records if line.get("request_id") == "live-1"]
    assert access["event"] == "request" and access["route"] == "/version" and access["status"] == 200
    assert any(line.get("logger", "").startswith("uvicorn") for line in records)
    assert any("Running upgrade" in line["event"] for line in records)  # the migration, logged too


def test_version_flag():
    completed = subprocess.run([str(EXPERIMENTS), "--version"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and completed.stdout.strip() == f"experiments {__version__}"


async def test_four_replicas_start_on_one_fresh_database_at_once(fresh_database_url, tmp_path):
    """Two `serve` and two `migrate` started together: every one migrates (or finds the schema at
    head once the first has) and both servers become ready."""
    servers = [start_server(fresh_database_url, tmp_path / f"serve-{i}.log") for i in range(2)]
    try:
        migrations = [
            subprocess.Popen(
                [str(EXPERIMENTS), "migrate"],
                env={**os.environ, "DATABASE_URL": fresh_database_url},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outcomes = [(process.wait(timeout=180), process.stderr.read()) for process in migrations]
        for process in migrations:
            process.stderr.close()
        assert [code for code, _ in outcomes] == [0, 0], [err[-1500:] for _, err in outcomes]
        for server in servers:
            server.wait_ready()
    finally:
        for server in servers:
            server.stop()
    engine = create_engine(fresh_database_url)
    try:
        async with engine.connect() as connection:
            applied = {row[0] for row in await connection.execute(text("SELECT version_num FROM alembic_version"))}
    finally:
        await engine.dispose()
    assert applied == set(migrate.head_revisions())
