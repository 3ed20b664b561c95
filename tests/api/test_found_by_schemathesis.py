"""Inputs schemathesis found answering 500; each now gets its documented 4xx."""


async def test_a_release_condition_operator_that_is_not_a_string_is_refused(kit):
    condition = {"properties": [{"key": "email", "type": "person", "operator": {}, "value": "x"}]}
    response = await kit.client.post(
        f"{kit.base}/feature_flags/", json={"key": "odd-operator", "filters": {"groups": [condition]}}, headers=kit.headers
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_operator" and response.json()["attr"] == "filters"
    listed = await kit.client.get(f"{kit.base}/feature_flags/", headers=kit.headers)
    assert listed.json()["count"] == 0


async def test_deleting_an_experiment_answers_405_with_no_body(kit):
    response = await kit.client.delete(f"{kit.base}/experiments/1/", headers=kit.headers)
    assert response.status_code == 405
    assert response.content == b""
