"""The `experiments` console script, as operators and other tools call it (SPEC decision 11)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(sys.executable).with_name("experiments")


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(EXPERIMENTS), *args],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def printed_json(completed: subprocess.CompletedProcess) -> dict:
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, completed.stdout  # exactly one JSON object, nothing else on stdout
    return json.loads(lines[0])


@pytest.fixture
def database_url(db_name, database_urls) -> str:
    return database_urls[db_name]


async def test_bootstrap_prints_a_project_and_all_scope_keys(database_url, client):
    created = printed_json(run_cli(database_url, "bootstrap", "--project-name", "Scripted"))
    assert set(created) == {"project_id", "project_api_key", "personal_api_key"}
    assert created["project_api_key"].startswith("phc_") and created["personal_api_key"].startswith("phx_")
    headers = {"Authorization": f"Bearer {created['personal_api_key']}"}
    base = f"/api/projects/{created['project_id']}"
    made = await client.post(f"{base}/experiments/", json={"name": "CLI", "feature_flag_key": "cli-flag"}, headers=headers)
    assert made.status_code == 201, made.text
    assert (await client.get(f"{base}/feature_flags/", headers=headers)).json()["count"] == 1
    flags = await client.post("/flags/?v=2", json={"token": created["project_api_key"], "distinct_id": "someone"})
    assert flags.status_code == 200 and flags.json()["flags"] == {}  # the experiment's flag is off until launch


async def test_create_api_key_scopes_and_owner(database_url, client):
    project = printed_json(run_cli(database_url, "bootstrap", "--project-name", "Keys"))
    base = f"/api/projects/{project['project_id']}"
    reader = printed_json(run_cli(
        database_url, "create-api-key", "--project-id", str(project["project_id"]),
        "--scopes", "experiment:read,feature_flag:read", "--email", "reader@example.com",
    ))
    assert set(reader) == {"personal_api_key", "user_id"}
    headers = {"Authorization": f"Bearer {reader['personal_api_key']}"}
    assert (await client.get(f"{base}/experiments/", headers=headers)).status_code == 200
    denied = await client.post(f"{base}/experiments/", json={"name": "x", "feature_flag_key": "x"}, headers=headers)
    assert denied.status_code == 403
    assert denied.json()["detail"] == "API key missing required scope 'experiment:write'"

    again = printed_json(run_cli(
        database_url, "create-api-key", "--project-id", str(project["project_id"]),
        "--scopes", "*", "--email", "reader@example.com",
    ))
    assert again["user_id"] == reader["user_id"] and again["personal_api_key"] != reader["personal_api_key"]
    operator = printed_json(run_cli(
        database_url, "create-api-key", "--project-id", str(project["project_id"]), "--scopes", "experiment:write",
    ))
    assert operator["user_id"] != reader["user_id"]  # no --email: the bootstrap user


def test_create_api_key_refuses_bad_scopes_and_unknown_projects(database_url):
    bad_scope = run_cli(database_url, "create-api-key", "--project-id", "1", "--scopes", "experiment:admin")
    assert bad_scope.returncode == 2 and bad_scope.stdout == "" and "experiment:admin" in bad_scope.stderr
    missing = run_cli(database_url, "create-api-key", "--project-id", "999999", "--scopes", "*")
    assert missing.returncode == 1 and missing.stdout == "" and "999999" in missing.stderr


def test_migrate_is_idempotent(database_url):
    completed = run_cli(database_url, "migrate")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == ""
