"""Background services that run inside a server process (job worker, flag-cache listener).

Each domain registers a starter here; `lifespan` starts them all and stops them on shutdown.
"""

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

Stopper = Callable[[], Awaitable[None]]
Starter = Callable[[FastAPI], Awaitable[Stopper]]

STARTERS: list[Starter] = []


async def start_background_services(app: FastAPI) -> Stopper:
    stoppers = [await start(app) for start in STARTERS]

    async def stop_all() -> None:
        for stop in reversed(stoppers):
            await stop()

    return stop_all
