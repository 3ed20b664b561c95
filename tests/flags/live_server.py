"""Run the real server (`experiments serve`, uvicorn) in a subprocess on a free loopback port,
on a throwaway PostgreSQL database when wanted (tests and benches share these helpers)."""

import json
import os
import uuid
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

EXPERIMENTS = Path(sys.executable).with_name("experiments")


async def _connect_postgres(url, database: str):
    import asyncpg

    return await asyncpg.connect(
        host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username or "postgres",
        password=url.password, database=database,
    )


async def create_postgres_database(base_url: str) -> str:
    """A fresh, empty database on the server of `base_url`; returns its URL."""
    url = make_url(base_url)
    name = f"exp_test_{uuid.uuid4().hex[:12]}"
    conn = await _connect_postgres(url, url.database or "postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(db_url: str) -> None:
    url = make_url(db_url)
    conn = await _connect_postgres(url, "postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await conn.close()


def bootstrap(database_url: str, project_name: str) -> dict:
    """A project and an all-scopes key, made by the CLI exactly as an operator would."""
    completed = subprocess.run(
        [str(EXPERIMENTS), "bootstrap", "--project-name", project_name],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class LiveServer:
    url: str
    port: int
    process_group: int

    def cpu_seconds(self) -> float:
        """CPU time used so far by every process of the server (master and workers)."""
        return process_group_cpu_seconds(self.process_group)


def process_group_cpu_seconds(group: int) -> float:
    """CPU time used so far by every process whose process group is `group`."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # field 5 of stat: the process group id
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


@contextmanager
def running_server(
    database_url: str, *, workers: int = 1, env: dict[str, str] | None = None, timeout: float = 60
) -> Iterator[LiveServer]:
    """Run a server on `database_url`; stop its whole process group afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [str(EXPERIMENTS), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
        env={**os.environ, "DATABASE_URL": database_url, "RUN_WORKER": "false", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(
            process, f"{base}/healthz", timeout,
            exited=lambda: f"server exited: {process.stderr.read().decode(errors='replace')[-2000:]}",
        )  # fmt: skip
        yield LiveServer(url=base, port=port, process_group=process.pid)
    finally:
        stop_process_group(process)
        process.stderr.close()


def wait_until_healthy(process: subprocess.Popen, url: str, timeout: float, exited=lambda: "process exited") -> None:
    """Poll `url` until it answers 200; fail if the process exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(exited())
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not become healthy")
        time.sleep(0.1)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the process's whole group (it was started in a session of its own), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
