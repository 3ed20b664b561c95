"""The official PostHog Python SDK against a real server: remote evaluation, local evaluation
from polled definitions, and our `/flags` all give the same values and payloads, also for an
experiment's flag before and after `ship_variant`."""

import json

import httpx
import pytest
from posthog import Posthog

from tests.factories import boolean_filters, multivariate_filters
from tests.flags.live_server import running_server

DISTINCT_IDS = [f"e2e-user-{n}" for n in range(500)]
# What each person tells the SDK about itself (a property condition reads `plan`).
PERSON_PROPERTIES = {distinct_id: {"plan": ("free", "pro", "enterprise")[n % 3]} for n, distinct_id in enumerate(DISTINCT_IDS)}
PAID = [{"key": "plan", "value": ["pro", "enterprise"], "operator": "exact", "type": "person"}]
MULTI_PAYLOADS = {"control": {"color": "grey"}, "red": {"color": "red", "size": 2}, "blue": [1, 2, 3]}


def _sdk(token: str, host: str, personal_api_key: str | None = None) -> Posthog:
    # `send=False`: events are queued, never uploaded (capture is not what is tested here).
    return Posthog(
        token, host=host, personal_api_key=personal_api_key, send=False, poll_interval=300,
        feature_flags_request_timeout_seconds=10, enable_exception_autocapture=False,
    )


def _direct(http: httpx.Client, base: str, token: str, keys: list[str]) -> dict[str, dict]:
    """Values and payloads from our /flags?v=2, per distinct id."""
    found = {}
    for distinct_id in DISTINCT_IDS:
        body = {"token": token, "distinct_id": distinct_id, "person_properties": PERSON_PROPERTIES[distinct_id]}
        flags = http.post(f"{base}/flags/?v=2", json=body).json()["flags"]
        found[distinct_id] = {
            key: (flags[key]["variant"] or flags[key]["enabled"], flags[key]["metadata"]["payload"]) for key in keys
        }
    return found


def _from_sdk(client: Posthog, keys: list[str], *, locally: bool) -> dict[str, dict]:
    found = {}
    for distinct_id in DISTINCT_IDS:
        result = client.get_all_flags_and_payloads(
            distinct_id, person_properties=PERSON_PROPERTIES[distinct_id], only_evaluate_locally=locally
        )
        payloads = result["featureFlagPayloads"] or {}
        found[distinct_id] = {
            key: (result["featureFlags"][key], payloads.get(key))
            for key in keys
        }
    return found


def _decoded(payload):
    """Payloads travel as JSON strings; the SDK hands some back decoded. Compare the JSON held."""
    return json.loads(payload) if isinstance(payload, str) else payload


def _normalised(found: dict[str, dict]) -> dict[str, dict]:
    return {
        distinct_id: {key: (value, _decoded(payload)) for key, (value, payload) in flags.items()}
        for distinct_id, flags in found.items()
    }


@pytest.fixture
def server(db_name, database_urls):
    with running_server(database_urls[db_name]) as live:
        yield live.url


def test_sdk_remote_local_and_direct_agree(kit, server):
    token = kit.project_api_key
    api = f"{server}/api/projects/{kit.project_id}"
    with httpx.Client(timeout=30, headers=kit.headers) as http:
        assert http.post(f"{api}/feature_flags/", json={"key": "e2e-rollout", "filters": boolean_filters(50)}).status_code == 201
        multi = multivariate_filters([("control", 40), ("red", 30), ("blue", 30)], rollout=80, payloads=MULTI_PAYLOADS)
        assert http.post(f"{api}/feature_flags/", json={"key": "e2e-multi", "filters": multi}).status_code == 201
        paid = boolean_filters(70, properties=PAID)
        assert http.post(f"{api}/feature_flags/", json={"key": "e2e-paid", "filters": paid}).status_code == 201
        experiment = http.post(
            f"{api}/experiments/", json={"name": "E2E experiment", "feature_flag_key": "e2e-exp"}
        )
        assert experiment.status_code == 201, experiment.text
        experiment_id = experiment.json()["id"]
        assert http.post(f"{api}/experiments/{experiment_id}/launch/").status_code == 200

        keys = ["e2e-rollout", "e2e-multi", "e2e-paid", "e2e-exp"]
        direct = _normalised(_direct(http, server, token, keys))

        remote = _sdk(token, server)
        local = _sdk(token, server, personal_api_key=kit.personal_api_key)
        try:
            local.load_feature_flags()
            assert {flag["key"] for flag in local.feature_flags} == set(keys)
            assert _normalised(_from_sdk(remote, keys, locally=False)) == direct
            assert _normalised(_from_sdk(local, keys, locally=True)) == direct

            rollout = [flags["e2e-rollout"][0] for flags in direct.values()]
            assert 200 < rollout.count(True) < 300
            multi_values = {flags["e2e-multi"][0] for flags in direct.values()}
            assert multi_values == {"control", "red", "blue", False}
            for flags in direct.values():
                value, payload = flags["e2e-multi"]
                assert payload == (MULTI_PAYLOADS[value] if value else None)
            assert {flags["e2e-exp"][0] for flags in direct.values()} == {"control", "test"}
            paid_on = {d for d, flags in direct.items() if flags["e2e-paid"][0]}
            assert paid_on and all(PERSON_PROPERTIES[d]["plan"] != "free" for d in paid_on)
            assert 0.55 < len(paid_on) / sum(p["plan"] != "free" for p in PERSON_PROPERTIES.values()) < 0.85
            for distinct_id in DISTINCT_IDS[:50]:
                expected_value, expected_payload = direct[distinct_id]["e2e-multi"]
                assert remote.get_feature_flag("e2e-multi", distinct_id, send_feature_flag_events=False) == expected_value
                assert local.get_feature_flag("e2e-multi", distinct_id, only_evaluate_locally=True, send_feature_flag_events=False) == expected_value
                assert _decoded(remote.get_feature_flag_payload("e2e-multi", distinct_id)) == expected_payload
                assert _decoded(local.get_feature_flag_payload("e2e-multi", distinct_id, only_evaluate_locally=True)) == expected_payload

            shipped = http.post(f"{api}/experiments/{experiment_id}/ship_variant/", json={"variant_key": "test"})
            assert shipped.status_code == 200, shipped.text
            after = _normalised(_direct(http, server, token, keys))
            assert {flags["e2e-exp"][0] for flags in after.values()} == {"test"}
            local.load_feature_flags()
            assert _normalised(_from_sdk(remote, keys, locally=False)) == after
            assert _normalised(_from_sdk(local, keys, locally=True)) == after
            # Only the experiment's flag changed.
            assert {d: {k: v for k, v in f.items() if k != "e2e-exp"} for d, f in after.items()} == {
                d: {k: v for k, v in f.items() if k != "e2e-exp"} for d, f in direct.items()
            }
        finally:
            remote.shutdown()
            local.shutdown()
