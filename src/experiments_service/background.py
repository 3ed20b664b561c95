"""Background services that run inside a server process (job worker, flag-cache listener).

Each domain registers a starter here; `lifespan` starts them all and stops them on shutdown.
"""

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from experiments_service.flags.cache import start_definitions_listener
from experiments_service.results.worker import start_results_worker

Stopper = Callable[[], Awaitable[None]]
Starter = Callable[[FastAPI], Awaitable[Stopper]]

STARTERS: list[Starter] = [start_results_worker, start_definitions_listener]


async def start_background_services(app: FastAPI) -> Stopper:
    stoppers = [await start(app) for start in STARTERS]

    async def stop_all() -> None:
        for stop in reversed(stoppers):
            await stop()

    return stop_all
