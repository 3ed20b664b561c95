"""The official PostHog Python SDK against a real server: local evaluation of flags targeting a
property cohort agrees with /flags (a static cohort falls back to the server), and an anonymous
exposure followed by `identify`/`alias` and a capture counts as one exposed, converted person."""

import httpx
import pytest
from posthog import Posthog

from tests.flags.live_server import running_server

PEOPLE = {f"sdk-cohort-{n}": {"plan": ("free", "pro")[n % 2], "region": ("eu", "us", "apac")[n % 3]} for n in range(60)}
PRO_OR_EU = {"properties": {"type": "OR", "values": [
    {"type": "AND", "values": [{"key": "plan", "type": "person", "value": ["pro"], "operator": "exact"}]},
    {"type": "AND", "values": [{"key": "region", "type": "person", "value": "eu", "operator": "exact", "negation": False}]},
]}}  # fmt: skip


@pytest.fixture
def server(db_name, database_urls):
    with running_server(database_urls[db_name]) as live:
        yield live.url


def _cohort_flag(http: httpx.Client, api: str, key: str, cohort_id: int, operator: str = "in") -> None:
    condition = {"type": "cohort", "key": "id", "value": cohort_id, "operator": operator}
    body = {"key": key, "filters": {"groups": [{"properties": [condition], "rollout_percentage": 100}]}}
    assert http.post(f"{api}/feature_flags/", json=body).status_code == 201


def test_local_evaluation_of_property_cohorts_agrees_with_the_server(kit, server):
    api = f"{server}/api/projects/{kit.project_id}"
    with httpx.Client(timeout=30, headers=kit.headers) as http:
        dynamic = http.post(f"{api}/cohorts/", json={"name": "pro or eu", "filters": PRO_OR_EU}).json()
        static = http.post(f"{api}/cohorts/", json={"name": "listed", "is_static": True, "distinct_ids": ["sdk-cohort-1"]}).json()
        _cohort_flag(http, api, "cohort-in", dynamic["id"])
        _cohort_flag(http, api, "cohort-out", dynamic["id"], "not_in")
        _cohort_flag(http, api, "cohort-static", static["id"])
        direct = {}
        for distinct_id, properties in PEOPLE.items():
            body = {"token": kit.project_api_key, "distinct_id": distinct_id, "person_properties": properties}
            flags = http.post(f"{server}/flags/?v=2", json=body).json()["flags"]
            direct[distinct_id] = {key: flags[key]["enabled"] for key in ("cohort-in", "cohort-out")}
    sdk = Posthog(kit.project_api_key, host=server, personal_api_key=kit.personal_api_key, send=False,
                  poll_interval=300, feature_flags_request_timeout_seconds=10, enable_exception_autocapture=False)
    try:
        sdk.load_feature_flags()
        local = {
            distinct_id: {
                key: sdk.get_feature_flag(key, distinct_id, person_properties=properties, only_evaluate_locally=True,
                                          send_feature_flag_events=False)
                for key in ("cohort-in", "cohort-out")
            }
            for distinct_id, properties in PEOPLE.items()
        }
        assert local == direct
        assert {values["cohort-in"] for values in local.values()} == {True, False}
        # A static cohort cannot be evaluated locally: the SDK asks the server, which knows the list.
        assert sdk.get_feature_flag("cohort-static", "sdk-cohort-1", only_evaluate_locally=True) is None
        assert sdk.get_feature_flag("cohort-static", "sdk-cohort-1", send_feature_flag_events=False) is True
        assert sdk.get_feature_flag("cohort-static", "sdk-cohort-2", send_feature_flag_events=False) is False
    finally:
        sdk.shutdown()


@pytest.mark.parametrize("link", ["identify", "alias"])
def test_anonymous_exposure_then_identify_or_alias_then_conversion_counts_once(kit, server, link):
    api = f"{server}/api/projects/{kit.project_id}"
    with httpx.Client(timeout=30, headers=kit.headers) as http:
        created = http.post(f"{api}/experiments/", json={
            "name": f"SDK persons {link}", "feature_flag_key": f"sdk-persons-{link}", "allow_unknown_events": True,
            "metrics": [{"kind": "ExperimentMetric", "metric_type": "mean", "source": {"kind": "EventsNode", "event": "purchase"}}],
        })
        assert created.status_code == 201, created.text
        experiment_id = created.json()["id"]
        assert http.post(f"{api}/experiments/{experiment_id}/launch/").status_code == 200

        sdk = Posthog(kit.project_api_key, host=server, sync_mode=True, disable_geoip=True,
                      enable_exception_autocapture=False, feature_flags_request_timeout_seconds=10)
        variants = {}
        for n in range(6):
            anonymous, user = f"anon-{link}-{n}", f"user-{link}-{n}"
            variants[user] = sdk.get_feature_flag(f"sdk-persons-{link}", anonymous)  # exposure, anonymously
            if link == "identify":
                sdk.capture("$identify", distinct_id=user, properties={"$anon_distinct_id": anonymous})
            else:
                sdk.alias(anonymous, user)  # previous id `anonymous` joins `user`
            sdk.capture("purchase", distinct_id=user)
        sdk.shutdown()
        body = http.get(f"{api}/experiments/{experiment_id}/results/").json()
    counts = {variant: list(variants.values()).count(variant) for variant in ("control", "test")}
    assert body["exposures"] == {**counts, "$multiple": 0}
    (metric,) = body["results"]
    for item in [metric["baseline"], *metric["variant_results"]]:
        assert item["number_of_samples"] == counts[item["key"]]
        assert item["sum"] == counts[item["key"]], "each person's one purchase counts"
