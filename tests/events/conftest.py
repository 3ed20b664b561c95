"""Fixtures for the capture tests."""

from typing import Any

import pytest


@pytest.fixture
def capture(client, kit):
    """POST a JSON body to a capture path with the kit's project key in the body."""

    async def send(body: Any, path: str = "/batch/", **kwargs: Any):
        if isinstance(body, dict) and "api_key" not in body and "token" not in body:
            body = {"api_key": kit.project_api_key, **body}
        return await client.post(path, json=body, **kwargs)

    return send
