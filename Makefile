# Two commands do everything on a fresh clone: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make run` serves on HOST:PORT and keeps the keys it printed in KEYS (printed again on every run).
HOST ?= 127.0.0.1
PORT ?= 8000
KEYS ?= .experiments-keys.json

.PHONY: run test install lock migrate openapi bench lint-docker clean

$(PY):
	python3 -m venv $(VENV)

# Pinned versions from the lock first, then the project itself: a dependency added to
# pyproject.toml after the lock was made is still installed (at its newest allowed version).
$(STAMP): $(PY) pyproject.toml requirements-dev.lock
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.lock
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Regenerate both lock files from pyproject.toml (PyPI's newest versions allowed by it), with hashes.
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes --quiet -o requirements-dev.lock

run: $(STAMP)
	@test -s $(KEYS) || $(VENV)/bin/experiments bootstrap --project-name "Default project" --reuse-existing > $(KEYS)
	@echo "Project and API keys (paste personal_api_key into Swagger UI's Authorize at http://$(HOST):$(PORT)/docs):"
	@cat $(KEYS)
	$(VENV)/bin/experiments serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

migrate: $(STAMP)
	$(VENV)/bin/experiments migrate

openapi: $(STAMP)
	$(PY) -m experiments_service.openapi > openapi.json

# What can be checked of the container set-up without a Docker engine.
lint-docker: $(STAMP)
	$(VENV)/bin/hadolint Dockerfile
	@if docker compose version >/dev/null 2>&1; then docker compose config --quiet; \
	elif command -v docker-compose >/dev/null; then docker-compose config --quiet; \
	else echo "no docker compose here: docker-compose.yml not validated"; fi

clean:
	rm -rf $(VENV) *.egg-info src/*.egg-info
