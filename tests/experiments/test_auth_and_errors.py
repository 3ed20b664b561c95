"""Authentication, scopes, project isolation and bad input across the experiments API.

Every refusal must be PostHog's envelope with the right status, and must leave the database as it
was: no experiment, flag, holdout or activity entry written.
"""

from sqlalchemy import func, select

from experiments_service.models import ActivityLog, Experiment, ExperimentHoldout, FeatureFlag
from tests.factories import create_experiment, load, make_kit

NOT_AUTHENTICATED = {
    "type": "authentication_error",
    "code": "not_authenticated",
    "detail": "Authentication credentials were not provided.",
    "attr": None,
}
INVALID_KEY = {
    "type": "authentication_error",
    "code": "authentication_failed",
    "detail": "Personal API key found in request Authorization header is invalid.",
    "attr": None,
}
NOT_FOUND = {"type": "invalid_request", "code": "not_found", "detail": "Not found.", "attr": None}


def missing_scope(scope: str) -> dict:
    return {
        "type": "authentication_error",
        "code": "permission_denied",
        "detail": f"API key missing required scope '{scope}'",
        "attr": None,
    }


AUTH_EXPERIMENT = {"name": "Auth test", "feature_flag_key": "auth-flag"}


async def row_counts(app, project_id: int) -> dict[str, int]:
    """What a refused request must not change."""
    counts = {}
    async with app.state.db.sessionmaker() as session:
        for model in (Experiment, FeatureFlag, ExperimentHoldout, ActivityLog):
            counts[model.__name__] = await session.scalar(
                select(func.count()).select_from(model).where(model.project_id == project_id)
            )
    return counts


def routes(kit, experiment_id: int) -> list[tuple[str, str, dict | None]]:
    """(method, url, json body) for a representative route of each kind."""
    base = kit.base
    return [
        ("GET", f"{base}/experiments/", None),
        ("POST", f"{base}/experiments/", {"name": "x", "feature_flag_key": "new-key"}),
        ("GET", f"{base}/experiments/{experiment_id}/", None),
        ("PATCH", f"{base}/experiments/{experiment_id}/", {"name": "renamed"}),
        ("POST", f"{base}/experiments/{experiment_id}/launch/", None),
        ("GET", f"{base}/experiments/eligible_feature_flags/", None),
        ("GET", f"{base}/experiment_holdouts/", None),
        ("POST", f"{base}/experiment_holdouts/", {"name": "h", "filters": [{"rollout_percentage": 5}]}),
        ("GET", f"{base}/experiment_saved_metrics/", None),
    ]


class TestAuthentication:
    async def test_no_credentials_is_401_with_challenge(self, client, kit, app):
        experiment = await create_experiment(kit, **AUTH_EXPERIMENT)
        before = await row_counts(app, kit.project_id)
        for method, url, body in routes(kit, experiment["id"]):
            response = await client.request(method, url, json=body)
            assert response.status_code == 401, (method, url)
            assert response.json() == NOT_AUTHENTICATED
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert await row_counts(app, kit.project_id) == before

    async def test_unknown_key_is_401_authentication_failed(self, client, kit, app):
        experiment = await create_experiment(kit, **AUTH_EXPERIMENT)
        before = await row_counts(app, kit.project_id)
        revoked_looking = {"Authorization": "Bearer phx_" + "x" * 43}
        for method, url, body in routes(kit, experiment["id"]):
            response = await client.request(method, url, json=body, headers=revoked_looking)
            assert response.status_code == 401, (method, url)
            assert response.json() == INVALID_KEY
            assert "www-authenticate" in response.headers
        assert await row_counts(app, kit.project_id) == before

    async def test_other_schemes_and_project_keys_do_not_authenticate(self, client, kit):
        url = f"{kit.base}/experiments/"
        basic = await client.get(url, headers={"Authorization": f"Basic {kit.personal_api_key}"})
        assert (basic.status_code, basic.json()) == (401, NOT_AUTHENTICATED)
        empty = await client.get(url, headers={"Authorization": "Bearer "})
        assert (empty.status_code, empty.json()) == (401, NOT_AUTHENTICATED)
        project_key = await client.get(url, headers={"Authorization": f"Bearer {kit.project_api_key}"})
        assert (project_key.status_code, project_key.json()) == (401, INVALID_KEY)


class TestScopes:
    async def test_read_scope_reads_but_every_write_is_403(self, client, kit, app):
        experiment = await create_experiment(kit, **AUTH_EXPERIMENT)
        headers, _ = await kit.key(["experiment:read"])
        before = await row_counts(app, kit.project_id)
        base = f"{kit.base}/experiments/"
        assert (await client.get(base, headers=headers)).json()["count"] == 1
        assert (await client.get(f"{base}{experiment['id']}/", headers=headers)).json()["id"] == experiment["id"]
        for method, url, body in (
            ("POST", base, {"name": "x", "feature_flag_key": "read-only"}),
            ("PATCH", f"{base}{experiment['id']}/", {"name": "renamed"}),
            ("POST", f"{base}{experiment['id']}/launch/", None),
            ("POST", f"{base}{experiment['id']}/end/", {}),
            ("POST", f"{kit.base}/experiment_saved_metrics/", {"name": "m"}),
        ):
            response = await client.request(method, url, json=body, headers=headers)
            assert response.status_code == 403, (method, url)
            assert response.json() == missing_scope("experiment:write")
        assert await row_counts(app, kit.project_id) == before
        stored = await load(app, Experiment, experiment["id"])
        assert (stored.name, stored.status) == ("Auth test", "draft")

    async def test_write_scope_implies_read(self, client, kit):
        headers, _ = await kit.key(["experiment:write"])
        created = await client.post(
            f"{kit.base}/experiments/", json={"name": "w", "feature_flag_key": "write-key"}, headers=headers
        )
        assert created.status_code == 201, created.text
        fetched = await client.get(f"{kit.base}/experiments/{created.json()['id']}/", headers=headers)
        assert fetched.status_code == 200
        assert fetched.json()["name"] == "w"

    async def test_star_grants_everything_and_other_objects_grant_nothing(self, client, kit):
        experiment = await create_experiment(kit, **AUTH_EXPERIMENT)
        star, _ = await kit.key(["*"])
        for method, url, body in routes(kit, experiment["id"]):
            response = await client.request(method, url, json=body, headers=star)
            assert response.status_code < 300, (method, url, response.text)
        flags_only, _ = await kit.key(["feature_flag:write"])
        response = await client.get(f"{kit.base}/experiments/", headers=flags_only)
        assert (response.status_code, response.json()) == (403, missing_scope("experiment:read"))

    async def test_eligible_flags_need_feature_flag_read_even_with_experiment_write(self, client, kit):
        headers, _ = await kit.key(["experiment:write"])
        response = await client.get(f"{kit.base}/experiments/eligible_feature_flags/", headers=headers)
        assert (response.status_code, response.json()) == (403, missing_scope("feature_flag:read"))


class TestProjectIsolation:
    async def test_a_member_of_another_project_sees_nothing(self, client, kit, app):
        experiment = await create_experiment(kit, **AUTH_EXPERIMENT)
        outsider = await make_kit(app, client)
        before = await row_counts(app, kit.project_id)
        for method, url, body in routes(kit, experiment["id"]):
            response = await client.request(method, url, json=body, headers=outsider.headers)
            assert response.status_code in (403, 404), (method, url)
            assert response.json()["type"] in ("authentication_error", "invalid_request")
            assert "results" not in response.json()
            assert "Auth test" not in response.text
        assert await row_counts(app, kit.project_id) == before

    async def test_another_projects_experiment_through_my_project_is_404(self, client, kit, app):
        other = await make_kit(app, client)
        foreign = await create_experiment(other, name="Auth test", feature_flag_key="foreign-flag")
        base = f"{kit.base}/experiments/{foreign['id']}/"
        for method, url, body in (
            ("GET", base, None),
            ("PATCH", base, {"name": "stolen"}),
            ("POST", base + "launch/", None),
            ("POST", base + "end/", {}),
            ("POST", base + "ship_variant/", {"variant_key": "test"}),
        ):
            response = await client.request(method, url, json=body, headers=kit.headers)
            assert (response.status_code, response.json()) == (404, NOT_FOUND), (method, url)
        stored = await load(app, Experiment, foreign["id"])
        assert (stored.name, stored.status, stored.project_id) == ("Auth test", "draft", other.project_id)

    async def test_unknown_or_malformed_ids_are_404(self, client, kit):
        for url in (
            f"{kit.base}/experiments/999999/",
            f"{kit.base}/experiments/abc/",
            f"{kit.base}/experiments/99999999999999999999/",
            f"{kit.base}/experiment_holdouts/2147483648/",
            "/api/projects/999999999/experiments/",
            "/api/projects/abc/experiments/",
        ):
            response = await client.get(url, headers=kit.headers)
            assert response.status_code == 404, url
            assert response.json() == NOT_FOUND


class TestBadInput:
    async def test_malformed_json_is_a_parse_error(self, client, kit, app):
        experiment = await create_experiment(kit, **AUTH_EXPERIMENT)
        before = await row_counts(app, kit.project_id)
        json_headers = {**kit.headers, "Content-Type": "application/json"}
        for method, url in (
            ("POST", f"{kit.base}/experiments/"),
            ("PATCH", f"{kit.base}/experiments/{experiment['id']}/"),
            ("POST", f"{kit.base}/experiments/{experiment['id']}/end/"),
            ("POST", f"{kit.base}/experiment_holdouts/"),
            ("POST", f"{kit.base}/experiment_saved_metrics/"),
        ):
            response = await client.request(method, url, content=b'{"name": ', headers=json_headers)
            assert response.status_code == 400, (method, url)
            body = response.json()
            assert (body["type"], body["code"], body["attr"]) == ("invalid_request", "parse_error", None)
            assert body["detail"].startswith("JSON parse error")
        assert await row_counts(app, kit.project_id) == before

    async def test_a_body_that_is_not_an_object(self, client, kit, app):
        before = await row_counts(app, kit.project_id)
        for url in (f"{kit.base}/experiments/", f"{kit.base}/experiment_holdouts/"):
            response = await client.post(url, json=[{"name": "x"}], headers=kit.headers)
            assert response.status_code == 400
            assert response.json() == {
                "type": "validation_error", "code": "invalid_input",
                "detail": "Invalid data. Expected a dictionary, but got list.", "attr": None,
            }  # fmt: skip
        assert await row_counts(app, kit.project_id) == before

    async def test_wrong_types_unknown_choices_and_oversize_strings(self, client, kit, app):
        before = await row_counts(app, kit.project_id)
        cases = [
            ({"name": 5, "feature_flag_key": "k1"}, "invalid_input", "name"),
            ({"name": "x" * 401, "feature_flag_key": "k2"}, "max_length", "name"),
            ({"name": "n", "feature_flag_key": "k3", "description": "d" * 3001}, "max_length", "description"),
            ({"name": "n", "feature_flag_key": "k4", "type": "desktop"}, "invalid_choice", "type"),
            ({"name": "n", "feature_flag_key": "k5", "conclusion": "amazing"}, "invalid_choice", "conclusion"),
            ({"name": "n"}, "required", "feature_flag_key"),
            ({"name": "n", "feature_flag_key": "k6", "holdout_id": 999999}, "does_not_exist", "holdout_id"),
            ({"name": "n", "feature_flag_key": "bad key!"}, "invalid_key", "key"),
        ]
        for body, code, attr in cases:
            response = await client.post(f"{kit.base}/experiments/", json=body, headers=kit.headers)
            assert response.status_code == 400, (body, response.text)
            assert (response.json()["code"], response.json()["attr"]) == (code, attr), body
            assert response.json()["type"] == "validation_error"
        too_long = "x" * 401
        assert (await client.post(f"{kit.base}/experiment_holdouts/",
                                  json={"name": too_long, "filters": [{"rollout_percentage": 1}]},
                                  headers=kit.headers)).json()["code"] == "max_length"  # fmt: skip
        assert await row_counts(app, kit.project_id) == before

    async def test_bad_patch_and_action_bodies_change_nothing(self, client, kit, app):
        experiment = await create_experiment(kit, **AUTH_EXPERIMENT)
        before = await row_counts(app, kit.project_id)
        url = f"{kit.base}/experiments/{experiment['id']}/"
        for body, attr in (({"name": None}, "name"), ({"name": "x" * 401}, "name"), ({"holdout_id": 99999}, "holdout_id")):
            response = await client.patch(url, json=body, headers=kit.headers)
            assert response.status_code == 400, body
            assert response.json()["attr"] == attr
        end = await client.post(url + "end/", json={"conclusion": "amazing"}, headers=kit.headers)
        assert (end.status_code, end.json()["code"], end.json()["attr"]) == (400, "invalid_choice", "conclusion")
        ship = await client.post(url + "ship_variant/", json={}, headers=kit.headers)
        assert ship.json() == {"type": "validation_error", "code": "required", "detail": "This field is required.",
                               "attr": "variant_key"}  # fmt: skip
        assert await row_counts(app, kit.project_id) == before
        stored = await load(app, Experiment, experiment["id"])
        assert (stored.name, stored.status, stored.end_date) == ("Auth test", "draft", None)

    async def test_numbers_the_database_cannot_hold_are_400(self, client, kit, app):
        before = await row_counts(app, kit.project_id)
        response = await client.post(
            f"{kit.base}/experiments/", json={"name": "n", "feature_flag_key": "big", "holdout_id": 10**20},
            headers=kit.headers,
        )  # fmt: skip
        assert response.status_code == 400
        assert response.json()["type"] == "validation_error"
        assert await row_counts(app, kit.project_id) == before

    async def test_null_characters(self, client, kit, app, db_name):
        before = await row_counts(app, kit.project_id)
        response = await client.post(
            f"{kit.base}/experiment_holdouts/", json={"name": "a\u0000b", "filters": [{"rollout_percentage": 1}]},
            headers=kit.headers,
        )  # fmt: skip
        if db_name == "postgresql":
            assert response.status_code == 400
            assert response.json() == {"type": "validation_error", "code": "null_characters_not_allowed",
                                       "detail": "Null characters are not allowed.", "attr": None}  # fmt: skip
            assert await row_counts(app, kit.project_id) == before
        else:
            assert response.status_code == 201
            assert (await load(app, ExperimentHoldout, response.json()["id"])).name == "a\u0000b"

    async def test_oversize_body_is_413(self, client, kit, app):
        before = await row_counts(app, kit.project_id)
        limit = app.state.settings.max_body_bytes
        response = await client.post(
            f"{kit.base}/experiment_saved_metrics/",
            content=b'{"name": "' + b"x" * (limit + 1) + b'"}',
            headers={**kit.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"
        assert await row_counts(app, kit.project_id) == before

    async def test_non_finite_numbers_never_half_write(self, client, kit, app, db_name):
        """PostgreSQL's json type refuses NaN/Infinity: a 400, and the flag created first is rolled back."""
        before = await row_counts(app, kit.project_id)
        response = await client.post(
            f"{kit.base}/experiments/",
            content=b'{"name": "n", "feature_flag_key": "not-finite", "parameters": {"minimum_detectable_effect": NaN}}',
            headers={**kit.headers, "Content-Type": "application/json"},
        )
        if db_name == "postgresql":
            assert response.status_code == 400
            assert response.json()["code"] == "parse_error"
            assert await row_counts(app, kit.project_id) == before
        else:
            assert response.status_code == 201
            assert response.json()["parameters"]["minimum_detectable_effect"] is None
