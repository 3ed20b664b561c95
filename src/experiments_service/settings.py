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
    # Largest request body accepted by capture and flag evaluation, in bytes (413 beyond).
    max_body_bytes: int = 20 * 1024 * 1024
    # How long an in-memory copy of a project's flag definitions may be trusted before
    # re-checking the database version stamp (keeps several processes coherent).
    flag_cache_ttl_seconds: float = 0.5
    # Run the background job worker inside the API process.
    run_worker: bool = True
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


@lru_cache
def get_settings() -> Settings:
    return Settings()
