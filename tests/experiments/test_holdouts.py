"""`/experiment_holdouts/`: CRUD, PostHog's validation, and flag sync for experiments using a holdout."""

from sqlalchemy import func, select

from experiments_service.models import ActivityLog, Experiment, ExperimentHoldout, FeatureFlag
from tests.factories import load, make_experiment, make_flag, make_kit


def holdouts_url(kit) -> str:
    return f"{kit.base}/experiment_holdouts/"


async def create_holdout(client, kit, name: str = "Ten percent", rollout: float = 10) -> dict:
    response = await client.post(
        holdouts_url(kit),
        json={"name": name, "description": "kept out", "filters": [{"properties": [], "rollout_percentage": rollout}]},
        headers=kit.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def holdout_count(app, project_id: int) -> int:
    async with app.state.db.sessionmaker() as session:
        return await session.scalar(
            select(func.count()).select_from(ExperimentHoldout).where(ExperimentHoldout.project_id == project_id)
        )


class TestCreate:
    async def test_create_sets_holdout_variant_on_every_group(self, client, kit, app):
        response = await client.post(
            holdouts_url(kit),
            json={
                "name": "Global holdout",
                "filters": [
                    {"properties": [], "rollout_percentage": 10},
                    {"properties": [{"key": "plan", "value": "pro"}], "rollout_percentage": 5, "variant": "x"},
                ],
            },
            headers=kit.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        holdout_id = body["id"]
        assert list(body) == ["id", "name", "description", "filters", "created_by", "created_at", "updated_at"]
        assert body["name"] == "Global holdout"
        assert body["description"] is None
        assert [group["variant"] for group in body["filters"]] == [f"holdout-{holdout_id}"] * 2
        assert body["filters"][1]["properties"] == [{"key": "plan", "value": "pro"}]
        assert body["created_by"]["id"] == kit.user_id
        assert body["created_at"].endswith("Z")
        stored = await load(app, ExperimentHoldout, holdout_id)
        assert stored.project_id == kit.project_id
        assert stored.filters == body["filters"]

    async def test_name_is_required(self, client, kit, app):
        response = await client.post(holdouts_url(kit), json={"filters": [{"rollout_percentage": 10}]}, headers=kit.headers)
        assert response.status_code == 400
        assert response.json() == {
            "type": "validation_error", "code": "required", "detail": "This field is required.", "attr": "name"
        }  # fmt: skip
        assert await holdout_count(app, kit.project_id) == 0

    async def test_name_longer_than_400_is_rejected(self, client, kit, app):
        response = await client.post(
            holdouts_url(kit), json={"name": "x" * 401, "filters": [{"rollout_percentage": 10}]}, headers=kit.headers
        )
        assert response.status_code == 400
        assert response.json()["code"] == "max_length"
        assert response.json()["attr"] == "name"
        assert await holdout_count(app, kit.project_id) == 0

    async def test_filters_are_required(self, client, kit, app):
        for body in ({"name": "h"}, {"name": "h", "filters": []}):
            response = await client.post(holdouts_url(kit), json=body, headers=kit.headers)
            assert response.status_code == 400
            assert response.json()["detail"] == "Filters are required to create an holdout group"
        assert await holdout_count(app, kit.project_id) == 0

    async def test_rollout_percentage_must_be_present_and_in_range(self, client, kit, app):
        cases = [
            ([{"properties": []}], "Rollout percentage must be present."),
            ([{"rollout_percentage": None}], "Rollout percentage must be present."),
            ([{"rollout_percentage": 101}], "Rollout percentage must be between 0 and 100."),
            ([{"rollout_percentage": -1}], "Rollout percentage must be between 0 and 100."),
            ([{"rollout_percentage": "ten"}], "Rollout percentage must be between 0 and 100."),
        ]
        for filters, message in cases:
            response = await client.post(holdouts_url(kit), json={"name": "h", "filters": filters}, headers=kit.headers)
            assert response.status_code == 400, filters
            assert response.json() == {"type": "validation_error", "code": "invalid_input", "detail": message,
                                       "attr": "filters"}  # fmt: skip
        assert await holdout_count(app, kit.project_id) == 0

    async def test_filters_must_be_a_list_of_objects(self, client, kit, app):
        response = await client.post(holdouts_url(kit), json={"name": "h", "filters": {"a": 1}}, headers=kit.headers)
        assert response.status_code == 400
        assert response.json()["attr"] == "filters"
        assert await holdout_count(app, kit.project_id) == 0

    async def test_create_is_logged(self, client, kit, app):
        holdout = await create_holdout(client, kit)
        async with app.state.db.sessionmaker() as session:
            entries = (
                await session.execute(
                    select(ActivityLog).where(
                        ActivityLog.project_id == kit.project_id, ActivityLog.item_id == str(holdout["id"])
                    )
                )
            ).scalars().all()
        assert [(entry.activity, entry.detail["type"]) for entry in entries] == [("created", "holdout")]


class TestListAndRetrieve:
    async def test_empty_list(self, client, kit):
        response = await client.get(holdouts_url(kit), headers=kit.headers)
        assert response.status_code == 200
        assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}

    async def test_newest_first_with_pagination_links(self, client, kit):
        names = ["first", "second", "third"]
        for name in names:
            await create_holdout(client, kit, name=name)
        page_one = (await client.get(holdouts_url(kit), params={"limit": 2}, headers=kit.headers)).json()
        assert page_one["count"] == 3
        assert [h["name"] for h in page_one["results"]] == ["third", "second"]
        assert page_one["previous"] is None
        assert page_one["next"].endswith(f"/api/projects/{kit.project_id}/experiment_holdouts/?limit=2&offset=2")
        page_two = (await client.get(page_one["next"], headers=kit.headers)).json()
        assert [h["name"] for h in page_two["results"]] == ["first"]
        assert page_two["next"] is None
        assert page_two["previous"].endswith("/experiment_holdouts/?limit=2")

    async def test_retrieve_and_trailing_slash_is_optional(self, client, kit):
        holdout = await create_holdout(client, kit)
        for url in (f"{holdouts_url(kit)}{holdout['id']}/", f"{holdouts_url(kit)}{holdout['id']}"):
            response = await client.get(url, headers=kit.headers)
            assert response.status_code == 200
            assert response.json() == holdout

    async def test_other_projects_holdouts_are_invisible(self, client, kit, app):
        other = await make_kit(app, client)
        foreign = await create_holdout(client, other, name="theirs")
        listed = (await client.get(holdouts_url(kit), headers=kit.headers)).json()
        assert listed["count"] == 0
        url = f"{holdouts_url(kit)}{foreign['id']}/"
        assert (await client.get(url, headers=kit.headers)).status_code == 404
        patched = await client.patch(url, json={"name": "mine"}, headers=kit.headers)
        assert patched.status_code == 404
        assert (await client.delete(url, headers=kit.headers)).status_code == 404
        assert (await load(app, ExperimentHoldout, foreign["id"])).name == "theirs"

    async def test_non_integer_id_is_404_or_400_never_500(self, client, kit):
        response = await client.get(f"{holdouts_url(kit)}abc/", headers=kit.headers)
        assert response.status_code in (400, 404)


class TestUpdate:
    async def test_patch_name_only_keeps_filters(self, client, kit, app):
        holdout = await create_holdout(client, kit)
        response = await client.patch(
            f"{holdouts_url(kit)}{holdout['id']}/", json={"name": "Renamed"}, headers=kit.headers
        )
        assert response.status_code == 200
        assert response.json()["name"] == "Renamed"
        assert response.json()["filters"] == holdout["filters"]
        assert (await load(app, ExperimentHoldout, holdout["id"])).name == "Renamed"

    async def test_new_filters_get_the_variant_and_rewrite_experiment_flags(self, client, kit, app):
        holdout = await create_holdout(client, kit, rollout=10)
        flag = await make_flag(kit, "held-out-flag")
        other_flag = await make_flag(kit, "unrelated-flag")
        await make_experiment(app, kit.project_id, flag.id, holdout_id=holdout["id"])
        await make_experiment(app, kit.project_id, other_flag.id)

        response = await client.patch(
            f"{holdouts_url(kit)}{holdout['id']}/",
            json={"filters": [{"properties": [], "rollout_percentage": 25}]},
            headers=kit.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["filters"] == [
            {"properties": [], "rollout_percentage": 25, "variant": f"holdout-{holdout['id']}"}
        ]
        rewritten = await load(app, FeatureFlag, flag.id)
        assert rewritten.filters["holdout"] == {"id": holdout["id"], "exclusion_percentage": 25}
        assert rewritten.filters["multivariate"] == flag.filters["multivariate"]
        assert rewritten.version == flag.version + 1
        untouched = await load(app, FeatureFlag, other_flag.id)
        assert "holdout" not in untouched.filters
        assert untouched.version == other_flag.version

    async def test_invalid_patch_changes_nothing(self, client, kit, app):
        holdout = await create_holdout(client, kit)
        url = f"{holdouts_url(kit)}{holdout['id']}/"
        for body, attr in (
            ({"name": None}, "name"),
            ({"name": ""}, "name"),
            ({"filters": [{"rollout_percentage": 150}]}, "filters"),
            ({"filters": []}, "filters"),
            ({"description": "d" * 401}, "description"),
        ):
            response = await client.patch(url, json=body, headers=kit.headers)
            assert response.status_code == 400, body
            assert response.json()["attr"] == attr
        stored = await load(app, ExperimentHoldout, holdout["id"])
        assert (stored.name, stored.description, stored.filters) == (
            holdout["name"], holdout["description"], holdout["filters"]
        )  # fmt: skip


    async def test_put_needs_the_name_and_keeps_what_is_left_out(self, client, kit, app):
        holdout = await create_holdout(client, kit)
        url = f"{holdouts_url(kit)}{holdout['id']}/"
        missing_name = await client.put(url, json={"filters": [{"rollout_percentage": 50}]}, headers=kit.headers)
        assert (missing_name.status_code, missing_name.json()["code"], missing_name.json()["attr"]) == (
            400, "required", "name"
        )  # fmt: skip
        assert (await load(app, ExperimentHoldout, holdout["id"])).filters == holdout["filters"]
        replaced = await client.put(url, json={"name": "Replaced"}, headers=kit.headers)
        assert replaced.status_code == 200
        assert (replaced.json()["name"], replaced.json()["filters"]) == ("Replaced", holdout["filters"])
        assert (await load(app, ExperimentHoldout, holdout["id"])).name == "Replaced"


class TestDelete:
    async def test_delete_detaches_experiments_and_flags(self, client, kit, app):
        holdout = await create_holdout(client, kit)
        flag = await make_flag(kit, "held-flag")
        async with app.state.db.transaction() as session:
            stored_flag = await session.get(FeatureFlag, flag.id)
            stored_flag.filters = {**stored_flag.filters, "holdout": {"id": holdout["id"], "exclusion_percentage": 10}}
        experiment = await make_experiment(app, kit.project_id, flag.id, holdout_id=holdout["id"])

        response = await client.delete(f"{holdouts_url(kit)}{holdout['id']}/", headers=kit.headers)
        assert response.status_code == 204
        assert response.content == b""
        assert await load(app, ExperimentHoldout, holdout["id"]) is None
        assert (await load(app, Experiment, experiment.id)).holdout_id is None
        assert (await load(app, FeatureFlag, flag.id)).filters["holdout"] is None
        missing = await client.get(f"{holdouts_url(kit)}{holdout['id']}/", headers=kit.headers)
        assert missing.status_code == 404
        assert missing.json()["code"] == "not_found"


class TestScopes:
    async def test_read_key_lists_but_cannot_write(self, client, kit, app):
        holdout = await create_holdout(client, kit)
        read_headers, _ = await kit.key(["experiment:read"])
        assert (await client.get(holdouts_url(kit), headers=read_headers)).status_code == 200
        denied = await client.post(holdouts_url(kit), json={"name": "x", "filters": [{"rollout_percentage": 1}]},
                                   headers=read_headers)  # fmt: skip
        assert denied.status_code == 403
        assert denied.json() == {
            "type": "authentication_error",
            "code": "permission_denied",
            "detail": "API key missing required scope 'experiment:write'",
            "attr": None,
        }
        deleted = await client.delete(f"{holdouts_url(kit)}{holdout['id']}/", headers=read_headers)
        assert deleted.status_code == 403
        assert await holdout_count(app, kit.project_id) == 1

    async def test_flag_scope_does_not_grant_experiment_access(self, client, kit):
        flag_headers, _ = await kit.key(["feature_flag:write"])
        response = await client.get(holdouts_url(kit), headers=flag_headers)
        assert response.status_code == 403
        assert response.json()["detail"] == "API key missing required scope 'experiment:read'"


class TestThroughExperiments:
    async def test_holdout_follows_the_experiment_flag_into_evaluation(self, client, kit, app):
        holdout = await create_holdout(client, kit, rollout=100)
        created = await client.post(
            f"{kit.base}/experiments/",
            json={"name": "Held out", "feature_flag_key": "held-out", "holdout_id": holdout["id"]},
            headers=kit.headers,
        )
        assert created.status_code == 201, created.text
        experiment = created.json()
        assert experiment["holdout_id"] == holdout["id"]
        assert experiment["feature_flag"]["filters"]["holdout"] == {"id": holdout["id"], "exclusion_percentage": 100}
        launched = await client.post(f"{kit.base}/experiments/{experiment['id']}/launch/", headers=kit.headers)
        assert launched.status_code == 200

        async def variant_for(distinct_id: str):
            response = await client.post("/decide/?v=3", json={"token": kit.project_api_key, "distinct_id": distinct_id})
            assert response.status_code == 200, response.text
            return response.json()["featureFlags"].get("held-out")

        assert {await variant_for(f"user-{n}") for n in range(5)} == {f"holdout-{holdout['id']}"}

        patched = await client.patch(
            f"{holdouts_url(kit)}{holdout['id']}/", json={"filters": [{"properties": [], "rollout_percentage": 0}]},
            headers=kit.headers,
        )  # fmt: skip
        assert patched.status_code == 200
        refreshed = (await client.get(f"{kit.base}/experiments/{experiment['id']}/", headers=kit.headers)).json()
        assert refreshed["holdout"]["filters"][0]["rollout_percentage"] == 0
        assert refreshed["feature_flag"]["filters"]["holdout"] == {"id": holdout["id"], "exclusion_percentage": 0}
        assert {await variant_for(f"user-{n}") for n in range(5)} <= {"control", "test"}

        assert (await client.delete(f"{holdouts_url(kit)}{holdout['id']}/", headers=kit.headers)).status_code == 204
        detached = (await client.get(f"{kit.base}/experiments/{experiment['id']}/", headers=kit.headers)).json()
        assert (detached["holdout"], detached["holdout_id"]) == (None, None)
        assert detached["feature_flag"]["filters"]["holdout"] is None
        assert detached["status"] == "running"
