"""Concurrent lifecycle calls on one experiment: exactly one launch wins; pause/resume stay consistent.

`asyncio.gather` over the ASGI client interleaves the requests at every await; on PostgreSQL each
request has its own pooled connection, so the row locks and version checks are really exercised.
On SQLite the single pooled connection serialises them, and the same invariants must hold.
"""

import asyncio
from collections import Counter

from sqlalchemy import func, select

from experiments_service.models import ActivityLog, Experiment, FeatureFlag
from tests.factories import create_experiment, load

CONCURRENCY = 20
WRONG_STATE = {
    "pause": {"Experiment is already paused."},
    "resume": {"Experiment is not paused."},
}


async def action(client, kit, experiment_id: int, name: str):
    return await client.post(f"{kit.base}/experiments/{experiment_id}/{name}/", headers=kit.headers)


async def test_twenty_concurrent_launches_exactly_one_wins(client, kit, app):
    experiment = await create_experiment(kit, name="Concurrent race-launch", feature_flag_key="race-launch")
    responses = await asyncio.gather(*(action(client, kit, experiment["id"], "launch") for _ in range(CONCURRENCY)))

    assert Counter(r.status_code for r in responses) == {200: 1, 400: CONCURRENCY - 1}, [r.text for r in responses]
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert winner["status"] == "running"
    assert winner["feature_flag"]["active"] is True
    for response in responses:
        if response.status_code == 400:
            assert response.json() == {
                "type": "validation_error", "code": "invalid_input",
                "detail": "Experiment has already been launched.", "attr": None,
            }  # fmt: skip

    stored = await load(app, Experiment, experiment["id"])
    assert stored.status == "running"
    assert stored.start_date is not None
    assert stored.start_date.isoformat().replace("+00:00", "Z") == winner["start_date"]
    flag = await load(app, FeatureFlag, experiment["feature_flag"]["id"])
    assert flag.active is True
    assert flag.version == experiment["feature_flag"]["version"] + 1
    async with app.state.db.sessionmaker() as session:
        flag_changes = await session.scalar(
            select(func.count()).select_from(ActivityLog).where(
                ActivityLog.project_id == kit.project_id,
                ActivityLog.scope == "FeatureFlag",
                ActivityLog.item_id == str(flag.id),
                ActivityLog.activity == "updated",
            )
        )
    assert flag_changes == 1


async def test_concurrent_pause_and_resume_keep_status_and_flag_consistent(client, kit, app):
    experiment = await create_experiment(kit, name="Concurrent race-pause", feature_flag_key="race-pause")
    assert (await action(client, kit, experiment["id"], "launch")).status_code == 200
    names = ["pause" if index % 2 == 0 else "resume" for index in range(CONCURRENCY)]
    responses = await asyncio.gather(*(action(client, kit, experiment["id"], name) for name in names))

    for name, response in zip(names, responses, strict=True):
        assert response.status_code in (200, 400, 409), response.text
        body = response.json()
        if response.status_code == 200:
            assert (body["status"] == "paused") == (body["feature_flag"]["active"] is False)
            assert body["status"] == ("paused" if name == "pause" else "running")
        elif response.status_code == 400:
            assert body["detail"] in WRONG_STATE[name]
    assert any(r.status_code == 200 for r in responses)

    stored = await load(app, Experiment, experiment["id"])
    flag = await load(app, FeatureFlag, experiment["feature_flag"]["id"])
    assert stored.status in ("running", "paused")
    assert (stored.status == "paused") == (flag.active is False)
    assert stored.end_date is None
    final = (await client.get(f"{kit.base}/experiments/{experiment['id']}/", headers=kit.headers)).json()
    assert (final["status"] == "paused") == (final["feature_flag"]["active"] is False)


async def test_alternating_pause_resume_sequence_ends_where_the_last_success_left_it(client, kit, app):
    """Each success flips the state, so the counts of successes decide the final state."""
    experiment = await create_experiment(kit, name="Concurrent race-flip", feature_flag_key="race-flip")
    assert (await action(client, kit, experiment["id"], "launch")).status_code == 200
    names = ["pause", "resume"] * (CONCURRENCY // 2)
    responses = await asyncio.gather(*(action(client, kit, experiment["id"], name) for name in names))
    succeeded = Counter(name for name, r in zip(names, responses, strict=True) if r.status_code == 200)
    assert all(r.status_code < 500 for r in responses)
    # Starting from running, successful calls can only alternate pause, resume, pause, ...
    assert succeeded["pause"] - succeeded["resume"] in (0, 1), succeeded
    stored = await load(app, Experiment, experiment["id"])
    flag = await load(app, FeatureFlag, experiment["feature_flag"]["id"])
    expected = "paused" if succeeded["pause"] > succeeded["resume"] else "running"
    assert stored.status == expected
    assert flag.active is (expected == "running")


async def test_twenty_concurrent_ends_stop_the_experiment_once(client, kit, app):
    experiment = await create_experiment(kit, name="Concurrent race-end", feature_flag_key="race-end")
    assert (await action(client, kit, experiment["id"], "launch")).status_code == 200
    responses = await asyncio.gather(
        *(client.post(f"{kit.base}/experiments/{experiment['id']}/end/", json={"conclusion": "won"},
                      headers=kit.headers) for _ in range(CONCURRENCY))
    )  # fmt: skip
    assert Counter(r.status_code for r in responses) == {200: 1, 400: CONCURRENCY - 1}
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert {r.json()["detail"] for r in responses if r.status_code == 400} == {"Experiment has already ended."}
    stored = await load(app, Experiment, experiment["id"])
    assert stored.status == "stopped"
    assert stored.end_date.isoformat().replace("+00:00", "Z") == winner["end_date"]
    assert stored.conclusion == "won"


async def test_concurrent_creates_with_one_new_flag_key_make_one_flag(client, kit, app):
    """Racing creates may link the new flag or be refused, but never duplicate it or fail with 5xx."""
    responses = await asyncio.gather(
        *(client.post(f"{kit.base}/experiments/", json={"name": f"Racer {n}", "feature_flag_key": "shared-new-key"},
                      headers=kit.headers) for n in range(10))
    )  # fmt: skip
    assert all(r.status_code in (201, 400, 409) for r in responses), [r.text for r in responses]
    created = [r.json() for r in responses if r.status_code == 201]
    assert created
    async with app.state.db.sessionmaker() as session:
        flags = (
            await session.execute(
                select(FeatureFlag).where(FeatureFlag.project_id == kit.project_id, FeatureFlag.key == "shared-new-key")
            )
        ).scalars().all()
        experiments = (
            await session.execute(select(Experiment).where(Experiment.project_id == kit.project_id))
        ).scalars().all()
    assert len(flags) == 1
    assert {e.feature_flag_id for e in experiments} == {flags[0].id}
    assert sorted(e.id for e in experiments) == sorted(c["id"] for c in created)


async def test_concurrent_holdout_changes_leave_every_flag_matching_the_holdout(client, kit, app):
    holdout = (
        await client.post(
            f"{kit.base}/experiment_holdouts/", json={"name": "Shared", "filters": [{"rollout_percentage": 5}]},
            headers=kit.headers,
        )
    ).json()  # fmt: skip
    experiments = [
        await create_experiment(kit, name=f"Concurrent held-{n}", feature_flag_key=f"held-{n}") for n in range(3)
    ]
    for experiment in experiments:
        patched = await client.patch(
            f"{kit.base}/experiments/{experiment['id']}/", json={"holdout_id": holdout["id"]}, headers=kit.headers
        )
        assert patched.status_code == 200, patched.text
    launch = action(client, kit, experiments[0]["id"], "launch")
    changes = [
        client.patch(f"{kit.base}/experiment_holdouts/{holdout['id']}/",
                     json={"filters": [{"properties": [], "rollout_percentage": 10 * n}]}, headers=kit.headers)
        for n in range(10)
    ]  # fmt: skip
    responses = await asyncio.gather(launch, *changes)
    assert all(r.status_code in (200, 409) for r in responses), [r.text for r in responses]
    assert responses[0].status_code == 200

    final = (await client.get(f"{kit.base}/experiment_holdouts/{holdout['id']}/", headers=kit.headers)).json()
    percentage = final["filters"][0]["rollout_percentage"]
    for experiment in experiments:
        flag = await load(app, FeatureFlag, experiment["feature_flag"]["id"])
        assert flag.filters["holdout"] == {"id": holdout["id"], "exclusion_percentage": percentage}
    assert (await load(app, FeatureFlag, experiments[0]["feature_flag"]["id"])).active is True
