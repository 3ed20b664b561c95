"""SDK local-evaluation definitions: content, ETag/304, both paths, personal-key auth."""

import pytest

from tests.factories import boolean_filters, create_flag, make_kit, multivariate_filters

PATHS = ["/flags/definitions", "/api/feature_flag/local_evaluation"]


@pytest.mark.parametrize("path", PATHS)
class TestDefinitions:
    async def test_serves_live_flags_and_group_types(self, client, kit, path):
        await client.post(f"{kit.base}/groups_types/", json={"group_type": "organization"}, headers=kit.headers)
        on = await create_flag(kit, "on", filters=multivariate_filters([("a", 50), ("b", 50)], payloads={"a": '"x"'}))
        off = await create_flag(kit, "off", active=False)
        gone = await create_flag(kit, "gone")
        await create_flag(kit, "browser-only", evaluation_runtime="client")
        await client.patch(f"{kit.base}/feature_flags/{gone['id']}/", json={"deleted": True}, headers=kit.headers)
        response = await client.get(f"{path}?token={kit.project_api_key}&send_cohorts", headers=kit.headers)
        assert response.status_code == 200
        assert response.headers["etag"]
        body = response.json()
        assert body["group_type_mapping"] == {"0": "organization"}
        assert body["cohorts"] == {}
        by_key = {flag["key"]: flag for flag in body["flags"]}
        assert sorted(by_key) == ["off", "on"]
        assert by_key["off"]["active"] is False
        assert by_key["on"] == {
            "id": on["id"],
            "team_id": kit.project_id,
            "name": on["name"],
            "key": "on",
            "filters": on["filters"],
            "deleted": False,
            "active": True,
            "ensure_experience_continuity": False,
            "has_encrypted_payloads": False,
            "version": 1,
            "evaluation_runtime": "all",
            "evaluation_tags": [],
        }
        assert by_key["off"]["id"] == off["id"]

    async def test_etag_and_304(self, client, kit, path):
        flag = await create_flag(kit, "etag-flag")
        url = f"{path}?token={kit.project_api_key}"
        first = await client.get(url, headers=kit.headers)
        etag = first.headers["etag"]
        again = await client.get(url, headers={**kit.headers, "If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        await client.patch(f"{kit.base}/feature_flags/{flag['id']}/", json={"filters": boolean_filters(20)}, headers=kit.headers)
        changed = await client.get(url, headers={**kit.headers, "If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert changed.json()["flags"][0]["filters"]["groups"][0]["rollout_percentage"] == 20

    async def test_auth(self, client, kit, path):
        url = f"{path}?token={kit.project_api_key}"
        assert (await client.get(url)).status_code == 401
        project_key = await client.get(url, headers={"Authorization": f"Bearer {kit.project_api_key}"})
        assert project_key.status_code == 401
        wrong_scope, _ = await kit.key(["experiment:read"])
        assert (await client.get(url, headers=wrong_scope)).status_code == 403
        read_only, _ = await kit.key(["feature_flag:read"])
        assert (await client.get(url, headers=read_only)).status_code == 200
        stranger = await make_kit(kit.app, client)
        denied = await client.get(url, headers=stranger.headers)
        assert denied.status_code == 403 and "flags" not in denied.json()
        unknown = await client.get(f"{path}?token=phc_unknown", headers=kit.headers)
        assert unknown.status_code == 401 and unknown.json()["code"] == "invalid_api_key"
        missing = await client.get(path, headers=kit.headers)
        assert missing.status_code == 400 and missing.json()["attr"] == "token"
