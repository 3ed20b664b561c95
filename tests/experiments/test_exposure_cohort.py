"""`create_exposure_cohort_for_experiment/`: a static cohort of the persons exposed to an
experiment (as results count them), usable in flag filters; refusals write nothing. Also:
`copy_to_project/` honours the key's `scoped_teams`."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from experiments_service.auth.service import create_project, ensure_user, issue_personal_api_key
from experiments_service.models import Cohort, Experiment, Project

START = datetime.now(UTC) - timedelta(days=2)
VARIANTS = [{"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50}]


def at(minutes: float) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def exposure(distinct_id: str, flag: str, variant: str, minutes: float = 1) -> dict:
    properties = {"$feature_flag": flag, "$feature_flag_response": variant}
    return {"event": "$feature_flag_called", "distinct_id": distinct_id, "timestamp": at(minutes), "properties": properties}


def plain(name: str, distinct_id: str, minutes: float = 1, **properties) -> dict:
    return {"event": name, "distinct_id": distinct_id, "timestamp": at(minutes), "properties": properties}


async def capture(kit, *events: dict) -> None:
    batch = [{"uuid": str(uuid.uuid4()), **item} for item in events]
    response = await kit.client.post("/batch/", json={"api_key": kit.project_api_key, "batch": batch})
    assert response.status_code == 200, response.text


async def experiment(kit, *, started: bool = True, **extra) -> dict:
    key = f"exp-{uuid.uuid4().hex[:8]}"
    body = {"name": f"Checkout {key}", "feature_flag_key": key, "parameters": {"feature_flag_variants": VARIANTS},
            **({"start_date": START.isoformat()} if started else {}), **extra}  # fmt: skip
    response = await kit.client.post(f"{kit.base}/experiments/", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def make_cohort(kit, experiment_id: int, status: int = 201) -> dict:
    response = await kit.client.post(
        f"{kit.base}/experiments/{experiment_id}/create_exposure_cohort_for_experiment/", json={}, headers=kit.headers
    )
    assert response.status_code == status, response.text
    return response.json()


async def cohort_rows(app, project_id: int) -> int:
    async with app.state.db.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(Cohort).where(Cohort.project_id == project_id))


async def flag_on(kit, key: str, distinct_id: str) -> bool:
    response = await kit.client.post("/flags/?v=2", json={"token": kit.project_api_key, "distinct_id": distinct_id})
    assert response.status_code == 200, response.text
    return response.json()["flags"][key]["enabled"]


async def test_exposed_persons_become_a_static_cohort(app, kit):
    created = await experiment(kit)
    flag = created["feature_flag_key"]
    await capture(
        kit,
        exposure("anon-1", flag, "test", 1),
        plain("$identify", "user-1", 2, **{"$anon_distinct_id": "anon-1"}),
        exposure("user-1", flag, "test", 3),
        exposure("user-2", flag, "control", 1),
        exposure("someone", "another-flag", "test", 1),
        plain("pageview", "visitor", 1),
        exposure("too-early", flag, "test", -60),
    )
    body = await make_cohort(kit, created["id"])
    cohort = body["cohort"]
    assert set(body) == {"cohort"}
    assert cohort["name"] == f'Users exposed to experiment "{created["name"]}"'
    assert cohort["is_static"] is True and cohort["cohort_type"] == "static" and cohort["deleted"] is False
    assert cohort["count"] == 2  # anon-1 and user-1 are one person
    assert cohort["created_by"]["id"] == kit.user_id
    fetched = await kit.client.get(f"{kit.base}/cohorts/{cohort['id']}/", headers=kit.headers)
    assert fetched.status_code == 200 and fetched.json()["count"] == 2

    condition = {"type": "cohort", "key": "id", "value": cohort["id"], "operator": "in"}
    target = {"key": "exposed-only", "name": "exposed-only",
              "filters": {"groups": [{"properties": [condition], "rollout_percentage": 100}]}}  # fmt: skip
    response = await kit.client.post(f"{kit.base}/feature_flags/", json=target, headers=kit.headers)
    assert response.status_code == 201, response.text
    assert await flag_on(kit, "exposed-only", "user-1") is True
    assert await flag_on(kit, "exposed-only", "anon-1") is True
    assert await flag_on(kit, "exposed-only", "user-2") is True
    for outsider in ("someone", "visitor", "too-early", "never-seen"):
        assert await flag_on(kit, "exposed-only", outsider) is False


async def test_custom_exposure_event_decides_who_is_exposed(kit):
    created = await experiment(kit, exposure_criteria={"exposure_config": {
        "kind": "ExperimentEventExposureConfig", "event": "checkout_seen", "properties": []}})  # fmt: skip
    flag = created["feature_flag_key"]
    await capture(
        kit,
        plain("checkout_seen", "buyer", 1, **{f"$feature/{flag}": "test"}),
        exposure("flag-only", flag, "control", 1),
    )
    cohort = (await make_cohort(kit, created["id"]))["cohort"]
    assert cohort["count"] == 1


async def test_no_exposures_gives_an_empty_cohort(kit):
    created = await experiment(kit)
    assert (await make_cohort(kit, created["id"]))["cohort"]["count"] == 0


async def test_a_draft_is_refused_and_nothing_is_stored(app, kit):
    created = await experiment(kit, started=False)
    body = await make_cohort(kit, created["id"], status=400)
    assert body == {"type": "validation_error", "code": "invalid_input",
                    "detail": "Experiment does not have a start date", "attr": None}  # fmt: skip
    assert await cohort_rows(app, kit.project_id) == 0


async def test_unknown_experiment_is_404_and_read_scope_is_403(app, kit):
    await make_cohort(kit, 987654321, status=404)
    created = await experiment(kit)
    async with app.state.db.transaction() as session:
        project = await session.get(Project, kit.project_id)
        user = await ensure_user(session, f"reader-{uuid.uuid4().hex[:8]}@example.com", project)
        issued = await issue_personal_api_key(session, user, ["experiment:read"])
    response = await kit.client.post(
        f"{kit.base}/experiments/{created['id']}/create_exposure_cohort_for_experiment/",
        headers={"Authorization": f"Bearer {issued.secret}"},
    )
    assert response.status_code == 403, response.text
    assert await cohort_rows(app, kit.project_id) == 0


async def test_copy_to_project_refuses_a_target_outside_the_keys_scoped_teams(app, client):
    async with app.state.db.transaction() as session:
        first = await create_project(session, f"a-{uuid.uuid4().hex[:6]}")
        second = await create_project(session, f"b-{uuid.uuid4().hex[:6]}")
        user = await ensure_user(session, f"both-{uuid.uuid4().hex[:8]}@example.com", first)
        await ensure_user(session, user.email, second)
        issued = await issue_personal_api_key(session, user, ["*"], scoped_teams=[first.id])
    headers = {"Authorization": f"Bearer {issued.secret}"}
    made = await client.post(
        f"/api/projects/{first.id}/experiments/", json={"name": "Scoped", "feature_flag_key": "scoped"}, headers=headers
    )
    assert made.status_code == 201, made.text
    response = await client.post(
        f"/api/projects/{first.id}/experiments/{made.json()['id']}/copy_to_project/",
        json={"target_team_id": second.id}, headers=headers,
    )
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "You do not have write access to the target project."}
    async with app.state.db.sessionmaker() as session:
        copies = await session.scalar(select(func.count()).where(Experiment.project_id == second.id))
    assert copies == 0
