"""The container set-up, checked as far as this machine can without a Docker engine: hadolint on
the Dockerfile, the Dockerfile's and the compose file's promises, and the lock both install from."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.split(None, 1)[:1] == [name]]


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed")
    completed = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_dockerfile_is_multi_stage_from_a_pinned_base_and_runs_unprivileged():
    [base] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base)
    assert instructions("FROM") == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    assert "COPY --from=build /opt/venv /opt/venv" in DOCKERFILE
    assert any("--require-hashes -r requirements.lock" in run for run in instructions("RUN"))
    [user] = instructions("USER")
    assert not user.startswith(("0", "root"))
    assert instructions("VOLUME") == ['["/data"]']
    [healthcheck] = instructions("HEALTHCHECK")
    assert "/readyz" in healthcheck
    assert "sqlite+aiosqlite:////data/" in DOCKERFILE


def test_dockerignore_keeps_the_venv_and_databases_out():
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # everything is left out, but for the exceptions below
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "requirements.lock", "src", "alembic.ini", "migrations"}
    copied = {part.rstrip("/") for copy in instructions("COPY") if "--from" not in copy for part in copy.split()[:-1]}
    assert copied <= allowed


def test_compose_runs_the_service_on_postgresql_after_a_one_shot_bootstrap():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    postgres, bootstrap, api = services["postgres"], services["bootstrap"], services["api"]
    assert postgres["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    assert set(compose["volumes"]) >= {volume.split(":")[0] for volume in postgres["volumes"]}
    assert bootstrap["command"][:2] == ["experiments", "bootstrap"] and bootstrap["restart"] == "no"
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert api["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    for service in (bootstrap, api):
        assert service["environment"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert service["environment"]["DATABASE_URL"].endswith("@postgres:5432/experiments")


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_locks_pin_every_package_with_hashes(lock):
    text = (ROOT / lock).read_text()
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==\S+", text, re.MULTILINE)
    assert {"fastapi", "sqlalchemy", "structlog", "prometheus-client"} <= {pin.lower() for pin in pins}
    entries = [entry for entry in re.split(r"\n(?=\S)", text) if not entry.startswith("#")]
    assert all("--hash=sha256:" in entry for entry in entries)
