"""Project-scoped personal API keys (SPEC decision 12, issue 11 item 1): a key reaches only the
projects in its `scoped_teams`, whatever its user's memberships, through the API and the CLI."""

import uuid

import pytest
from sqlalchemy import select

from experiments_service.auth.repository import AuthRepository
from experiments_service.auth.service import create_project, ensure_user, issue_personal_api_key
from experiments_service.models import Experiment, PersonalAPIKey
from tests.test_cli import printed_json, run_cli


@pytest.fixture
def database_url(db_name, database_urls) -> str:
    return database_urls[db_name]


def outside_scope(project_id: int) -> dict:
    return {
        "type": "authentication_error",
        "code": "permission_denied",
        "detail": f"API key does not have access to the requested project: ID {project_id}.",
        "attr": None,
    }


async def two_projects_one_user(app, scoped_to_first: bool = True) -> tuple[int, int, dict[str, str]]:
    """Projects A and B with one user who is a member of both; a `*` key scoped to A (or to none)."""
    async with app.state.db.transaction() as session:
        first = await create_project(session, f"a-{uuid.uuid4().hex[:6]}")
        second = await create_project(session, f"b-{uuid.uuid4().hex[:6]}")
        user = await ensure_user(session, f"both-{uuid.uuid4().hex[:8]}@example.com", first)
        await ensure_user(session, user.email, second)
        issued = await issue_personal_api_key(
            session, user, ["*"], scoped_teams=[first.id] if scoped_to_first else None
        )
    return first.id, second.id, {"Authorization": f"Bearer {issued.secret}"}


async def experiment_in(client, project_id: int, headers: dict, key: str) -> dict:
    made = await client.post(
        f"/api/projects/{project_id}/experiments/", json={"name": "Scoped", "feature_flag_key": key}, headers=headers
    )
    assert made.status_code == 201, made.text
    return made.json()


class TestScopedTeams:
    async def test_a_key_scoped_to_one_project_is_refused_on_another_it_is_member_of(self, client, app):
        first, second, headers = await two_projects_one_user(app)
        _, _, unscoped = await two_projects_one_user(app, scoped_to_first=False)
        assert (await client.get(f"/api/projects/{first}/experiments/", headers=headers)).status_code == 200
        for method, path, body in (
            ("GET", "experiments/", None),
            ("POST", "experiments/", {"name": "x", "feature_flag_key": "nope"}),
            ("GET", "feature_flags/", None),
            ("GET", "experiment_holdouts/", None),
        ):
            response = await client.request(method, f"/api/projects/{second}/{path}", json=body, headers=headers)
            assert (response.status_code, response.json()) == (403, outside_scope(second)), (method, path)
        async with app.state.db.sessionmaker() as session:
            assert (await session.execute(select(Experiment).where(Experiment.project_id == second))).first() is None
        # membership still applies to an unscoped key: it reaches only its user's projects
        assert (await client.get(f"/api/projects/{second}/experiments/", headers=unscoped)).status_code == 403

    async def test_scope_is_checked_before_the_project_and_a_missing_project_is_404(self, client, app):
        first, second, headers = await two_projects_one_user(app)
        missing = await client.get("/api/projects/999999999/experiments/", headers=headers)
        assert missing.status_code == 404

    async def test_local_evaluation_definitions_respect_the_scope(self, client, app):
        first, second, headers = await two_projects_one_user(app)
        async with app.state.db.sessionmaker() as session:
            repo = AuthRepository(session)
            tokens = {pid: (await repo.project(pid)).api_token for pid in (first, second)}
        ok = await client.get(f"/api/feature_flag/local_evaluation?token={tokens[first]}", headers=headers)
        assert ok.status_code == 200, ok.text
        for path in ("/flags/definitions", "/api/feature_flag/local_evaluation"):
            refused = await client.get(f"{path}?token={tokens[second]}", headers=headers)
            assert (refused.status_code, refused.json()) == (403, outside_scope(second)), path

    async def test_current_names_the_one_scoped_project(self, client, app):
        first, second, headers = await two_projects_one_user(app)
        made = await experiment_in(client, first, headers, "current-flag")
        listed = await client.get("/api/projects/@current/experiments/", headers=headers)
        assert listed.status_code == 200
        assert [row["id"] for row in listed.json()["results"]] == [made["id"]]
        holdouts = await client.get("/api/projects/@current/experiment_holdouts/", headers=headers)
        assert holdouts.status_code == 200
        project = await client.get("/api/projects/@current/", headers=headers)
        assert project.status_code == 200 and project.json()["id"] == first
        _, _, unscoped = await two_projects_one_user(app, scoped_to_first=False)
        refused = await client.get("/api/projects/@current/experiments/", headers=unscoped)
        assert refused.status_code == 404
        assert refused.json()["detail"] == "@current names a project only for a key scoped to exactly one project."

    async def test_last_used_at_is_written_once_not_per_request(self, client, app, kit):
        async with app.state.db.sessionmaker() as session:
            key = (await session.execute(select(PersonalAPIKey).where(PersonalAPIKey.user_id == kit.user_id))).scalar_one()
            assert key.last_used_at is None
        for _ in range(3):
            assert (await client.get(f"{kit.base}/experiments/", headers=kit.headers)).status_code == 200
        async with app.state.db.sessionmaker() as session:
            first_use = (await session.get(PersonalAPIKey, key.id)).last_used_at
        assert first_use is not None
        assert (await client.get(f"{kit.base}/feature_flags/", headers=kit.headers)).status_code == 200
        async with app.state.db.sessionmaker() as session:
            assert (await session.get(PersonalAPIKey, key.id)).last_used_at == first_use


class TestCLIKeysAreScoped:
    """The defect of issue 11 item 1: A's bootstrap key read and PATCHed B."""

    async def test_a_bootstrap_key_cannot_reach_another_bootstrapped_project(self, database_url, client):
        first = printed_json(run_cli(database_url, "bootstrap", "--project-name", "Team A"))
        second = printed_json(run_cli(database_url, "bootstrap", "--project-name", "Team B"))
        a_key = {"Authorization": f"Bearer {first['personal_api_key']}"}
        b_key = {"Authorization": f"Bearer {second['personal_api_key']}"}
        b_experiment = await experiment_in(client, second["project_id"], b_key, "team-b-flag")
        b_url = f"/api/projects/{second['project_id']}/experiments/{b_experiment['id']}/"
        refused = (403, outside_scope(second["project_id"]))
        read = await client.get(b_url, headers=a_key)
        assert (read.status_code, read.json()) == refused
        patched = await client.patch(b_url, json={"name": "taken over"}, headers=a_key)
        assert (patched.status_code, patched.json()) == refused
        listed = await client.get(f"/api/projects/{second['project_id']}/experiments/", headers=a_key)
        assert (listed.status_code, listed.json()) == refused
        assert (await client.get(b_url, headers=b_key)).json()["name"] == "Scoped"
        projects = await client.get("/api/projects/", headers=a_key)
        assert [row["id"] for row in projects.json()["results"]] == [first["project_id"]]

    async def test_create_api_key_without_email_is_scoped_to_its_project(self, database_url, client):
        first = printed_json(run_cli(database_url, "bootstrap", "--project-name", "Keys A"))
        second = printed_json(run_cli(database_url, "bootstrap", "--project-name", "Keys B"))
        reader = printed_json(run_cli(
            database_url, "create-api-key", "--project-id", str(first["project_id"]), "--scopes", "experiment:read",
        ))
        headers = {"Authorization": f"Bearer {reader['personal_api_key']}"}
        assert (await client.get(f"/api/projects/{first['project_id']}/experiments/", headers=headers)).status_code == 200
        other = await client.get(f"/api/projects/{second['project_id']}/experiments/", headers=headers)
        assert (other.status_code, other.json()) == (403, outside_scope(second["project_id"]))

    async def test_all_projects_widens_a_key_to_its_users_projects(self, database_url, client):
        first = printed_json(run_cli(database_url, "bootstrap", "--project-name", "Wide A"))
        second = printed_json(run_cli(database_url, "bootstrap", "--project-name", "Wide B"))
        email = f"ops-{uuid.uuid4().hex[:8]}@example.com"
        scoped = printed_json(run_cli(
            database_url, "create-api-key", "--project-id", str(second["project_id"]), "--scopes", "experiment:read",
            "--email", email,
        ))
        wide = printed_json(run_cli(
            database_url, "create-api-key", "--project-id", str(first["project_id"]), "--scopes", "experiment:read",
            "--email", email, "--all-projects",
        ))
        assert wide["user_id"] == scoped["user_id"]
        wide_headers = {"Authorization": f"Bearer {wide['personal_api_key']}"}
        scoped_headers = {"Authorization": f"Bearer {scoped['personal_api_key']}"}
        for project in (first, second):
            url = f"/api/projects/{project['project_id']}/experiments/"
            assert (await client.get(url, headers=wide_headers)).status_code == 200
        refused = await client.get(f"/api/projects/{first['project_id']}/experiments/", headers=scoped_headers)
        assert (refused.status_code, refused.json()) == (403, outside_scope(first["project_id"]))

    async def test_reuse_existing_keeps_its_shape_and_is_scoped(self, database_url, client):
        printed_json(run_cli(database_url, "bootstrap", "--project-name", "Reused"))
        again = printed_json(run_cli(database_url, "bootstrap", "--project-name", "ignored", "--reuse-existing"))
        assert set(again) == {"project_id", "project_api_key", "personal_api_key"}
        headers = {"Authorization": f"Bearer {again['personal_api_key']}"}
        me = await client.get("/api/personal_api_keys/@current/", headers=headers)
        assert me.status_code == 200
        assert me.json()["scoped_teams"] == [again["project_id"]] and me.json()["scopes"] == ["*"]
        assert (await client.get(f"/api/projects/{again['project_id']}/experiments/", headers=headers)).status_code == 200
