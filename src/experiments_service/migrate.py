"""Run Alembic migrations from code (the CLI and the tests use this)."""

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config

from experiments_service.settings import get_settings


def _find_alembic_ini() -> Path:
    candidates = [
        get_settings().experiments_alembic_ini,
        Path(__file__).resolve().parents[2] / "alembic.ini",
        Path.cwd() / "alembic.ini",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("alembic.ini not found; set EXPERIMENTS_ALEMBIC_INI")


def alembic_config(database_url: str) -> Config:
    config = Config(str(_find_alembic_ini()))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


@functools.cache
def head_revisions() -> frozenset[str]:
    """The head revision(s) of the migration scripts this code ships with."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(Config(str(_find_alembic_ini()))).get_heads())
