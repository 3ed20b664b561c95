"""Per-key (`/api`) and per-project-token (`/flags`, `/decide`, capture) rate limits.

Fixed windows from the `limits` library, configured with its notation (`"480/minute;4800/hour"`).
Counters live in PostgreSQL when the service runs on it (shared by every worker) and in process
memory on SQLite (one process, one budget). Off unless configured.
"""

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from starlette.requests import Request

from experiments_service.errors import APIError

log = logging.getLogger(__name__)

# Longest a counter store may take to answer before the request is let through.
STORAGE_TIMEOUT_SECONDS = 1.0


class Throttled(APIError):
    """429 in PostHog's (DRF's) words, with `Retry-After` in seconds."""

    status_code = 429
    error_type = "throttled_error"
    default_code = "throttled"

    def __init__(self, wait_seconds: int):
        unit = "second" if wait_seconds == 1 else "seconds"
        super().__init__(f"Request was throttled. Expected available in {wait_seconds} {unit}.")
        self.headers = {"Retry-After": str(wait_seconds)}


@dataclass
class RateLimits:
    """The configured limits and where their counters are kept."""

    storage: Storage
    api: list[RateLimitItem]
    sdk: list[RateLimitItem]

    def __post_init__(self) -> None:
        self.strategy = FixedWindowRateLimiter(self.storage)

    async def hit(self, limits: list[RateLimitItem], *identifiers: str) -> None:
        """Count one request against every limit; raise `Throttled` when one is exhausted.

        A counter store that cannot be reached, or answers slower than `STORAGE_TIMEOUT_SECONDS`,
        lets the request through (an outage must not turn cached `/flags` answers into errors).
        """
        for item in limits:
            try:
                async with asyncio.timeout(STORAGE_TIMEOUT_SECONDS):
                    if await self.strategy.hit(item, *identifiers):
                        continue
                    reset = (await self.strategy.get_window_stats(item, *identifiers)).reset_time
            except Exception:  # noqa: BLE001 - fail open, as documented
                log.warning("rate limit counters unavailable; request let through", exc_info=True)
                return
            raise Throttled(max(1, math.ceil(reset - time.time())))


def build_rate_limits(api: str, sdk: str, engine=None, sync_seconds: float = 0.1) -> RateLimits | None:
    """Limits from settings (None when both are empty); database counters when `engine` is given."""
    api_limits = parse_many(api) if api.strip() else []
    sdk_limits = parse_many(sdk) if sdk.strip() else []
    if not api_limits and not sdk_limits:
        return None
    if engine is not None:
        from experiments_service.ratelimit.repository import DatabaseCounters

        storage: Storage = DatabaseCounters(engine, sync_seconds)
    else:
        storage = MemoryStorage()
    return RateLimits(storage=storage, api=api_limits, sdk=sdk_limits)


def _limits_of(request: Request) -> RateLimits | None:
    return getattr(request.app.state, "rate_limits", None)


async def rate_limit_key(request: Request, key_id: int) -> None:
    """Count a request made with personal API key `key_id` (after the key was verified)."""
    limits = _limits_of(request)
    if limits is not None and limits.api:
        await limits.hit(limits.api, "key", str(key_id))


async def rate_limit_project_token(request: Request, project_id: int) -> None:
    """Count an SDK request (flags or capture) made with project `project_id`'s public token."""
    limits = _limits_of(request)
    if limits is not None and limits.sdk:
        await limits.hit(limits.sdk, "token", str(project_id))
