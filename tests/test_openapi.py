"""The committed `openapi.json` is exactly what the app serves (regenerate with `make openapi`)."""

import json
from pathlib import Path

from experiments_service.openapi import openapi_document

OPENAPI_FILE = Path(__file__).resolve().parents[1] / "openapi.json"


def test_committed_openapi_matches_app():
    committed = json.loads(OPENAPI_FILE.read_text())
    assert committed == openapi_document(), "openapi.json is stale: run `make openapi`"


async def test_served_openapi_matches_committed(client):
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(OPENAPI_FILE.read_text())


def test_operation_ids_are_unique_and_stable():
    ids = [op["operationId"] for path in openapi_document()["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
