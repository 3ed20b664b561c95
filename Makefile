# Two commands do everything on a fresh clone: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install migrate openapi bench clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@echo "Project and API key (paste personal_api_key into Swagger UI's Authorize at http://127.0.0.1:8000/docs):"
	@$(VENV)/bin/experiments bootstrap --project-name "Default project" --reuse-existing
	$(VENV)/bin/experiments serve --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

migrate: $(STAMP)
	$(VENV)/bin/experiments migrate

openapi: $(STAMP)
	$(PY) -m experiments_service.openapi > openapi.json

clean:
	rm -rf $(VENV) *.egg-info src/*.egg-info
