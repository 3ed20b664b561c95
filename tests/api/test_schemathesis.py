"""schemathesis over every operation of the served document, against a live server with a seeded
project and its personal API key: no server error, and every answer as documented.

Bounded: the coverage phase (deterministic boundary values) runs for every operation but the
experiment and saved-metric writes, whose large bodies give thousands of combinations each; those
get the examples and fuzzing phases. Generation is positive: the service deliberately stores keys
and values PostHog stores without checking them, so invalid input is not a conformance question.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.flags.live_server import bootstrap, running_server

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = 5
TIMEOUT_SECONDS = 300
# Operations whose coverage phase alone would be thousands of requests (their fuzzing still runs).
HEAVY_WRITES = [
    "POST /api/projects/{project_id}/experiments/",
    "PATCH /api/projects/{project_id}/experiments/{experiment_id}/",
    "PUT /api/projects/{project_id}/experiments/{experiment_id}/",
    "POST /api/projects/{project_id}/experiment_saved_metrics/",
    "PATCH /api/projects/{project_id}/experiment_saved_metrics/{saved_metric_id}/",
    "PUT /api/projects/{project_id}/experiment_saved_metrics/{saved_metric_id}/",
    "POST /api/projects/{project_id}/experiments/{experiment_id}/recalculate_timeseries/",
]
METRIC = {"kind": "ExperimentMetric", "metric_type": "mean", "source": {"kind": "EventsNode", "event": "purchase"}}


def _seed(base_url: str, project_id: int, key: str) -> dict[str, int]:
    """One object of each kind, so operations on `{..._id}` reach real objects."""
    with httpx.Client(base_url=f"{base_url}/api/projects/{project_id}", headers={"Authorization": f"Bearer {key}"}) as api:
        created = {
            "flag_id": api.post("/feature_flags/", json={"key": "seeded-flag"}),
            "experiment_id": api.post(
                "/experiments/",
                json={"name": "Seeded", "feature_flag_key": "seeded-exp", "metrics": [METRIC], "allow_unknown_events": True},
            ),
            "holdout_id": api.post("/experiment_holdouts/", json={"name": "Seeded", "filters": [{"rollout_percentage": 10}]}),
            "saved_metric_id": api.post("/experiment_saved_metrics/", json={"name": "Seeded", "query": METRIC}),
        }
    for response in created.values():
        assert response.status_code == 201, response.text
    return {name: response.json()["id"] for name, response in created.items()}


def _config(key: str, project_id: int, ids: dict[str, int]) -> str:
    lines = [f'headers = {{ Authorization = "Bearer {key}" }}', "[parameters]", f'"path.project_id" = {project_id}']
    lines += [f'"path.{name}" = {value}' for name, value in ids.items()]
    lines += ["[generation]", f"max-examples = {MAX_EXAMPLES}"]
    for name in HEAVY_WRITES:
        lines += ["[[operations]]", f'include-name = "{name}"', "phases.coverage.enabled = false"]
    return "\n".join(lines) + "\n"


def _operation_patterns(document: dict) -> list[tuple[str, str, re.Pattern]]:
    patterns = []
    for path, operations in document["paths"].items():
        regex = re.compile("^" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(path)) + "?$")
        patterns += [(method.upper(), path, regex) for method in operations]
    # Literal paths first: `experiments/stats/` is that operation, not `experiments/{experiment_id}/`.
    return sorted(patterns, key=lambda pattern: pattern[1].count("{"))


def _answers_by_operation(har: dict, document: dict) -> dict[tuple[str, str], list[int]]:
    patterns = _operation_patterns(document)
    answers: dict[tuple[str, str], list[int]] = {}
    for entry in har["log"]["entries"]:
        method, path = entry["request"]["method"], httpx.URL(entry["request"]["url"]).path
        match = next((template for m, template, regex in patterns if m == method and regex.match(path)), None)
        if match is not None:
            answers.setdefault((method, match), []).append(entry["response"]["status"])
    return answers


def test_schemathesis_finds_no_failure_and_reaches_the_api(database_urls, db_name, tmp_path):
    database_url = database_urls[db_name]
    issued = bootstrap(database_url, f"schemathesis-{db_name}")
    key, project_id = issued["personal_api_key"], issued["project_id"]
    with running_server(database_url) as server:
        ids = _seed(server.url, project_id, key)
        document = httpx.get(f"{server.url}/openapi.json").json()
        config = tmp_path / "schemathesis.toml"
        config.write_text(_config(key, project_id, ids))
        har = tmp_path / "run.har"
        completed = subprocess.run(
            [
                str(SCHEMATHESIS), "--config-file", str(config), "run", f"{server.url}/openapi.json",
                "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--mode", "positive",
                "--seed", "1", "--workers", "1", "--report", "har", "--report-har-path", str(har),
            ],
            capture_output=True, text=True, timeout=TIMEOUT_SECONDS, cwd=tmp_path,
        )  # fmt: skip
    output = completed.stdout + completed.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    summary = output[output.rfind("SUMMARY"):]
    assert completed.returncode == 0, summary or output[-5000:]
    assert "Failures:" not in summary, summary

    answers = _answers_by_operation(json.loads(har.read_text()), document)
    api_operations = [(m.upper(), p) for p, ops in document["paths"].items() for m in ops if p.startswith("/api/")]
    reached = [op for op in api_operations if any(200 <= status < 300 for status in answers.get(op, []))]
    requests = sum(len(statuses) for statuses in answers.values())
    print(f"schemathesis ({db_name}): {requests} requests, 0 failures, {len(answers)} operations called, "
          f"{len(reached)}/{len(api_operations)} /api operations answered 2xx")  # fmt: skip
    every = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert set(answers) == every, sorted(every - set(answers))
    assert len(reached) * 2 >= len(api_operations), sorted(set(api_operations) - set(reached))
    assert not [status for statuses in answers.values() for status in statuses if status >= 500]
