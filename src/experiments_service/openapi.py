"""Print the app's OpenAPI document (`make openapi` writes it to `openapi.json`)."""

import json

from experiments_service.app import create_app
from experiments_service.settings import Settings


def openapi_document() -> dict:
    return create_app(Settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
