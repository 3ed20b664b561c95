"""The one set of test factories: a project with a key (`Kit`), flags and experiments.

HTTP factories (`create_*`) exercise the API as a client would; `make_*` factories write the
set-up around the API under test through the services or as plain rows.
"""

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from experiments_service.auth.service import create_project, ensure_user, issue_personal_api_key
from experiments_service.flags.service import FlagService
from experiments_service.models import Experiment, FeatureFlag, User

TWO_VARIANTS = [
    {"key": "control", "name": "Control", "rollout_percentage": 50},
    {"key": "test", "name": "Test", "rollout_percentage": 50},
]
CONTROL_TEST = [("control", 50), ("test", 50)]


@dataclass
class Kit:
    """A fresh project with an all-scopes key: what most tests start from."""

    app: object
    client: httpx.AsyncClient
    project_id: int
    project_api_key: str
    personal_api_key: str
    user_id: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"/api/projects/{self.project_id}"

    async def key(self, scopes: list[str], email: str | None = None) -> tuple[dict[str, str], int]:
        """Mint another key (optionally for another member) and return its headers and user id."""
        async with self.app.state.db.transaction() as session:
            from experiments_service.auth.repository import AuthRepository

            project = await AuthRepository(session).project(self.project_id)
            user = await ensure_user(session, email or f"user-{uuid.uuid4().hex[:8]}@example.com", project)
            issued = await issue_personal_api_key(session, user, scopes)
        return {"Authorization": f"Bearer {issued.secret}"}, user.id


async def make_kit(app, client, scopes: list[str] | None = None, email: str | None = None) -> Kit:
    async with app.state.db.transaction() as session:
        project = await create_project(session, f"project-{uuid.uuid4().hex[:8]}")
        user = await ensure_user(session, email or f"owner-{uuid.uuid4().hex[:8]}@example.com", project)
        issued = await issue_personal_api_key(session, user, scopes or ["*"])
    return Kit(
        app=app,
        client=client,
        project_id=project.id,
        project_api_key=project.api_token,
        personal_api_key=issued.secret,
        user_id=user.id,
        headers={"Authorization": f"Bearer {issued.secret}"},
    )


def boolean_filters(rollout: float | None = 100, properties: list[dict] | None = None) -> dict[str, Any]:
    return {"groups": [{"properties": properties or [], "rollout_percentage": rollout}]}


def multivariate_filters(
    variants: list[tuple[str, float]], rollout: float | None = 100, payloads: dict[str, Any] | None = None
) -> dict[str, Any]:
    filters: dict[str, Any] = {
        "groups": [{"properties": [], "rollout_percentage": rollout}],
        "multivariate": {"variants": [{"key": key, "rollout_percentage": pct} for key, pct in variants]},
    }
    if payloads is not None:
        filters["payloads"] = payloads
    return filters


async def create_flag(kit, key: str | None = None, **fields: Any) -> dict[str, Any]:
    """A flag through the flags API (boolean, 100% rollout unless `filters` is given)."""
    key = key or f"flag-{uuid.uuid4().hex[:8]}"
    body = {"key": key, "name": fields.pop("name", f"{key} flag"), "filters": boolean_filters(), **fields}
    response = await kit.client.post(f"{kit.base}/feature_flags/", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def make_flag(
    kit,
    key: str,
    filters: dict[str, Any] | None = None,
    *,
    variants: list[tuple[str, float]] | None = CONTROL_TEST,
    name: str = "",
    active: bool = True,
    deleted: bool = False,
    user_id: int | None = None,
    evaluation_runtime: str = "all",
    evaluation_tags: list[str] | None = None,
) -> FeatureFlag:
    """A flag written through the flag service, as the flags API would (`filters`, else `variants`)."""
    if filters is None:
        filters = boolean_filters() if variants is None else multivariate_filters(variants)
    async with kit.app.state.db.transaction() as session:
        service = FlagService(session, kit.project_id, await session.get(User, user_id or kit.user_id))
        flag = await service.create_flag(
            key=key,
            name=name,
            filters=filters,
            active=active,
            evaluation_runtime=evaluation_runtime,
            evaluation_tags=evaluation_tags,
        )
        if deleted:
            await service.update_flag(flag, {"deleted": True})
        return flag


async def make_flags(kit, keys: list[str]) -> None:
    """Many control/test flags in one transaction (paging tests)."""
    async with kit.app.state.db.transaction() as session:
        service = FlagService(session, kit.project_id, await session.get(User, kit.user_id))
        for key in keys:
            await service.create_flag(key=key, filters=multivariate_filters(CONTROL_TEST))


async def create_experiment(kit, expected_status: int = 201, **payload: Any) -> dict[str, Any]:
    """An experiment through the experiments API (a draft on a new control/test flag by default)."""
    body = {"name": "Checkout button", "feature_flag_key": f"flag-{uuid.uuid4().hex[:10]}", **payload}
    response = await kit.client.post(f"{kit.base}/experiments/", json=body, headers=kit.headers)
    assert response.status_code == expected_status, response.text
    return response.json()


async def make_experiment(
    app, project_id: int, flag_id: int, *, name: str = "experiment", holdout_id: int | None = None, deleted: bool = False
) -> Experiment:
    """A draft experiment row backed by `flag_id` (the experiments API is exercised elsewhere)."""
    async with app.state.db.transaction() as session:
        experiment = Experiment(
            project_id=project_id, name=name, feature_flag_id=flag_id, holdout_id=holdout_id, deleted=deleted
        )
        session.add(experiment)
        await session.flush()
        return experiment


async def load(app, model, object_id: int):
    """A row as stored now, read in a session of its own."""
    async with app.state.db.sessionmaker() as session:
        return await session.get(model, object_id)
