"""Activity entries carry PostHog's `detail.changes`: one `{type, action, field, before, after}` per field."""

import uuid
from typing import Any

from sqlalchemy import select

from experiments_service.models import ActivityLog


async def create(kit, **payload: Any) -> dict[str, Any]:
    body = {"name": "Logged", "feature_flag_key": f"flag-{uuid.uuid4().hex[:8]}", **payload}
    response = await kit.client.post(f"{kit.base}/experiments/", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def entries(app, project_id: int, scope: str, item_id: int, activity: str) -> list[ActivityLog]:
    async with app.state.db.sessionmaker() as session:
        query = (
            select(ActivityLog)
            .where(ActivityLog.project_id == project_id, ActivityLog.scope == scope,
                   ActivityLog.item_id == str(item_id), ActivityLog.activity == activity)
            .order_by(ActivityLog.created_at)
        )
        return list((await session.execute(query)).scalars())


class TestExperimentChanges:
    async def test_update_lists_each_changed_field(self, kit, app):
        experiment = await create(kit, description="Before")
        response = await kit.client.patch(
            f"{kit.base}/experiments/{experiment['id']}/", json={"description": "After", "name": "Renamed"},
            headers=kit.headers,
        )
        assert response.status_code == 200
        [updated] = await entries(app, kit.project_id, "Experiment", experiment["id"], "updated")
        changes = {change["field"]: change for change in updated.detail["changes"]}
        assert changes["description"] == {"type": "Experiment", "action": "changed", "field": "description",
                                          "before": "Before", "after": "After"}
        assert changes["name"]["before"] == "Logged" and changes["name"]["after"] == "Renamed"
        assert "metrics" not in changes
        [created] = await entries(app, kit.project_id, "Experiment", experiment["id"], "created")
        assert created.detail["changes"] is None

    async def test_ship_variant_logs_the_shipped_variant(self, kit, app):
        experiment = await create(kit)
        await kit.client.post(f"{kit.base}/experiments/{experiment['id']}/launch/", headers=kit.headers)
        response = await kit.client.post(
            f"{kit.base}/experiments/{experiment['id']}/ship_variant/",
            json={"variant_key": "test", "conclusion": "won"}, headers=kit.headers,
        )
        assert response.status_code == 200, response.text
        [shipped] = await entries(app, kit.project_id, "Experiment", experiment["id"], "variant_shipped")
        changes = {change["field"]: change for change in shipped.detail["changes"]}
        assert changes["shipped_variant"] == {"type": "Experiment", "action": "changed", "field": "shipped_variant",
                                              "before": None, "after": "test"}
        assert changes["status"]["before"] == "running" and changes["status"]["after"] == "stopped"
        assert changes["conclusion"]["after"] == "won"

    async def test_web_experiment_parameters_are_not_logged(self, kit, app):
        experiment = await create(kit, type="web", parameters={})
        response = await kit.client.patch(
            f"{kit.base}/experiments/{experiment['id']}/",
            json={"description": "Updated through the main endpoint", "parameters": None}, headers=kit.headers,
        )
        assert response.status_code == 200
        [updated] = await entries(app, kit.project_id, "Experiment", experiment["id"], "updated")
        fields = [change["field"] for change in updated.detail["changes"]]
        assert "description" in fields and "parameters" not in fields
        assert "parameters" not in updated.detail["after"]

    async def test_product_experiment_parameters_are_logged(self, kit, app):
        experiment = await create(kit, parameters={"minimum_detectable_effect": 10})
        await kit.client.patch(f"{kit.base}/experiments/{experiment['id']}/",
                               json={"parameters": {"minimum_detectable_effect": 20}}, headers=kit.headers)
        [updated] = await entries(app, kit.project_id, "Experiment", experiment["id"], "updated")
        assert "parameters" in [change["field"] for change in updated.detail["changes"]]


class TestOtherObjectsChanges:
    async def test_flag_update_and_saved_metric_update_carry_changes(self, kit, app):
        experiment = await create(kit)
        flag_id = experiment["feature_flag"]["id"]
        response = await kit.client.patch(f"{kit.base}/feature_flags/{flag_id}/", json={"active": True},
                                          headers=kit.headers)
        assert response.status_code == 200
        [flag_update] = await entries(app, kit.project_id, "FeatureFlag", flag_id, "updated")
        assert flag_update.detail["changes"] == [
            {"type": "FeatureFlag", "action": "changed", "field": "active", "before": False, "after": True}
        ]

        saved = (await kit.client.post(
            f"{kit.base}/experiment_saved_metrics/",
            json={"name": f"m-{uuid.uuid4().hex[:6]}", "query": {
                "kind": "ExperimentMetric", "metric_type": "mean", "source": {"kind": "EventsNode", "event": "a"}}},
            headers=kit.headers,
        )).json()
        await kit.client.patch(f"{kit.base}/experiment_saved_metrics/{saved['id']}/",
                               json={"description": "Described"}, headers=kit.headers)
        [metric_update] = await entries(app, kit.project_id, "Experiment", saved["id"], "updated")
        assert [c["field"] for c in metric_update.detail["changes"]] == ["description"]
