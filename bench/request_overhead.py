"""What the per-request observability costs: request id, metrics and the JSON access line.

Drives `RequestObservabilityMiddleware` (with `RouteRecorder` inside it) around an ASGI app that
answers at once, in-process, and prints the added CPU time per request for metrics only and for
metrics plus the access line (rendered as JSON into a discarded stream). Compare it with the CPU
a `/flags` request costs the server (`bench/flags_http.py` prints it).

    .venv/bin/python bench/request_overhead.py [--requests 50000]
"""

import argparse
import asyncio
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments_service.observability import logs  # noqa: E402
from experiments_service.observability.middleware import RequestObservabilityMiddleware, RouteRecorder  # noqa: E402
from experiments_service.settings import Settings  # noqa: E402


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


async def _answer(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def _noop_send(message) -> None:
    return None


async def _receive():
    return {"type": "http.request", "body": b"", "more_body": False}


def _scope() -> dict:
    return {"type": "http", "method": "POST", "path": "/flags/", "headers": [(b"content-type", b"application/json")]}


async def _cpu_per_request(app, requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        await app(_scope(), _receive, _noop_send)
    return (time.process_time() - started) / requests


async def main(requests: int) -> None:
    wrapped = RequestObservabilityMiddleware(RouteRecorder(_answer), static_routes=["/flags/"])
    await _cpu_per_request(wrapped, 1000)  # warm up label children and caches
    bare = await _cpu_per_request(_answer, requests)
    logs.configure_logging(Settings(access_log=False, log_format="json"), stream=_Discard())
    metrics_only = await _cpu_per_request(wrapped, requests)
    logs.configure_logging(Settings(access_log=True, log_format="json"), stream=_Discard())
    with_log = await _cpu_per_request(wrapped, requests)
    print(f"requests: {requests}")
    print(f"request id + metrics: {(metrics_only - bare) * 1e6:.1f} µs CPU per request")
    print(f"request id + metrics + JSON access line: {(with_log - bare) * 1e6:.1f} µs CPU per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    asyncio.run(main(parser.parse_args().requests))
