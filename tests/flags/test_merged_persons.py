"""/flags resolves stored person properties and continuity overrides through the merged person."""

import uuid


async def _capture(client, kit, *events: dict) -> None:
    batch = [{"uuid": str(uuid.uuid4()), **event} for event in events]
    response = await client.post("/batch/", json={"api_key": kit.project_api_key, "batch": batch})
    assert response.status_code == 200, response.text


async def _flag(client, kit, key: str, filters: dict, **fields) -> None:
    body = {"key": key, "name": key, "filters": filters, **fields}
    response = await client.post(f"{kit.base}/feature_flags/", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text


async def _evaluate(client, kit, distinct_id: str, **extra) -> dict:
    response = await client.post("/flags/?v=2", json={"token": kit.project_api_key, "distinct_id": distinct_id, **extra})
    assert response.status_code == 200, response.text
    return response.json()["flags"]


PRO_ONLY = {"groups": [{"properties": [{"key": "plan", "value": ["pro"], "operator": "exact", "type": "person"}], "rollout_percentage": 100}]}


class TestMergedPersonOnFlags:
    async def test_properties_set_under_one_id_target_every_merged_id(self, client, kit):
        await _flag(client, kit, "pro-only", PRO_ONLY)
        await _capture(client, kit, {"event": "$set", "distinct_id": "user-1", "properties": {"$set": {"plan": "pro"}}})
        assert (await _evaluate(client, kit, "anon-1"))["pro-only"]["enabled"] is False
        await _capture(client, kit, {"event": "$identify", "distinct_id": "user-1", "properties": {"$anon_distinct_id": "anon-1"}})
        assert (await _evaluate(client, kit, "anon-1"))["pro-only"]["enabled"] is True
        assert (await _evaluate(client, kit, "user-1"))["pro-only"]["enabled"] is True

    async def test_continuity_override_of_one_id_holds_for_the_merged_person(self, client, kit):
        variants = {"variants": [{"key": f"v{index}", "rollout_percentage": 10} for index in range(10)]}
        await _flag(client, kit, "sticky", {"groups": [{"properties": [], "rollout_percentage": 100}], "multivariate": variants},
                    ensure_experience_continuity=True)
        anonymous = (await _evaluate(client, kit, "anon-2"))["sticky"]["variant"]
        # The identified id stores the anonymous id as its hash key...
        assert (await _evaluate(client, kit, "user-2", **{"$anon_distinct_id": "anon-2"}))["sticky"]["variant"] == anonymous
        # ...and a third id aliased to that person later keeps the same bucket.
        await _capture(
            client, kit,
            {"event": "$identify", "distinct_id": "user-2", "properties": {"$anon_distinct_id": "anon-2"}},
            {"event": "$create_alias", "distinct_id": "user-2", "properties": {"alias": "device-2"}},
        )
        buckets = {(await _evaluate(client, kit, distinct_id))["sticky"]["variant"] for distinct_id in ("user-2", "device-2")}
        assert buckets == {anonymous}
