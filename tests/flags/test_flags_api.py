"""The feature flags REST API: CRUD, validation messages, scopes, soft delete, versions."""

import pytest
from sqlalchemy import select

from experiments_service.models import ActivityLog, FeatureFlag, FlagDefinitionsVersion
from tests.factories import boolean_filters, create_flag, multivariate_filters


async def _stored(app, flag_id: int) -> FeatureFlag:
    async with app.state.db.sessionmaker() as session:
        return await session.get(FeatureFlag, flag_id)


async def _definitions_version(app, project_id: int) -> int:
    async with app.state.db.sessionmaker() as session:
        return (await session.get(FlagDefinitionsVersion, project_id)).version


class TestCreate:
    async def test_creates_flag_with_reference_representation(self, app, client, kit):
        response = await client.post(
            f"{kit.base}/feature_flags/",
            json={"key": "new-checkout", "name": "New checkout", "filters": boolean_filters(30)},
            headers=kit.headers,
        )
        assert response.status_code == 201
        body = response.json()
        assert body["key"] == "new-checkout"
        assert body["name"] == "New checkout"
        assert body["active"] is True and body["deleted"] is False
        assert body["version"] == 1
        assert body["team_id"] == kit.project_id
        assert body["created_by"]["id"] == kit.user_id
        assert body["is_simple_flag"] is True and body["rollout_percentage"] == 30
        assert body["experiment_set"] == []
        stored = await _stored(app, body["id"])
        assert stored.filters == boolean_filters(30)
        assert stored.project_id == kit.project_id
        assert await _definitions_version(app, kit.project_id) == 1

    async def test_payloads_are_stored_as_json_strings(self, app, client, kit):
        filters = multivariate_filters([("control", 50), ("test", 50)], payloads={"test": {"color": "red"}, "control": "1"})
        body = await create_flag(kit, "payload-flag", filters=filters)
        assert body["filters"]["payloads"] == {"test": '{"color": "red"}', "control": "1"}
        assert (await _stored(app, body["id"])).filters["payloads"]["test"] == '{"color": "red"}'

    @pytest.mark.parametrize("key", ["has space", "emoji-🚀", "dot.key", ""])
    async def test_rejects_invalid_key(self, client, kit, key):
        response = await client.post(
            f"{kit.base}/feature_flags/", json={"key": key, "filters": boolean_filters()}, headers=kit.headers
        )
        assert response.status_code == 400
        body = response.json()
        assert body["attr"] == "key"
        if key:
            assert body == {
                "type": "validation_error",
                "code": "invalid_key",
                "detail": "Only letters, numbers, hyphens (-) & underscores (_) are allowed.",
                "attr": "key",
            }

    async def test_rejects_duplicate_key(self, client, kit):
        await create_flag(kit, "dupe")
        response = await client.post(
            f"{kit.base}/feature_flags/", json={"key": "dupe", "filters": boolean_filters()}, headers=kit.headers
        )
        assert response.status_code == 400
        assert response.json() == {
            "type": "validation_error",
            "code": "unique",
            "detail": "There is already a feature flag with this key.",
            "attr": "key",
        }

    async def test_same_key_in_another_project_is_fine(self, client, kit):
        from tests.factories import make_kit

        await create_flag(kit, "shared-key")
        other = await make_kit(kit.app, client)
        assert (await create_flag(other, "shared-key"))["team_id"] == other.project_id

    @pytest.mark.parametrize(
        ("filters", "detail"),
        [
            (
                multivariate_filters([("control", 50), ("test", 40)]),
                "Invalid variant definitions: Variant rollout percentages must sum to 100.",
            ),
            (
                {**multivariate_filters([("control", 50), ("test", 50)]), "groups": [{"properties": [], "rollout_percentage": 100, "variant": "nope"}]},
                "Filters are not valid (variant override does not exist)",
            ),
            (boolean_filters(120), "groups[0].rollout_percentage must be between 0 and 100, got 120"),
            (boolean_filters(-1), "groups[0].rollout_percentage must be between 0 and 100, got -1"),
            (boolean_filters(100, properties=["email"]), "Filters are not valid (groups[0].properties[0] must be an object with a 'key')"),
            (boolean_filters(100, properties=[{"value": "x"}]), "Filters are not valid (groups[0].properties[0] must be an object with a 'key')"),
            ({"groups": "all"}, "Filters are not valid (groups must be a list)"),
            ({"groups": [], "payloads": {"other": "1"}}, "Payload keys must be 'true' for boolean flags"),
            ({"groups": [], "payloads": {"true": "{not json"}}, "Payload value is not valid JSON"),
        ],
    )
    async def test_rejects_invalid_filters(self, app, client, kit, filters, detail):
        response = await client.post(
            f"{kit.base}/feature_flags/", json={"key": "bad-filters", "filters": filters}, headers=kit.headers
        )
        assert response.status_code == 400, response.text
        assert response.json()["detail"] == detail
        assert response.json()["attr"] == "filters"
        async with app.state.db.sessionmaker() as session:
            rows = (await session.execute(select(FeatureFlag).where(FeatureFlag.project_id == kit.project_id))).all()
        assert rows == []

    async def test_rejects_unknown_operator(self, client, kit):
        filters = boolean_filters(100, properties=[{"key": "email", "value": "x", "operator": "sounds_like", "type": "person"}])
        response = await client.post(
            f"{kit.base}/feature_flags/", json={"key": "op", "filters": filters}, headers=kit.headers
        )
        assert response.status_code == 400
        assert response.json() == {
            "type": "validation_error",
            "code": "invalid_operator",
            "detail": "Invalid operator: sounds_like",
            "attr": "filters",
        }

    async def test_rejects_more_than_twenty_variants(self, client, kit):
        variants = [(f"v{i}", 5) for i in range(20)] + [("v20", 0)]
        response = await client.post(
            f"{kit.base}/feature_flags/",
            json={"key": "many", "filters": multivariate_filters(variants)},
            headers=kit.headers,
        )
        assert response.status_code == 400
        assert response.json()["attr"] == "filters"
        assert "at most 20 variants" in response.json()["detail"]

    async def test_twenty_variants_are_allowed(self, client, kit):
        body = await create_flag(kit, "twenty", filters=multivariate_filters([(f"v{i}", 5) for i in range(20)]))
        assert len(body["filters"]["multivariate"]["variants"]) == 20

    async def test_filters_must_be_an_object(self, client, kit):
        response = await client.post(
            f"{kit.base}/feature_flags/", json={"key": "x", "filters": [1]}, headers=kit.headers
        )
        assert response.status_code == 400
        assert response.json()["attr"] == "filters"

    async def test_malformed_json_is_a_parse_error(self, client, kit):
        response = await client.post(
            f"{kit.base}/feature_flags/",
            content=b"{not json",
            headers={**kit.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 400
        assert response.json()["type"] == "invalid_request"

    async def test_records_activity(self, app, client, kit):
        body = await create_flag(kit, "logged")
        async with app.state.db.sessionmaker() as session:
            entries = (
                await session.execute(
                    select(ActivityLog).where(ActivityLog.project_id == kit.project_id, ActivityLog.scope == "FeatureFlag")
                )
            ).scalars().all()
        assert [(e.item_id, e.activity, e.user_id) for e in entries] == [(str(body["id"]), "created", kit.user_id)]


class TestList:
    async def test_paginates_and_excludes_deleted(self, client, kit):
        created = [await create_flag(kit, f"flag-{i}") for i in range(5)]
        await client.patch(f"{kit.base}/feature_flags/{created[0]['id']}/", json={"deleted": True}, headers=kit.headers)
        response = await client.get(f"{kit.base}/feature_flags/?limit=2&offset=1", headers=kit.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 4
        assert [flag["key"] for flag in body["results"]] == ["flag-3", "flag-2"]
        assert "offset=3" in body["next"] and "limit=2" in body["next"]
        assert "limit=2" in body["previous"] and "offset" not in body["previous"]
        last = (await client.get(f"{kit.base}/feature_flags/?limit=2&offset=2", headers=kit.headers)).json()
        assert last["next"] is None and [flag["key"] for flag in last["results"]] == ["flag-2", "flag-1"]

    async def test_search_matches_key_and_name(self, client, kit):
        await create_flag(kit, "checkout-redesign", name="Big change")
        await create_flag(kit, "pricing", name="New Checkout pricing")
        await create_flag(kit, "unrelated", name="Other")
        body = (await client.get(f"{kit.base}/feature_flags/?search=CHECKOUT", headers=kit.headers)).json()
        assert sorted(flag["key"] for flag in body["results"]) == ["checkout-redesign", "pricing"]
        assert body["count"] == 2

    async def test_search_wildcards_are_literal(self, client, kit):
        await create_flag(kit, "snake_case")
        await create_flag(kit, "snakeXcase")
        body = (await client.get(f"{kit.base}/feature_flags/?search=e_c", headers=kit.headers)).json()
        assert [flag["key"] for flag in body["results"]] == ["snake_case"]

    async def test_active_filter(self, client, kit):
        await create_flag(kit, "on")
        await create_flag(kit, "off", active=False)
        inactive = (await client.get(f"{kit.base}/feature_flags/?active=false", headers=kit.headers)).json()
        assert [flag["key"] for flag in inactive["results"]] == ["off"]
        active = (await client.get(f"{kit.base}/feature_flags/?active=true", headers=kit.headers)).json()
        assert [flag["key"] for flag in active["results"]] == ["on"]

    async def test_garbage_limit_falls_back_to_the_default(self, client, kit):
        await create_flag(kit, "one")
        response = await client.get(f"{kit.base}/feature_flags/?limit=abc&offset=-3", headers=kit.headers)
        assert response.status_code == 200
        assert [flag["key"] for flag in response.json()["results"]] == ["one"]


class TestRetrieveAndUpdate:
    async def test_patch_changes_fields_and_bumps_version(self, app, client, kit):
        flag = await create_flag(kit, "editable")
        before = await _definitions_version(app, kit.project_id)
        response = await client.patch(
            f"{kit.base}/feature_flags/{flag['id']}/",
            json={"name": "Renamed", "filters": boolean_filters(10)},
            headers=kit.headers,
        )
        assert response.status_code == 200
        body = response.json()
        assert body["name"] == "Renamed" and body["version"] == 2
        assert body["filters"]["groups"][0]["rollout_percentage"] == 10
        stored = await _stored(app, flag["id"])
        assert stored.version == 2 and stored.name == "Renamed"
        assert await _definitions_version(app, kit.project_id) == before + 1
        retrieved = (await client.get(f"{kit.base}/feature_flags/{flag['id']}/", headers=kit.headers)).json()
        assert retrieved["version"] == 2 and retrieved["name"] == "Renamed"

    async def test_patch_with_no_change_keeps_version(self, app, client, kit):
        flag = await create_flag(kit, "same")
        response = await client.patch(f"{kit.base}/feature_flags/{flag['id']}/", json={"name": flag["name"]}, headers=kit.headers)
        assert response.status_code == 200 and response.json()["version"] == 1

    async def test_patch_validates_filters_and_writes_nothing(self, app, client, kit):
        flag = await create_flag(kit, "guarded")
        response = await client.patch(
            f"{kit.base}/feature_flags/{flag['id']}/",
            json={"name": "changed", "filters": multivariate_filters([("a", 10), ("b", 10)])},
            headers=kit.headers,
        )
        assert response.status_code == 400
        assert response.json()["detail"] == "Invalid variant definitions: Variant rollout percentages must sum to 100."
        stored = await _stored(app, flag["id"])
        assert stored.name == flag["name"] and stored.version == 1

    async def test_patch_key_to_taken_key_is_rejected(self, client, kit):
        await create_flag(kit, "taken")
        flag = await create_flag(kit, "mine")
        response = await client.patch(f"{kit.base}/feature_flags/{flag['id']}/", json={"key": "taken"}, headers=kit.headers)
        assert response.status_code == 400 and response.json()["code"] == "unique"

    async def test_patch_null_name_is_rejected(self, client, kit):
        flag = await create_flag(kit, "nullable")
        response = await client.patch(f"{kit.base}/feature_flags/{flag['id']}/", json={"name": None}, headers=kit.headers)
        assert response.status_code == 400
        assert response.json() == {"type": "validation_error", "code": "null", "detail": "This field may not be null.", "attr": "name"}

    async def test_soft_delete_frees_the_key_and_restore_checks_it(self, app, client, kit):
        flag = await create_flag(kit, "gone")
        response = await client.patch(f"{kit.base}/feature_flags/{flag['id']}/", json={"deleted": True}, headers=kit.headers)
        assert response.status_code == 200 and response.json()["deleted"] is True
        assert (await _stored(app, flag["id"])).deleted is True
        await create_flag(kit, "gone")
        restore = await client.patch(f"{kit.base}/feature_flags/{flag['id']}/", json={"deleted": False}, headers=kit.headers)
        assert restore.status_code == 400 and restore.json()["code"] == "unique"
        assert (await _stored(app, flag["id"])).deleted is True

    async def test_flag_other_flags_depend_on_cannot_be_deleted(self, app, client, kit):
        base_flag = await create_flag(kit, "base")
        dependency = {"key": str(base_flag["id"]), "type": "flag", "value": True, "operator": "flag_evaluates_to"}
        await create_flag(kit, "follower", filters=boolean_filters(100, properties=[dependency]))
        response = await client.patch(f"{kit.base}/feature_flags/{base_flag['id']}/", json={"deleted": True}, headers=kit.headers)
        assert response.status_code == 400
        assert response.json()["detail"].startswith("Cannot delete this feature flag because other flags depend on it: follower (ID: ")
        assert (await _stored(app, base_flag["id"])).deleted is False

    async def test_hard_delete_is_405(self, app, client, kit):
        flag = await create_flag(kit, "stays")
        response = await client.delete(f"{kit.base}/feature_flags/{flag['id']}/", headers=kit.headers)
        assert response.status_code == 405
        assert response.content == b""
        assert (await _stored(app, flag["id"])).deleted is False

    async def test_unknown_and_foreign_flags_are_404(self, client, kit):
        from tests.factories import make_kit

        other = await make_kit(kit.app, client)
        foreign = await create_flag(other, "foreign")
        assert (await client.get(f"{kit.base}/feature_flags/{foreign['id']}/", headers=kit.headers)).status_code == 404
        assert (await client.get(f"{kit.base}/feature_flags/999999/", headers=kit.headers)).status_code == 404
        patched = await client.patch(f"{kit.base}/feature_flags/{foreign['id']}/", json={"name": "x"}, headers=kit.headers)
        assert patched.status_code == 404


class TestScopes:
    async def test_read_scope_cannot_write(self, client, kit):
        headers, _ = await kit.key(["feature_flag:read"])
        assert (await client.get(f"{kit.base}/feature_flags/", headers=headers)).status_code == 200
        response = await client.post(f"{kit.base}/feature_flags/", json={"key": "x"}, headers=headers)
        assert response.status_code == 403
        assert response.json()["detail"] == "API key missing required scope 'feature_flag:write'"

    async def test_other_scope_cannot_read(self, client, kit):
        headers, _ = await kit.key(["experiment:read"])
        response = await client.get(f"{kit.base}/feature_flags/", headers=headers)
        assert response.status_code == 403

    async def test_missing_key_is_401(self, client, kit):
        response = await client.get(f"{kit.base}/feature_flags/")
        assert response.status_code == 401
        assert response.json()["type"] == "authentication_error"

    async def test_non_member_is_denied(self, client, kit):
        from tests.factories import make_kit

        other = await make_kit(kit.app, client)
        response = await client.get(f"{kit.base}/feature_flags/", headers=other.headers)
        assert response.status_code in (403, 404)
        assert "results" not in response.json()


class TestExperimentFlag:
    async def test_switching_the_flag_pauses_and_resumes_its_experiment(self, client, kit):
        created = await client.post(
            f"{kit.base}/experiments/", json={"name": "Flag sync", "feature_flag_key": "synced-flag"}, headers=kit.headers
        )
        assert created.status_code == 201, created.text
        experiment_url = f"{kit.base}/experiments/{created.json()['id']}/"
        assert (await client.post(f"{experiment_url}launch/", headers=kit.headers)).status_code == 200
        flag_id = created.json()["feature_flag"]["id"]
        flag_url = f"{kit.base}/feature_flags/{flag_id}/"

        off = await client.patch(flag_url, json={"active": False}, headers=kit.headers)
        assert off.status_code == 200 and off.json()["experiment_set"] == [created.json()["id"]]
        assert (await client.get(experiment_url, headers=kit.headers)).json()["status"] == "paused"
        assert (await client.patch(flag_url, json={"active": True}, headers=kit.headers)).status_code == 200
        assert (await client.get(experiment_url, headers=kit.headers)).json()["status"] == "running"

    async def test_flag_of_a_live_experiment_cannot_be_deleted(self, app, client, kit):
        created = await client.post(
            f"{kit.base}/experiments/", json={"name": "Keeps flag", "feature_flag_key": "kept-flag"}, headers=kit.headers
        )
        experiment_id = created.json()["id"]
        flag_id = created.json()["feature_flag"]["id"]
        response = await client.patch(f"{kit.base}/feature_flags/{flag_id}/", json={"deleted": True}, headers=kit.headers)
        assert response.status_code == 400
        assert response.json()["detail"] == (
            f"Cannot delete a feature flag that is linked to active experiment(s) with ID(s): {experiment_id}. "
            "Please delete the experiment(s) before deleting the flag."
        )
        assert (await _stored(app, flag_id)).deleted is False
