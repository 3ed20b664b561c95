"""Process settings, read once from the environment (and `.env`)."""

from functools import lru_cache
from pathlib import Path

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
    # Origins (comma-separated, e.g. `https://app.example.com`) whose pages may call `/api/...`
    # from a browser with a personal API key; empty: none. The SDK routes allow every origin.
    cors_allowed_origins: str = ""

    @property
    def cors_origins(self) -> list[str]:
        return [origin.strip().rstrip("/") for origin in self.cors_allowed_origins.split(",") if origin.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
