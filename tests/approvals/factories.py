"""Factories for approval tests: members, policies, flags, and direct database reads."""

import uuid
from typing import Any

from sqlalchemy import select

from experiments_service.models import ActivityLog, ChangeRequest, Experiment, FeatureFlag

MULTIVARIATE_FILTERS = {
    "groups": [{"properties": [], "rollout_percentage": 100}],
    "multivariate": {
        "variants": [
            {"key": "control", "name": "Control", "rollout_percentage": 50},
            {"key": "test", "name": "Test", "rollout_percentage": 50},
        ]
    },
}


async def member(kit, scopes: list[str] | None = None) -> tuple[dict[str, str], int]:
    """Another member of the kit's project (headers, user id)."""
    return await kit.key(scopes or ["*"], email=f"member-{uuid.uuid4().hex[:8]}@example.com")


async def create_policy(kit, action_key: str, users: list[int], quorum: int = 1, **fields: Any) -> dict[str, Any]:
    body = {"action_key": action_key, "approver_config": {"quorum": quorum, "users": users}, **fields}
    response = await kit.client.post(f"{kit.base}/approval_policies/", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def load_flag(app, flag_id: int) -> FeatureFlag:
    async with app.state.db.sessionmaker() as session:
        return await session.get(FeatureFlag, flag_id)


async def change_requests(app, project_id: int) -> list[ChangeRequest]:
    async with app.state.db.sessionmaker() as session:
        query = select(ChangeRequest).where(ChangeRequest.project_id == project_id).order_by(ChangeRequest.created_at)
        return list((await session.execute(query)).scalars())


async def activity(app, project_id: int, scope: str) -> list[ActivityLog]:
    async with app.state.db.sessionmaker() as session:
        query = select(ActivityLog).where(ActivityLog.project_id == project_id, ActivityLog.scope == scope)
        return list((await session.execute(query.order_by(ActivityLog.created_at))).scalars())


async def experiment_action(kit, experiment_id: int, name: str, body: dict[str, Any] | None = None):
    return await kit.client.post(f"{kit.base}/experiments/{experiment_id}/{name}/", json=body, headers=kit.headers)


async def load_experiment(app, experiment_id: int) -> Experiment:
    async with app.state.db.sessionmaker() as session:
        return await session.get(Experiment, experiment_id)
