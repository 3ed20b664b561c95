"""The served OpenAPI document is valid and says what the API really does (clients are generated from it)."""

import re

import pytest
from openapi_spec_validator import validate

SDK_PATHS = {"/flags/", "/decide/", "/batch/", "/capture/", "/e/", "/i/v0/e/"}


@pytest.fixture
async def document(client) -> dict:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(document: dict):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


async def test_the_document_passes_the_validator(document):
    validate(document)


async def test_every_path_parameter_is_declared_with_its_type(document):
    for path, method, operation in _operations(document):
        declared = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "path"}
        assert set(declared) == set(re.findall(r"{(\w+)}", path)), (method, path)
        for parameter in declared.values():
            assert parameter["required"] is True
            assert parameter["schema"].get("type") in ("integer", "string"), (method, path, parameter)
    project = next(
        p for p in document["paths"]["/api/projects/{project_id}/experiments/"]["get"]["parameters"]
        if p["name"] == "project_id"
    )
    assert project["schema"]["type"] == "integer"


async def test_personal_key_is_the_security_of_every_api_operation_and_of_no_sdk_route(document):
    scheme = document["components"]["securitySchemes"]["PersonalAPIKey"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    for path, method, operation in _operations(document):
        if path.startswith("/api/"):
            assert operation.get("security") == [{"PersonalAPIKey": []}], (method, path)
        if path in SDK_PATHS:
            assert "security" not in operation, (method, path)


async def test_errors_use_the_one_envelope_and_nothing_documents_422(document):
    schemas = document["components"]["schemas"]
    assert set(schemas["ErrorBody"]["required"]) == {"type", "code", "detail", "attr"}
    assert "HTTPValidationError" not in schemas
    for path, method, operation in _operations(document):
        assert "422" not in operation["responses"], (method, path)
        if not path.startswith("/api/projects/{project_id}/"):
            continue
        for code in ("401", "403", "404"):
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            # copy_to_project also answers PostHog's plain `{"detail": ...}` (spec: replicated verbatim).
            alternatives = [item["$ref"] for item in schema.get("anyOf", [])]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"} or (
                "#/components/schemas/ErrorBody" in alternatives and path.endswith("/copy_to_project/")
            ), (method, path, code)


async def test_gated_actions_document_the_change_request_409(document):
    launch = document["paths"]["/api/projects/{project_id}/experiments/{experiment_id}/launch/"]["post"]
    refs = [item["$ref"] for item in launch["responses"]["409"]["content"]["application/json"]["schema"]["anyOf"]]
    assert "#/components/schemas/ApprovalRequiredBody" in refs
    body = document["components"]["schemas"]["ApprovalRequiredBody"]
    assert {"change_request_id", "change_request", "required_approvers"} <= set(body["required"])
    archive = document["paths"]["/api/projects/{project_id}/experiments/{experiment_id}/archive/"]["post"]
    assert archive["responses"]["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


async def test_pages_and_list_filters_are_typed_and_summaries_readable(document):
    listing = document["paths"]["/api/projects/{project_id}/experiments/"]["get"]
    parameters = {p["name"]: p["schema"] for p in listing["parameters"]}
    assert parameters["limit"]["type"] == parameters["offset"]["type"] == "integer"
    assert {"status", "archived", "created_by_id", "feature_flag_id", "search", "order"} <= set(parameters)
    assert "running" in parameters["status"]["enum"]
    assert listing["summary"] == "List experiments"
    for path, method, operation in _operations(document):
        # Written summaries, not FastAPI's title-cased handler names ("Capture I V0 E").
        words = operation["summary"].split()
        assert len(words) == 1 or not all(word[0].isupper() for word in words), (method, path, words)
