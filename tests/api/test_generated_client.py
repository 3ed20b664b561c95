"""Service-to-service use: a Python client generated from the committed `openapi.json` with
openapi-python-client drives an experiment's whole life against a running server."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.flags.live_server import bootstrap, running_server

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "openapi.json"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture
def generated_client(tmp_path):
    """The generated package, importable as `experiments_client` for this test."""
    config = tmp_path / "generator.json"
    config.write_text(json.dumps({"post_hooks": []}))
    completed = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(OPENAPI_FILE), "--meta", "none", "--config", str(config),
         "--output-path", str(tmp_path / "experiments_client")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Warning" not in completed.stdout, completed.stdout
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("experiments_client")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.split(".")[0] == "experiments_client"]:
            del sys.modules[name]


def _call(generated, module: str, *args, expected: int = 200, **kwargs):
    tag = module.split("_", 1)[0]
    api = importlib.import_module(f"experiments_client.api.{tag}.{module}")
    response = api.sync_detailed(*args, **kwargs)
    assert response.status_code == expected, response.content
    return response.parsed


def test_generated_client_runs_an_experiment(generated_client, database_urls, db_name):
    database_url = database_urls[db_name]
    issued = bootstrap(database_url, f"client-{db_name}")
    project = issued["project_id"]
    models = importlib.import_module("experiments_client.models")
    ship_body = importlib.import_module("experiments_client.api.experiments.experiments_ship_variant")
    with running_server(database_url) as server:
        client = generated_client.AuthenticatedClient(base_url=server.url, token=issued["personal_api_key"])
        body = models.ExperimentCreate.from_dict({
            "name": "Pricing page", "feature_flag_key": "pricing-page", "allow_unknown_events": True,
            "metrics": [{"kind": "ExperimentMetric", "metric_type": "funnel", "name": "Signed up",
                         "series": [{"kind": "EventsNode", "event": "signed_up"}]}],
        })  # fmt: skip
        created = _call(generated_client, "experiments_create_experiment", project, client=client, body=body, expected=201)
        assert isinstance(created, models.ExperimentOut) and created.status.value == "draft"
        metric = created.metrics[0]
        assert isinstance(metric, models.ExperimentFunnelMetric) and len(metric.fingerprint) == 64

        states = []
        for action in ("launch", "pause", "resume"):
            states.append(_call(generated_client, f"experiments_{action}", project, created.id, client=client).status.value)
        assert states == ["running", "paused", "running"]

        shipped = _call(
            generated_client, "experiments_ship_variant", project, created.id, client=client,
            body=ship_body.ExperimentsShipVariantShipVariantRequest(variant_key="test", conclusion="won"),
        )  # fmt: skip
        assert shipped.status.value == "stopped" and shipped.conclusion.value == "won"
        flag_filters = shipped.feature_flag.filters.to_dict()
        assert flag_filters["groups"][0]["rollout_percentage"] == 100
        assert {v["key"]: v["rollout_percentage"] for v in flag_filters["multivariate"]["variants"]} == {
            "control": 0, "test": 100,
        }  # fmt: skip

        results = _call(generated_client, "results_experiment_results", project, created.id, client=client)
        assert isinstance(results, models.ExperimentResultsOut)
        assert [(r.metric_uuid, r.metric_type) for r in results.results] == [(metric.uuid, "funnel")]

        refused = _call(generated_client, "experiments_launch", project, created.id, client=client, expected=400)
        assert isinstance(refused, models.ErrorBody) and refused.type_ == "validation_error"
