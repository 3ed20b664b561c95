"""`GET /experiments/eligible_feature_flags/`: which flags qualify, filters, ordering, paging, scope."""

import pytest

from tests.factories import make_experiment, make_flag, make_flags, make_kit


def eligible_url(kit) -> str:
    return f"{kit.base}/experiments/eligible_feature_flags/"


async def listed(client, kit, **params) -> dict:
    response = await client.get(eligible_url(kit), params=params, headers=kit.headers)
    assert response.status_code == 200, response.text
    return response.json()


def keys(page: dict) -> list[str]:
    return [flag["key"] for flag in page["results"]]


class TestEligibility:
    async def test_only_multivariate_flags_with_control_first(self, client, kit, app):
        for key, variants in (
            ("control-first", [("control", 50), ("test", 50)]),
            ("three-way", [("control", 34), ("a", 33), ("b", 33)]),
            ("test-first", [("test", 50), ("control", 50)]),
            ("single-variant", [("control", 100)]),
            ("no-control", [("a", 50), ("b", 50)]),
            ("capital-control", [("Control", 50), ("test", 50)]),
            ("boolean", None),
        ):
            await make_flag(kit, key, variants=variants)
        await make_flag(kit, "deleted-one", deleted=True)
        page = await listed(client, kit)
        assert sorted(keys(page)) == ["control-first", "three-way"]
        assert page["count"] == 2
        assert set(page) == {"results", "count"}

    async def test_item_is_the_full_flag_with_its_live_experiments(self, client, kit, app):
        flag = await make_flag(kit, "with-experiments", name="Checkout")
        live = await make_experiment(app, kit.project_id, flag.id, name="live")
        await make_experiment(app, kit.project_id, flag.id, name="gone", deleted=True)
        [item] = (await listed(client, kit))["results"]
        assert item["id"] == flag.id
        assert item["key"] == "with-experiments"
        assert item["name"] == "Checkout"
        assert item["experiment_set"] == [live.id]
        assert item["created_by"]["id"] == kit.user_id
        assert item["filters"]["multivariate"]["variants"][0]["key"] == "control"
        for field in ("active", "deleted", "version", "evaluation_runtime", "tags", "surveys", "features"):
            assert field in item

    async def test_other_projects_flags_never_appear(self, client, kit, app):
        other = await make_kit(app, client)
        await make_flag(other, "foreign")
        assert await listed(client, kit) == {"results": [], "count": 0}


class TestFilters:
    async def test_search_matches_key_or_name_case_insensitively(self, client, kit, app):
        await make_flag(kit, "checkout-button", name="Button colour")
        await make_flag(kit, "pricing-page", name="Checkout pricing")
        await make_flag(kit, "onboarding", name="Welcome")
        await make_flag(kit, "percent_literal", name="100% rollout")
        assert sorted(keys(await listed(client, kit, search="CHECKOUT"))) == ["checkout-button", "pricing-page"]
        assert keys(await listed(client, kit, search="%")) == ["percent_literal"]
        assert keys(await listed(client, kit, search="t_l")) == ["percent_literal"]

    async def test_active_true_and_anything_else(self, client, kit, app):
        await make_flag(kit, "on", active=True)
        await make_flag(kit, "off", active=False)
        assert keys(await listed(client, kit, active="true")) == ["on"]
        assert keys(await listed(client, kit, active="false")) == ["off"]
        assert keys(await listed(client, kit, active="maybe")) == ["off"]

    async def test_created_by_id(self, client, kit, app):
        _, other_user_id = await kit.key(["*"])
        await make_flag(kit, "mine")
        await make_flag(kit, "theirs", user_id=other_user_id)
        assert keys(await listed(client, kit, created_by_id=other_user_id)) == ["theirs"]
        response = await client.get(eligible_url(kit), params={"created_by_id": "me"}, headers=kit.headers)
        assert response.status_code == 400
        assert response.json()["attr"] == "created_by_id"

    async def test_evaluation_runtime_and_contexts(self, client, kit, app):
        await make_flag(kit, "server-tagged", evaluation_runtime="server",
                        evaluation_tags=["web"])  # fmt: skip
        await make_flag(kit, "client-plain", evaluation_runtime="client")
        assert keys(await listed(client, kit, evaluation_runtime="server")) == ["server-tagged"]
        for truthy in ("true", "1", "yes", "TRUE"):
            assert keys(await listed(client, kit, has_evaluation_contexts=truthy)) == ["server-tagged"]
        for other in ("false", "0", "no", ""):
            assert keys(await listed(client, kit, has_evaluation_contexts=other)) == ["client-plain"]


class TestOrderingAndPaging:
    async def test_default_order_is_newest_first(self, client, kit, app):
        for key in ("b-first", "a-second", "c-third"):
            await make_flag(kit, key, name=key[::-1])
        assert keys(await listed(client, kit)) == ["c-third", "a-second", "b-first"]
        assert keys(await listed(client, kit, order="created_at")) == ["b-first", "a-second", "c-third"]
        assert keys(await listed(client, kit, order="key")) == ["a-second", "b-first", "c-third"]
        assert keys(await listed(client, kit, order="-key")) == ["c-third", "b-first", "a-second"]
        assert keys(await listed(client, kit, order="name")) == ["a-second", "c-third", "b-first"]

    async def test_invalid_order_is_a_standard_400(self, client, kit):
        response = await client.get(eligible_url(kit), params={"order": "filters"}, headers=kit.headers)
        assert response.status_code == 400
        assert response.json() == {
            "type": "validation_error", "code": "invalid_input", "detail": "Invalid order field: 'filters'", "attr": None
        }  # fmt: skip

    async def test_limit_and_offset(self, client, kit, app):
        for key in ("one", "two", "three"):
            await make_flag(kit, key)
        page = await listed(client, kit, limit=1, offset=1)
        assert page == {"results": page["results"], "count": 3}
        assert keys(page) == ["two"]
        assert keys(await listed(client, kit, offset=-5, limit=2)) == ["three", "two"]
        assert len((await listed(client, kit, limit=1000))["results"]) == 3
        assert (await listed(client, kit, offset=10))["results"] == []

    async def test_default_limit_is_20_and_cap_is_100(self, client, kit, app):
        await make_flags(kit, [f"flag-{index}" for index in range(101)])
        page = await listed(client, kit)
        assert (len(page["results"]), page["count"]) == (20, 101)
        capped = await listed(client, kit, limit=500)
        assert (len(capped["results"]), capped["count"]) == (100, 101)
        assert len({flag["id"] for flag in capped["results"]}) == 100

    @pytest.mark.parametrize("params", [{"limit": "ten"}, {"offset": "1.5"}, {"limit": ""}])
    async def test_non_integer_limit_or_offset_has_its_own_body(self, client, kit, params):
        response = await client.get(eligible_url(kit), params=params, headers=kit.headers)
        assert response.status_code == 400
        assert response.json() == {"error": "Invalid limit or offset"}


class TestAccess:
    async def test_needs_feature_flag_read(self, client, kit, app):
        await make_flag(kit, "visible")
        experiment_only, _ = await kit.key(["experiment:read", "experiment:write"])
        response = await client.get(eligible_url(kit), headers=experiment_only)
        assert response.status_code == 403
        assert response.json() == {
            "type": "authentication_error",
            "code": "permission_denied",
            "detail": "API key missing required scope 'feature_flag:read'",
            "attr": None,
        }
        flag_reader, _ = await kit.key(["feature_flag:read"])
        assert keys((await client.get(eligible_url(kit), headers=flag_reader)).json()) == ["visible"]
        flag_writer, _ = await kit.key(["feature_flag:write"])
        assert (await client.get(eligible_url(kit), headers=flag_writer)).status_code == 200

    async def test_without_trailing_slash(self, client, kit, app):
        await make_flag(kit, "slashless")
        response = await client.get(eligible_url(kit).rstrip("/"), headers=kit.headers)
        assert response.status_code == 200
        assert keys(response.json()) == ["slashless"]
