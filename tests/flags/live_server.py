"""Run the real server (`experiments serve`, uvicorn) in a subprocess on a free loopback port."""

import os
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

EXPERIMENTS = Path(sys.executable).with_name("experiments")


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
            if int(fields[2]) == self.process_group:  # field 5 of stat: the process group id
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
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become healthy")
            time.sleep(0.1)
        yield LiveServer(url=base, port=port, process_group=process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        process.stderr.close()
