"""Typed request and response schemas in PostHog's names; the documented examples work as sent."""

import pytest
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource


@pytest.fixture
async def document(client) -> dict:
    return (await client.get("/openapi.json")).json()


def _conforms(document: dict, name: str, instance) -> list[str]:
    """Errors of `instance` against the document's component `name` (empty: it conforms)."""
    registry = Registry().with_resource("urn:doc", Resource.opaque(document))
    schema = {"$ref": f"urn:doc#/components/schemas/{name}"}
    validator = OAS31Validator(schema, registry=registry)
    return [error.message for error in validator.iter_errors(instance)]


def _body_example(document: dict, path: str, method: str) -> dict:
    ref = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]]["examples"][0]


async def test_metrics_and_json_fields_have_posthogs_shapes(document):
    schemas = document["components"]["schemas"]
    assert set(schemas["ExperimentMetric"]["discriminator"]["mapping"]) == {"mean", "funnel", "ratio", "retention"}
    assert {"source"} <= set(schemas["ExperimentMeanMetric"]["required"])
    assert {"start_event", "completion_event", "retention_window_unit"} <= set(schemas["ExperimentRetentionMetric"]["required"])
    experiment = schemas["ExperimentOut"]["properties"]
    assert experiment["stats_config"]["anyOf"][0] == {"$ref": "#/components/schemas/StatsConfig"}
    assert experiment["exposure_criteria"]["anyOf"][0] == {"$ref": "#/components/schemas/ExposureCriteria"}
    assert experiment["parameters"]["anyOf"][0] == {"$ref": "#/components/schemas/ExperimentParameters"}
    filters = schemas["FeatureFlagFilters"]["properties"]
    assert {"groups", "multivariate", "payloads", "holdout", "super_groups", "aggregation_group_type_index"} <= set(filters)
    operators = schemas["PropertyFilter"]["properties"]["operator"]["anyOf"][0]["enum"]
    assert {"exact", "icontains", "regex", "is_set", "semver_gte", "flag_evaluates_to"} <= set(operators)
    assert schemas["FeatureFlagGroup"]["additionalProperties"] is True
    holdout_filters = schemas["HoldoutOut"]["properties"]["filters"]
    assert holdout_filters["items"] == {"$ref": "#/components/schemas/FeatureFlagGroup"}
    assert schemas["SavedMetricOut"]["properties"]["query"]["$ref"] == "#/components/schemas/ExperimentMetric"
    day = schemas["TimeseriesOut"]["properties"]["timeseries"]["additionalProperties"]
    assert {"$ref": "#/components/schemas/TimeseriesDay"} in day["anyOf"]


async def test_timeseries_inputs_are_documented(document):
    base = "/api/projects/{project_id}/experiments/{experiment_id}"
    query = {p["name"]: p for p in document["paths"][f"{base}/timeseries_results/"]["get"]["parameters"]}
    assert "required" in query["metric_uuid"]["description"] and query["fingerprint"]["description"]
    body = document["components"]["schemas"]["RecalculateTimeseriesIn"]["properties"]
    assert body["metric"]["$ref"] == "#/components/schemas/ExperimentMetric"
    assert "fingerprint" in body["fingerprint"]["description"]


async def test_the_documented_examples_are_accepted_and_answers_match_the_schemas(kit, document):
    flag_example = _body_example(document, "/api/projects/{project_id}/feature_flags/", "post")
    flag = await kit.client.post(f"{kit.base}/feature_flags/", json=flag_example, headers=kit.headers)
    assert flag.status_code == 201, flag.text
    assert _conforms(document, "FeatureFlagOut", flag.json()) == []

    example = _body_example(document, "/api/projects/{project_id}/experiments/", "post")
    created = await kit.client.post(f"{kit.base}/experiments/", json=example, headers=kit.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert _conforms(document, "ExperimentOut", body) == []
    assert body["metrics"][0]["metric_type"] == "mean" and len(body["metrics"][0]["fingerprint"]) == 64

    saved_example = _body_example(document, "/api/projects/{project_id}/experiment_saved_metrics/", "post")
    saved = await kit.client.post(f"{kit.base}/experiment_saved_metrics/", json=saved_example, headers=kit.headers)
    assert saved.status_code == 201, saved.text
    assert _conforms(document, "SavedMetricOut", saved.json()) == []


async def test_unknown_keys_keep_working_where_posthog_accepts_them(kit, document):
    metric = {"kind": "ExperimentMetric", "metric_type": "mean", "my_key": 1,
              "source": {"kind": "EventsNode", "event": "e", "custom_thing": "x"}}  # fmt: skip
    created = await kit.client.post(
        f"{kit.base}/experiments/",
        json={"name": "x", "feature_flag_key": "unknown-keys", "metrics": [metric], "allow_unknown_events": True,
              "stats_config": {"method": "frequentist", "extra": True}, "exposure_criteria": {"other": 1}},
        headers=kit.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["metrics"][0]["my_key"] == 1 and body["metrics"][0]["source"]["custom_thing"] == "x"
    assert body["stats_config"]["extra"] is True and body["exposure_criteria"]["other"] == 1
    assert _conforms(document, "ExperimentOut", body) == []
    # The service's own checks still answer, with the reference message.
    refused = await kit.client.post(
        f"{kit.base}/experiments/", json={"name": "y", "feature_flag_key": "y", "metrics": "nope"}, headers=kit.headers
    )
    assert refused.status_code == 400
    assert refused.json() == {"type": "validation_error", "code": "invalid_input", "detail": "Metrics must be a list",
                              "attr": "metrics"}  # fmt: skip
