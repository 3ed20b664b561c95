"""Cohorts through HTTP: PostHog's shapes, static members from a list or a CSV upload, soft
delete refused while a flag uses the cohort, and cohort targeting on /flags."""

import uuid

PRO = {"key": "plan", "type": "person", "value": ["pro"], "operator": "exact"}
EU = {"key": "region", "type": "person", "value": "eu", "operator": "exact"}


def dynamic(*groups: list[dict], kind: str = "OR") -> dict:
    return {"properties": {"type": kind, "values": [{"type": "AND", "values": list(group)} for group in groups]}}


async def create_cohort(kit, **body) -> dict:
    response = await kit.client.post(f"{kit.base}/cohorts/", json={"name": "c", **body}, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def cohort_flag(kit, key: str, cohort_id: int, operator: str = "in") -> dict:
    condition = {"type": "cohort", "key": "id", "value": cohort_id, "operator": operator}
    body = {"key": key, "name": key, "filters": {"groups": [{"properties": [condition], "rollout_percentage": 100}]}}
    response = await kit.client.post(f"{kit.base}/feature_flags/", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def set_person(kit, distinct_id: str, **properties) -> None:
    event = {"event": "$set", "distinct_id": distinct_id, "uuid": str(uuid.uuid4()), "properties": {"$set": properties}}
    response = await kit.client.post("/batch/", json={"api_key": kit.project_api_key, "batch": [event]})
    assert response.status_code == 200


async def enabled(kit, key: str, distinct_id: str, **body) -> bool:
    response = await kit.client.post(
        "/flags/?v=2", json={"token": kit.project_api_key, "distinct_id": distinct_id, **body}
    )
    assert response.status_code == 200, response.text
    return response.json()["flags"][key]["enabled"]


class TestCohortsAPI:
    async def test_create_retrieve_list_and_patch_a_dynamic_cohort(self, kit):
        created = await create_cohort(kit, name="Pro users", filters=dynamic([PRO]))
        assert created["is_static"] is False and created["cohort_type"] == "person_property"
        assert created["filters"] == dynamic([PRO]) and created["deleted"] is False
        assert created["created_by"]["id"] == kit.user_id
        fetched = await kit.client.get(f"{kit.base}/cohorts/{created['id']}/", headers=kit.headers)
        assert fetched.json() == created
        patched = await kit.client.patch(
            f"{kit.base}/cohorts/{created['id']}/", json={"name": "Pro or EU", "filters": dynamic([PRO], [EU])},
            headers=kit.headers,
        )
        assert patched.status_code == 200 and patched.json()["name"] == "Pro or EU"
        listed = (await kit.client.get(f"{kit.base}/cohorts/", headers=kit.headers)).json()
        assert listed["count"] == 1 and listed["results"][0]["filters"] == dynamic([PRO], [EU])

    async def test_legacy_groups_become_filters(self, kit):
        created = await create_cohort(kit, groups=[{"properties": [{"key": "plan", "value": "pro", "operator": "exact"}]}])
        assert created["filters"]["properties"]["type"] == "OR"
        assert created["filters"]["properties"]["values"][0]["values"][0]["type"] == "person"

    async def test_invalid_filters_are_400s(self, kit):
        cases = [
            ({"filters": {"nope": 1}}, "Must contain a 'properties' key with type and values"),
            ({"filters": dynamic([{"key": "plan", "type": "person", "operator": "exact"}])},
             "Missing required keys for person filter: value"),
            ({"filters": dynamic([{"key": "x", "type": "behavioral", "value": "performed_event", "event_type": "events"}])},
             "Behavioral filters are not supported: cohorts here are defined by person properties."),
        ]
        for body, detail in cases:
            response = await kit.client.post(f"{kit.base}/cohorts/", json={"name": "bad", **body}, headers=kit.headers)
            assert response.status_code == 400, response.text
            assert response.json() == {"type": "validation_error", "code": "invalid_input", "detail": detail, "attr": "filters"}

    async def test_static_cohort_from_distinct_ids_and_csv(self, kit):
        created = await create_cohort(kit, is_static=True, distinct_ids=["a", "b"])
        assert created["is_static"] is True and created["count"] == 2 and created["cohort_type"] == "static"
        upload = await kit.client.post(
            f"{kit.base}/cohorts/", data={"name": "Uploaded", "is_static": "true"},
            files={"csv": ("ids.csv", b"distinct_id,name\nu-1,Ann\nu-2,Bob\n\nu-1,Ann\n", "text/csv")}, headers=kit.headers,
        )
        assert upload.status_code == 201, upload.text
        assert upload.json()["count"] == 2 and upload.json()["name"] == "Uploaded"
        single = await kit.client.patch(
            f"{kit.base}/cohorts/{upload.json()['id']}/", files={"csv": ("ids.csv", b"u-3\nu-4\n", "text/csv")},
            headers=kit.headers,
        )
        assert single.status_code == 200 and single.json()["count"] == 4
        bad = await kit.client.post(
            f"{kit.base}/cohorts/", data={"name": "x", "is_static": "true"},
            files={"csv": ("ids.csv", b"name,age\nAnn,3\n", "text/csv")}, headers=kit.headers,
        )
        assert bad.status_code == 400 and bad.json()["attr"] == "csv"
        assert bad.json()["detail"].startswith("Multi-column CSV must contain at least one column")

    async def test_a_cohort_used_by_a_flag_cannot_be_deleted(self, kit):
        cohort = await create_cohort(kit, filters=dynamic([PRO]))
        flag = await cohort_flag(kit, "pro-flag", cohort["id"])
        url = f"{kit.base}/cohorts/{cohort['id']}/"
        refused = await kit.client.patch(url, json={"deleted": True}, headers=kit.headers)
        assert refused.status_code == 400
        assert refused.json()["detail"] == (
            "This cohort is used in 1 active feature flag(s): pro-flag. "
            "Please remove the cohort from these feature flags before deleting it."
        )
        assert (await kit.client.get(url, headers=kit.headers)).json()["deleted"] is False
        removed = await kit.client.patch(
            f"{kit.base}/feature_flags/{flag['id']}/", json={"filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}},
            headers=kit.headers,
        )
        assert removed.status_code == 200, removed.text
        deleted = await kit.client.patch(url, json={"deleted": True}, headers=kit.headers)
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        assert (await kit.client.get(f"{kit.base}/cohorts/", headers=kit.headers)).json()["count"] == 0
        assert (await kit.client.delete(url, headers=kit.headers)).status_code == 405

    async def test_cohorts_cannot_reference_each_other_in_a_loop(self, kit):
        first = await create_cohort(kit, filters=dynamic([PRO]))
        second = await create_cohort(kit, filters=dynamic([{"type": "cohort", "key": "id", "value": first["id"]}]))
        loop = await kit.client.patch(
            f"{kit.base}/cohorts/{first['id']}/",
            json={"filters": dynamic([{"type": "cohort", "key": "id", "value": second["id"]}])}, headers=kit.headers,
        )
        assert loop.status_code == 400 and loop.json()["detail"] == "Cohorts cannot reference other cohorts in a loop."


class TestCohortTargeting:
    async def test_dynamic_cohort_matches_stored_and_sent_properties(self, kit):
        cohort = await create_cohort(kit, filters=dynamic([PRO], [EU]))
        await cohort_flag(kit, "in-cohort", cohort["id"])
        await cohort_flag(kit, "not-in-cohort", cohort["id"], operator="not_in")
        await set_person(kit, "pro-1", plan="pro")
        assert await enabled(kit, "in-cohort", "pro-1") is True
        assert await enabled(kit, "not-in-cohort", "pro-1") is False
        assert await enabled(kit, "in-cohort", "free-1", person_properties={"region": "eu"}) is True
        assert await enabled(kit, "in-cohort", "free-2") is False
        assert await enabled(kit, "not-in-cohort", "free-2") is True

    async def test_static_cohort_matches_every_distinct_id_of_a_member(self, kit):
        cohort = await create_cohort(kit, is_static=True, distinct_ids=["listed"])
        await cohort_flag(kit, "vip", cohort["id"])
        assert await enabled(kit, "vip", "listed") is True
        assert await enabled(kit, "vip", "device-9") is False
        identify = {"event": "$identify", "distinct_id": "listed", "uuid": str(uuid.uuid4()),
                    "properties": {"$anon_distinct_id": "device-9"}}  # fmt: skip
        assert (await kit.client.post("/batch/", json={"api_key": kit.project_api_key, "batch": [identify]})).status_code == 200
        assert await enabled(kit, "vip", "device-9") is True

    async def test_cohort_changes_reach_flags_at_once(self, kit):
        cohort = await create_cohort(kit, filters=dynamic([PRO]))
        await cohort_flag(kit, "changing", cohort["id"])
        assert await enabled(kit, "changing", "eu-1", person_properties={"region": "eu"}) is False
        patched = await kit.client.patch(
            f"{kit.base}/cohorts/{cohort['id']}/", json={"filters": dynamic([EU])}, headers=kit.headers
        )
        assert patched.status_code == 200
        assert await enabled(kit, "changing", "eu-1", person_properties={"region": "eu"}) is True

    async def test_definitions_carry_dynamic_cohorts_for_local_evaluation(self, kit):
        dynamic_cohort = await create_cohort(kit, filters=dynamic([PRO]))
        static_cohort = await create_cohort(kit, is_static=True, distinct_ids=["x"])
        unused = await create_cohort(kit, filters=dynamic([EU]))
        await cohort_flag(kit, "dyn", dynamic_cohort["id"])
        await cohort_flag(kit, "stat", static_cohort["id"])
        response = await kit.client.get(
            "/flags/definitions", params={"token": kit.project_api_key, "send_cohorts": ""}, headers=kit.headers
        )
        assert response.status_code == 200, response.text
        cohorts = response.json()["cohorts"]
        assert cohorts == {str(dynamic_cohort["id"]): dynamic([PRO])["properties"]}
        assert str(unused["id"]) not in cohorts
