"""Key management over HTTP (`/api/personal_api_keys/`), `/api/users/@me/` and `/api/projects/`
(issue 11 item 2), with PostHog's shapes and messages; a key never manages keys wider than itself."""

import uuid

from sqlalchemy import func, select

from experiments_service.auth.service import create_project, ensure_user, issue_personal_api_key
from experiments_service.models import PersonalAPIKey, User

KEYS = "/api/personal_api_keys/"


async def user_with_projects(app, count: int = 2) -> tuple[list[int], int]:
    async with app.state.db.transaction() as session:
        projects = [await create_project(session, f"p-{uuid.uuid4().hex[:6]}") for _ in range(count)]
        user = await ensure_user(session, f"keys-{uuid.uuid4().hex[:8]}@example.com", projects[0])
        for project in projects[1:]:
            await ensure_user(session, user.email, project)
    return [project.id for project in projects], user.id


async def mint(app, user_id: int, scopes: list[str], scoped_teams: list[int] | None = None) -> dict[str, str]:
    async with app.state.db.transaction() as session:
        user = await session.get(User, user_id)
        issued = await issue_personal_api_key(session, user, scopes, label="test", scoped_teams=scoped_teams)
    return {"Authorization": f"Bearer {issued.secret}"}


async def key_count(app, user_id: int) -> int:
    async with app.state.db.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(PersonalAPIKey).where(PersonalAPIKey.user_id == user_id))


def denied(detail: str) -> dict:
    return {"type": "authentication_error", "code": "permission_denied", "detail": detail, "attr": None}


BEYOND = denied("A personal API key can only manage keys within its own scopes and projects.")


class TestCreate:
    async def test_create_shows_the_secret_once_and_the_key_works_only_on_its_project(self, client, app):
        (first, second), user_id = await user_with_projects(app)
        admin = await mint(app, user_id, ["*"])
        created = await client.post(
            KEYS, json={"label": "ci", "scopes": ["experiment:read"], "scoped_teams": [first]}, headers=admin
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["value"].startswith("phx_") and body["mask_value"] == f"{body['value'][:4]}...{body['value'][-4:]}"
        assert {k: body[k] for k in ("label", "scopes", "scoped_teams", "user_id", "last_used_at", "last_rolled_at")} == {
            "label": "ci", "scopes": ["experiment:read"], "scoped_teams": [first], "user_id": user_id,
            "last_used_at": None, "last_rolled_at": None,
        }
        assert body["scoped_organizations"] is None
        new_key = {"Authorization": f"Bearer {body['value']}"}
        assert (await client.get(f"/api/projects/{first}/experiments/", headers=new_key)).status_code == 200
        assert (await client.get(f"/api/projects/{second}/experiments/", headers=new_key)).status_code == 403
        listed = await client.get(KEYS, headers=admin)
        assert all(row["value"] is None for row in listed.json())
        assert body["id"] in [row["id"] for row in listed.json()]

    async def test_invalid_bodies_are_400_and_store_nothing(self, client, app):
        (first, _), user_id = await user_with_projects(app)
        admin = await mint(app, user_id, ["*"])
        async with app.state.db.transaction() as session:
            foreign = await create_project(session, "not mine")
        before = await key_count(app, user_id)
        for body, expected in (
            ({"label": "x", "scopes": ["invalid"]}, ("invalid_input", "Invalid scope: invalid", "scopes")),
            ({"label": "x", "scopes": ["experiment:admin"]}, ("invalid_input", "Invalid scope: experiment:admin", "scopes")),
            ({"label": "x", "scopes": []}, ("empty", "This list may not be empty.", "scopes")),
            ({"label": "x"}, ("required", "This field is required.", "scopes")),
            ({"label": "", "scopes": ["*"]}, ("blank", "This field may not be blank.", "label")),
            (
                {"label": "x", "scopes": ["*"], "scoped_teams": [first, foreign.id]},
                ("invalid_input", "You must be a member of all teams that you are scoping the key to.", "scoped_teams"),
            ),
        ):
            response = await client.post(KEYS, json=body, headers=admin)
            assert response.status_code == 400, body
            assert response.json() == {"type": "validation_error", "code": expected[0], "detail": expected[1], "attr": expected[2]}
        assert await key_count(app, user_id) == before

    async def test_a_key_cannot_mint_a_wider_key(self, client, app):
        (first, second), user_id = await user_with_projects(app)
        narrow = await mint(app, user_id, ["experiment:read", "personal_api_key:write"], scoped_teams=[first])
        before = await key_count(app, user_id)
        for body in (
            {"label": "x", "scopes": ["*"]},
            {"label": "x", "scopes": ["experiment:write"]},
            {"label": "x", "scopes": ["experiment:read"], "scoped_teams": []},
            {"label": "x", "scopes": ["experiment:read"], "scoped_teams": [second]},
            {"label": "x", "scopes": ["experiment:read"], "scoped_teams": [first, second]},
        ):
            response = await client.post(KEYS, json=body, headers=narrow)
            assert (response.status_code, response.json()) == (403, BEYOND), body
        assert await key_count(app, user_id) == before
        inherited = await client.post(KEYS, json={"label": "x", "scopes": ["experiment:read"]}, headers=narrow)
        assert inherited.status_code == 201 and inherited.json()["scoped_teams"] == [first]

    async def test_management_needs_its_scope(self, client, app):
        (first, _), user_id = await user_with_projects(app)
        reader = await mint(app, user_id, ["experiment:read", "personal_api_key:read"])
        response = await client.post(KEYS, json={"label": "x", "scopes": ["experiment:read"]}, headers=reader)
        assert (response.status_code, response.json()) == (403, denied("API key missing required scope 'personal_api_key:write'"))
        plain = await mint(app, user_id, ["experiment:read"])
        listed = await client.get(KEYS, headers=plain)
        assert (listed.status_code, listed.json()) == (403, denied("API key missing required scope 'personal_api_key:read'"))
        assert (await client.get(KEYS)).status_code == 401

    async def test_at_most_ten_keys_per_user(self, client, app):
        _, user_id = await user_with_projects(app)
        admin = await mint(app, user_id, ["*"])
        for index in range(9):
            assert (await client.post(KEYS, json={"label": f"k{index}", "scopes": ["*"]}, headers=admin)).status_code == 201
        refused = await client.post(KEYS, json={"label": "eleventh", "scopes": ["*"]}, headers=admin)
        assert refused.status_code == 400
        assert refused.json()["detail"] == (
            "You can only have 10 personal API keys. Remove an existing key before creating a new one."
        )
        assert await key_count(app, user_id) == 10


class TestReadRollDelete:
    async def test_a_key_reads_itself_without_any_scope(self, client, app):
        (first, _), user_id = await user_with_projects(app)
        plain = await mint(app, user_id, ["experiment:read"], scoped_teams=[first])
        me = await client.get(KEYS + "@current/", headers=plain)
        assert me.status_code == 200
        assert me.json()["scopes"] == ["experiment:read"] and me.json()["value"] is None
        by_id = await client.get(f"{KEYS}{me.json()['id']}/", headers=plain)
        assert by_id.json() == {**me.json(), "last_used_at": by_id.json()["last_used_at"]}
        other = await mint(app, user_id, ["experiment:read"], scoped_teams=[first])
        other_id = (await client.get(KEYS + "@current/", headers=other)).json()["id"]
        refused = await client.get(f"{KEYS}{other_id}/", headers=plain)
        assert (refused.status_code, refused.json()) == (403, denied("API key missing required scope 'personal_api_key:read'"))

    async def test_list_masks_and_hides_wider_keys_and_other_users(self, client, app, kit):
        (first, second), user_id = await user_with_projects(app)
        wide = await mint(app, user_id, ["*"])
        narrow = await mint(app, user_id, ["*"], scoped_teams=[first])
        await mint(app, user_id, ["experiment:read"], scoped_teams=[second])
        wide_list = (await client.get(KEYS, headers=wide)).json()
        narrow_list = (await client.get(KEYS, headers=narrow)).json()
        assert len(wide_list) == 3 and all(row["user_id"] == user_id for row in wide_list)
        assert [row["scoped_teams"] for row in narrow_list] == [[first]]
        wide_id = next(row["id"] for row in wide_list if row["scoped_teams"] is None)
        for method, url in (("GET", f"{KEYS}{wide_id}/"), ("POST", f"{KEYS}{wide_id}/roll/"), ("DELETE", f"{KEYS}{wide_id}/")):
            response = await client.request(method, url, headers=narrow)
            assert response.status_code == 404, (method, url)
        kit_key = (await client.get(KEYS + "@current/", headers=kit.headers)).json()["id"]
        assert (await client.delete(f"{KEYS}{kit_key}/", headers=wide)).status_code == 404
        assert await key_count(app, user_id) == 3

    async def test_roll_replaces_the_secret(self, client, app):
        (first, _), user_id = await user_with_projects(app)
        admin = await mint(app, user_id, ["*"])
        target = await client.post(KEYS, json={"label": "rolled", "scopes": ["experiment:read"], "scoped_teams": [first]}, headers=admin)
        old = {"Authorization": f"Bearer {target.json()['value']}"}
        rolled = await client.post(f"{KEYS}{target.json()['id']}/roll/", headers=admin)
        assert rolled.status_code == 200
        body = rolled.json()
        assert body["id"] == target.json()["id"] and body["value"] != target.json()["value"]
        assert body["mask_value"] != target.json()["mask_value"] and body["last_rolled_at"] is not None
        assert (body["scopes"], body["scoped_teams"], body["created_at"]) == (
            ["experiment:read"], [first], target.json()["created_at"]
        )
        assert (await client.get(f"/api/projects/{first}/experiments/", headers=old)).status_code == 401
        new = {"Authorization": f"Bearer {body['value']}"}
        assert (await client.get(f"/api/projects/{first}/experiments/", headers=new)).status_code == 200
        itself = await client.post(KEYS + "@current/roll/", headers=admin)
        assert itself.status_code == 200
        assert (await client.get(KEYS, headers=admin)).status_code == 401

    async def test_delete_revokes(self, client, app):
        (first, _), user_id = await user_with_projects(app)
        admin = await mint(app, user_id, ["*"])
        target = await client.post(KEYS, json={"label": "gone", "scopes": ["*"], "scoped_teams": [first]}, headers=admin)
        revoked = {"Authorization": f"Bearer {target.json()['value']}"}
        deleted = await client.delete(f"{KEYS}{target.json()['id']}/", headers=admin)
        assert deleted.status_code == 204 and deleted.content == b""
        assert (await client.get(f"/api/projects/{first}/experiments/", headers=revoked)).status_code == 401
        assert (await client.delete(f"{KEYS}{target.json()['id']}/", headers=admin)).status_code == 404
        assert (await client.get(f"{KEYS}abc/", headers=admin)).status_code == 404


class TestUserAndProjects:
    async def test_me_renders_the_user_and_its_single_project(self, client, app):
        (first, _), user_id = await user_with_projects(app)
        scoped = await mint(app, user_id, ["user:read"], scoped_teams=[first])
        me = await client.get("/api/users/@me/", headers=scoped)
        assert me.status_code == 200
        assert me.json()["id"] == user_id and me.json()["email"].startswith("keys-")
        assert me.json()["team"]["id"] == first and me.json()["team"]["api_token"].startswith("phc_")
        unscoped = await mint(app, user_id, ["*"])
        assert (await client.get("/api/users/@me/", headers=unscoped)).json()["team"] is None
        plain = await mint(app, user_id, ["experiment:read"])
        refused = await client.get("/api/users/@me/", headers=plain)
        assert (refused.status_code, refused.json()) == (403, denied("API key missing required scope 'user:read'"))

    async def test_projects_lists_what_the_key_may_see(self, client, app, kit):
        (first, second), user_id = await user_with_projects(app)
        unscoped = await mint(app, user_id, ["project:read"])
        scoped = await mint(app, user_id, ["project:read"], scoped_teams=[second])
        everything = (await client.get("/api/projects/", headers=unscoped)).json()
        assert (everything["count"], [row["id"] for row in everything["results"]]) == (2, [first, second])
        narrowed = (await client.get("/api/projects/", headers=scoped)).json()
        assert [row["id"] for row in narrowed["results"]] == [second]
        assert (await client.get(f"/api/projects/{second}/", headers=scoped)).json()["id"] == second
        outside = await client.get(f"/api/projects/{first}/", headers=scoped)
        assert outside.status_code == 403
        assert (await client.get(f"/api/projects/{kit.project_id}/", headers=unscoped)).status_code == 403
        plain = await mint(app, user_id, ["experiment:read"])
        assert (await client.get("/api/projects/", headers=plain)).status_code == 403


class TestHostileInput:
    async def test_out_of_range_and_malformed_values_are_4xx_and_store_nothing(self, client, app):
        _, user_id = await user_with_projects(app)
        admin = await mint(app, user_id, ["*"])
        before = await key_count(app, user_id)
        for body in (
            {"label": "x", "scopes": ["*"], "scoped_teams": [2**63]},
            {"label": "x", "scopes": ["*"], "scoped_teams": [-1]},
            {"label": "x", "scopes": ["*"], "scoped_teams": "all"},
            {"label": "x", "scopes": "*"},
            {"label": "x" * 41, "scopes": ["*"]},
            {"label": "nul\u0000", "scopes": ["*"]},
            {"label": "x", "scopes": ["experiment:read\u0000"]},
            [],
        ):
            response = await client.post(KEYS, json=body, headers=admin)
            assert 400 <= response.status_code < 500, (body, response.text)
            assert response.json()["type"] == "validation_error" or response.json()["code"] == "parse_error"
        for path in (f"{KEYS}{2**63}/", f"{KEYS}-1/", f"{KEYS}0/roll/", "/api/projects/99999999999999999999/"):
            response = await client.request("POST" if path.endswith("roll/") else "GET", path, headers=admin)
            assert response.status_code in (403, 404), (path, response.text)
        assert await key_count(app, user_id) == before


class TestUpdate:
    async def test_patch_changes_label_scopes_and_projects_within_the_callers_rights(self, client, app):
        (first, second), user_id = await user_with_projects(app)
        admin = await mint(app, user_id, ["*"])
        made = await client.post(KEYS, json={"label": "ci", "scopes": ["experiment:read"], "scoped_teams": [first]}, headers=admin)
        url = f"{KEYS}{made.json()['id']}/"
        changed = await client.patch(url, json={"label": "ci-2", "scopes": ["experiment:write"]}, headers=admin)
        assert changed.status_code == 200
        assert (changed.json()["label"], changed.json()["scopes"], changed.json()["scoped_teams"]) == (
            "ci-2", ["experiment:write"], [first]
        )
        assert changed.json()["value"] is None
        moved = await client.patch(url, json={"scoped_teams": [second]}, headers=admin)
        assert moved.json()["scoped_teams"] == [second]
        key = {"Authorization": f"Bearer {made.json()['value']}"}
        assert (await client.get(f"/api/projects/{first}/experiments/", headers=key)).status_code == 403
        assert (await client.get(f"/api/projects/{second}/experiments/", headers=key)).status_code == 200
        empty = await client.patch(url, json={"scopes": []}, headers=admin)
        assert empty.status_code == 400 and empty.json()["attr"] == "scopes"

    async def test_a_key_cannot_widen_itself_or_others(self, client, app):
        (first, second), user_id = await user_with_projects(app)
        narrow = await mint(app, user_id, ["experiment:read", "personal_api_key:write"], scoped_teams=[first])
        for body in ({"scopes": ["*"]}, {"scoped_teams": [first, second]}, {"scoped_teams": []}, {"scoped_teams": None}):
            response = await client.patch(KEYS + "@current/", json=body, headers=narrow)
            assert (response.status_code, response.json()) == (403, BEYOND), body
        me = (await client.get(KEYS + "@current/", headers=narrow)).json()
        assert (me["scopes"], me["scoped_teams"]) == (["experiment:read", "personal_api_key:write"], [first])
        narrowed = await client.patch(KEYS + "@current/", json={"scopes": ["experiment:read", "personal_api_key:write"], "label": "mine"}, headers=narrow)
        assert narrowed.status_code == 200 and narrowed.json()["label"] == "mine"
