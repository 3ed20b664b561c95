"""A flag write with a top-level `aggregation_group_type_index` applies it to each release group."""

import uuid

VARIANTS = {"variants": [{"key": "control", "rollout_percentage": 10}, {"key": "test", "rollout_percentage": 90}]}


async def make_flag(kit) -> dict:
    body = {"key": f"agg-{uuid.uuid4().hex[:8]}", "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}}
    response = await kit.client.post(f"{kit.base}/feature_flags/", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def patch_filters(kit, flag_id: int, filters: dict) -> dict:
    response = await kit.client.patch(f"{kit.base}/feature_flags/{flag_id}/", json={"filters": filters},
                                      headers=kit.headers)
    assert response.status_code == 200, response.text
    return response.json()


class TestGroupAggregation:
    async def test_patch_stamps_each_group_and_null_clears_them(self, kit):
        flag = await make_flag(kit)
        groups = [{"properties": [], "rollout_percentage": 99}, {"properties": [], "rollout_percentage": 1}]
        body = await patch_filters(kit, flag["id"], {"groups": groups, "payloads": {}, "multivariate": VARIANTS,
                                                     "aggregation_group_type_index": 1})
        assert body["filters"]["aggregation_group_type_index"] == 1
        assert [g.get("aggregation_group_type_index") for g in body["filters"]["groups"]] == [1, 1]
        assert [g["rollout_percentage"] for g in body["filters"]["groups"]] == [99, 1]
        stored = (await kit.client.get(f"{kit.base}/feature_flags/{flag['id']}/", headers=kit.headers)).json()
        assert [g.get("aggregation_group_type_index") for g in stored["filters"]["groups"]] == [1, 1]

        body = await patch_filters(kit, flag["id"], {"groups": body["filters"]["groups"], "multivariate": VARIANTS,
                                                     "aggregation_group_type_index": None})
        assert body["filters"]["aggregation_group_type_index"] is None
        assert all("aggregation_group_type_index" not in g for g in body["filters"]["groups"])

    async def test_create_stamps_the_groups_too(self, kit):
        body = {"key": f"agg-{uuid.uuid4().hex[:8]}", "filters": {
            "groups": [{"properties": [], "rollout_percentage": 50}], "aggregation_group_type_index": 0}}
        response = await kit.client.post(f"{kit.base}/feature_flags/", json=body, headers=kit.headers)
        assert response.status_code == 201, response.text
        assert response.json()["filters"]["groups"][0]["aggregation_group_type_index"] == 0

    async def test_filters_without_the_key_leave_groups_alone(self, kit):
        flag = await make_flag(kit)
        body = await patch_filters(kit, flag["id"], {"groups": [{"properties": [], "rollout_percentage": 30}]})
        assert "aggregation_group_type_index" not in body["filters"]["groups"][0]
