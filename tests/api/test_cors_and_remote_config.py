"""`/api` CORS from `CORS_ALLOWED_ORIGINS`; PostHog's remote config for posthog-js, with CORS."""

import json

import httpx
import pytest

from experiments_service.app import create_app
from experiments_service.settings import Settings

ALLOWED = "https://app.example.com"


@pytest.fixture
async def cors_client(database_urls, db_name):
    """The app with one allowed origin (the default allows none)."""
    app = create_app(
        Settings(database_url=database_urls[db_name], run_worker=False, cors_allowed_origins=f"{ALLOWED}/, https://b.example")
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client
    await app.state.db.dispose()


async def test_api_preflight_and_answers_allow_only_the_configured_origins(kit, cors_client):
    url = f"{kit.base}/experiments/"
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    preflight = await cors_client.options(url, headers={"Origin": ALLOWED, **ask})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    refused = await cors_client.options(url, headers={"Origin": "https://evil.example", **ask})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers

    listed = await cors_client.get(url, headers={"Origin": ALLOWED, **kit.headers})
    assert listed.status_code == 200 and listed.headers["access-control-allow-origin"] == ALLOWED
    other = await cors_client.get(url, headers={"Origin": "https://evil.example", **kit.headers})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


async def test_by_default_no_origin_may_call_the_api(kit):
    response = await kit.client.get(f"{kit.base}/experiments/", headers={"Origin": ALLOWED, **kit.headers})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


async def test_sdk_routes_keep_posthogs_cors_whatever_the_setting(kit, cors_client):
    origin = {"Origin": "https://any-site.example"}
    preflight = await cors_client.options("/flags/?v=2", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://any-site.example"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    flags = await cors_client.post("/flags/?v=2", json={"token": kit.project_api_key, "distinct_id": "u"}, headers=origin)
    assert flags.status_code == 200 and flags.headers["access-control-allow-origin"] == "https://any-site.example"


async def test_remote_config_says_what_the_service_supports(kit):
    origin = {"Origin": "http://shop.localhost"}
    empty = await kit.client.get(f"/array/{kit.project_api_key}/config", headers=origin)
    assert empty.status_code == 200
    assert empty.headers["access-control-allow-origin"] == "http://shop.localhost"
    config = empty.json()
    assert config["token"] == kit.project_api_key and config["hasFeatureFlags"] is False
    assert config["analytics"] == {"endpoint": "/i/v0/e/"}
    assert config["supportedCompression"] == ["gzip", "gzip-js"]
    assert not any(config[key] for key in ("sessionRecording", "surveys", "heatmaps", "autocaptureExceptions", "siteApps"))

    created = await kit.client.post(f"{kit.base}/feature_flags/", json={"key": "on"}, headers=kit.headers)
    assert created.status_code == 201
    assert (await kit.client.get(f"/array/{kit.project_api_key}/config/")).json()["hasFeatureFlags"] is True

    script = await kit.client.get(f"/array/{kit.project_api_key}/config.js", headers=origin)
    assert script.status_code == 200 and script.headers["content-type"].startswith("application/javascript")
    assert script.headers["access-control-allow-origin"] == "http://shop.localhost"
    prefix = f"window._POSTHOG_REMOTE_CONFIG[{json.dumps(kit.project_api_key)}]="
    assert prefix in script.text
    entry = json.loads(script.text.split(prefix, 1)[1].removesuffix(";})();"))
    assert entry["config"]["hasFeatureFlags"] is True and entry["siteApps"] == []


async def test_remote_config_of_an_unknown_token_is_404_with_cors(kit):
    for path in ("/array/phc_nope/config", "/array/phc_nope/config.js"):
        response = await kit.client.get(path, headers={"Origin": "http://shop.localhost"})
        assert response.status_code == 404 and response.json()["code"] == "not_found"
        assert response.headers["access-control-allow-origin"] == "http://shop.localhost"
