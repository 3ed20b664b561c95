"""Process settings, read once from the environment (and `.env`)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_database_url() -> str:
    return f"sqlite+aiosqlite:///{Path.cwd() / 'experiments.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = _default_database_url()
    # PostgreSQL connection pool, per process: kept connections, extra ones under load, how long
    # a request waits for one (503 beyond), when a connection is replaced, and how long
    # connecting may take before the database counts as unreachable (503).
    database_pool_size: int = 10
    database_max_overflow: int = 20
    database_pool_timeout_seconds: float = 10.0
    database_pool_recycle_seconds: int = 1800
    database_connect_timeout_seconds: float = 5.0
    # Largest request body accepted by capture and flag evaluation, in bytes (413 beyond).
    max_body_bytes: int = 20 * 1024 * 1024
    # Deepest nesting and longest string accepted in a JSON body or JSON query parameter (400 beyond).
    max_json_depth: int = 64
    max_string_length: int = 100_000
    # How long an in-memory copy of a project's flag definitions may be trusted before
    # re-checking the database version stamp (keeps several processes coherent).
    flag_cache_ttl_seconds: float = 0.5
    # Run the background job worker inside the API process.
    run_worker: bool = True
    # Rate limits in `limits` notation, e.g. "480/minute;4800/hour"; empty: no limit.
    # Per personal API key on /api routes, and per project token on /flags, /decide and capture.
    rate_limit_api: str = ""
    rate_limit_sdk: str = ""
    # On PostgreSQL, how often each process adds its counts to the shared counters (per key or
    # token); 0 syncs on every request (exact, one statement per request).
    rate_limit_sync_seconds: float = 0.1
    # Logging: level name, and `json` / `console` (`auto`: console on a terminal, JSON otherwise).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    # One log line per request (method, route template, status, duration, project id).
    access_log: bool = True
    # Worker processes `experiments serve` starts when `--workers` is not given.
    workers: int = 1
    # Where the workers of one server keep their metrics (default: a new temporary directory).
    prometheus_multiproc_dir: str | None = None
    # The Alembic configuration, when the package is installed away from its source tree.
    experiments_alembic_ini: str | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
    # Origins (comma-separated, e.g. `https://app.example.com`) whose pages may call `/api/...`
    # from a browser with a personal API key; empty: none. The SDK routes allow every origin.
    cors_allowed_origins: str = ""

    @property
    def cors_origins(self) -> list[str]:
        return [origin.strip().rstrip("/") for origin in self.cors_allowed_origins.split(",") if origin.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
