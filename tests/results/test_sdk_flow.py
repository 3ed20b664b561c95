"""The official PostHog Python SDK end to end against a real server: it evaluates an experiment's
flag (sending `$feature_flag_called` to our capture endpoint) and captures conversions; the results
endpoint then counts exactly the exposures and conversions the SDK produced."""

from collections import Counter

import httpx
import pytest
from posthog import Posthog

from tests.flags.live_server import running_server

FLAG_KEY = "sdk-flow-checkout"
PEOPLE = [f"sdk-flow-{n}" for n in range(150)]


@pytest.fixture
def server(db_name, database_urls):
    with running_server(database_urls[db_name]) as live:
        yield live.url


def purchases_for(person_index: int, variant: str) -> int:
    """A fixed, variant-dependent number of conversions per person (0–2)."""
    return person_index % 3 if variant == "test" else person_index % 2


def test_sdk_exposures_and_conversions_drive_results(kit, server):
    api = f"{server}/api/projects/{kit.project_id}"
    with httpx.Client(timeout=30, headers=kit.headers) as http:
        created = http.post(f"{api}/experiments/", json={
            "name": "SDK flow",
            "feature_flag_key": FLAG_KEY,
            "metrics": [{"kind": "ExperimentMetric", "metric_type": "mean",
                         "source": {"kind": "EventsNode", "event": "purchase"}}],
            "stats_config": {"method": "frequentist"},
            "allow_unknown_events": True,
        })
        assert created.status_code == 201, created.text
        experiment_id = created.json()["id"]
        assert http.post(f"{api}/experiments/{experiment_id}/launch/").status_code == 200

        sdk = Posthog(kit.project_api_key, host=server, sync_mode=True, disable_geoip=True,
                      enable_exception_autocapture=False, feature_flags_request_timeout_seconds=10)
        exposed: Counter[str] = Counter()
        conversions: Counter[str] = Counter()
        for index, distinct_id in enumerate(PEOPLE):
            variant = sdk.get_feature_flag(FLAG_KEY, distinct_id)  # sends $feature_flag_called
            assert variant in ("control", "test")
            exposed[variant] += 1
            for _ in range(purchases_for(index, variant)):
                sdk.capture("purchase", distinct_id=distinct_id, properties={"amount": 10})
            conversions[variant] += purchases_for(index, variant)
        sdk.shutdown()

        response = http.get(f"{api}/experiments/{experiment_id}/results/")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["exposures"] == {"control": exposed["control"], "test": exposed["test"], "$multiple": 0}
    assert exposed["control"] > 0 and exposed["test"] > 0
    (metric,) = body["results"]
    by_key = {metric["baseline"]["key"]: metric["baseline"], **{v["key"]: v for v in metric["variant_results"]}}
    for variant in ("control", "test"):
        assert by_key[variant]["number_of_samples"] == exposed[variant]
        assert by_key[variant]["sum"] == conversions[variant]
