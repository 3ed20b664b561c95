"""Rate limits: per personal API key on `/api`, per project token on `/flags` and capture."""

from experiments_service.ratelimit.limiter import (
    RateLimits,
    Throttled,
    build_rate_limits,
    rate_limit_key,
    rate_limit_project_token,
)

__all__ = ["RateLimits", "Throttled", "build_rate_limits", "rate_limit_key", "rate_limit_project_token"]
