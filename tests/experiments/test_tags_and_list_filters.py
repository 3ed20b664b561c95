"""Experiment tags, bulk tag updates and the `event`, `tags`, `excluded_tags` list filters."""

import json
import uuid
from typing import Any

import pytest

from sqlalchemy import select

from experiments_service.auth.service import create_project
from experiments_service.flags.service import FlagService
from experiments_service.models import (
    Experiment,
    ExperimentSavedMetric,
    ExperimentTag,
    ExperimentToSavedMetric,
    Tag,
)

TWO_VARIANTS = {
    "groups": [{"properties": [], "rollout_percentage": 100}],
    "multivariate": {"variants": [{"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50}]},
}


def metric(event: str) -> dict[str, Any]:
    return {"kind": "ExperimentMetric", "metric_type": "mean", "source": {"kind": "EventsNode", "event": event}}


async def create(kit, name: str, **payload: Any) -> dict[str, Any]:
    body = {"name": name, "feature_flag_key": f"flag-{uuid.uuid4().hex[:8]}", "allow_unknown_events": True, **payload}
    response = await kit.client.post(f"{kit.base}/experiments/", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def listed(kit, query: str) -> set[str]:
    response = await kit.client.get(f"{kit.base}/experiments/?{query}", headers=kit.headers)
    assert response.status_code == 200, response.text
    return {row["name"] for row in response.json()["results"]}


class TestTags:
    async def test_create_normalizes_and_detail_and_list_carry_them(self, kit):
        experiment = await create(kit, "Tagged", tags=["Growth", " checkout ", "growth"])
        assert experiment["tags"] == ["checkout", "growth"]
        detail = (await kit.client.get(f"{kit.base}/experiments/{experiment['id']}/", headers=kit.headers)).json()
        assert detail["tags"] == ["checkout", "growth"]
        rows = (await kit.client.get(f"{kit.base}/experiments/", headers=kit.headers)).json()["results"]
        assert next(r for r in rows if r["id"] == experiment["id"])["tags"] == ["checkout", "growth"]

    async def test_update_replaces_an_untagged_update_keeps_and_empty_clears(self, kit):
        experiment = await create(kit, "Tagged", tags=["one"])
        url = f"{kit.base}/experiments/{experiment['id']}/"
        response = await kit.client.patch(url, json={"description": "still tagged"}, headers=kit.headers)
        assert response.status_code == 200 and response.json()["tags"] == ["one"]
        response = await kit.client.patch(url, json={"tags": None}, headers=kit.headers)
        assert response.status_code == 200 and response.json()["tags"] == ["one"]
        response = await kit.client.patch(url, json={"tags": ["two", "three"]}, headers=kit.headers)
        assert response.json()["tags"] == ["three", "two"]
        response = await kit.client.patch(url, json={"tags": []}, headers=kit.headers)
        assert response.json()["tags"] == []
        assert (await kit.client.get(url, headers=kit.headers)).json()["tags"] == []

    async def test_bulk_update_adds_removes_sets_and_skips_unknown_ids(self, kit):
        first = await create(kit, "Bulk", tags=["existing"])
        second = await create(kit, "Second")
        url = f"{kit.base}/experiments/bulk_update_tags/"

        response = await kit.client.post(
            url, json={"ids": [first["id"], second["id"], 999999], "action": "add", "tags": ["Added"]},
            headers=kit.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json() == {
            "updated": [{"id": first["id"], "tags": ["added", "existing"]}, {"id": second["id"], "tags": ["added"]}],
            "skipped": [{"id": 999999, "reason": "Not found or no edit access"}],
        }
        response = await kit.client.post(
            url, json={"ids": [first["id"]], "action": "remove", "tags": ["existing"]}, headers=kit.headers
        )
        assert response.json()["updated"] == [{"id": first["id"], "tags": ["added"]}]
        response = await kit.client.post(
            url, json={"ids": [second["id"]], "action": "set", "tags": ["via-key"]}, headers=kit.headers
        )
        assert response.json()["updated"] == [{"id": second["id"], "tags": ["via-key"]}]
        detail = (await kit.client.get(f"{kit.base}/experiments/{second['id']}/", headers=kit.headers)).json()
        assert detail["tags"] == ["via-key"]

    async def test_bulk_update_needs_write_scope_and_a_known_action(self, kit):
        experiment = await create(kit, "Scoped")
        url = f"{kit.base}/experiments/bulk_update_tags/"
        headers, _ = await kit.key(["experiment:read"])
        response = await kit.client.post(url, json={"ids": [experiment["id"]], "action": "set", "tags": ["x"]},
                                         headers=headers)
        assert response.status_code == 403
        response = await kit.client.post(url, json={"ids": [experiment["id"]], "action": "merge", "tags": ["x"]},
                                         headers=kit.headers)
        assert response.status_code == 400
        assert response.json()["attr"] == "action"

    async def test_another_projects_experiment_is_skipped(self, kit, app):
        async with app.state.db.transaction() as session:
            project = await create_project(session, f"other-{uuid.uuid4().hex[:8]}")
            flag = await FlagService(session, project.id, None).create_flag(key="theirs", filters=TWO_VARIANTS)
            foreign = Experiment(project_id=project.id, name="Foreign", feature_flag_id=flag.id)
            session.add(foreign)
            await session.flush()
            tag = Tag(project_id=project.id, name="theirs")
            session.add(tag)
            await session.flush()
            session.add(ExperimentTag(experiment_id=foreign.id, tag_id=tag.id))
        foreign = {"id": foreign.id}
        response = await kit.client.post(
            f"{kit.base}/experiments/bulk_update_tags/",
            json={"ids": [foreign["id"]], "action": "set", "tags": ["mine"]}, headers=kit.headers,
        )
        assert response.json() == {"updated": [], "skipped": [{"id": foreign["id"], "reason": "Not found or no edit access"}]}
        async with app.state.db.sessionmaker() as session:
            tags = (await session.execute(select(ExperimentTag).where(ExperimentTag.experiment_id == foreign["id"])))
            assert [row.tag_id for row in tags.scalars()] == [tag.id]


class TestListFilters:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            (f"tags={json.dumps(['growth'])}", {"A"}),
            (f"tags={json.dumps(['nonexistent'])}", set()),
            (f"excluded_tags={json.dumps(['growth'])}", {"B", "C"}),
            (f"tags={json.dumps(['shared'])}&excluded_tags={json.dumps(['growth'])}", {"B"}),
            ("tags=shared,growth", {"A", "B"}),
        ],
    )
    async def test_tags_and_excluded_tags(self, kit, query, expected):
        await create(kit, "A", tags=["growth", "shared"])
        await create(kit, "B", tags=["shared"])
        await create(kit, "C")
        assert await listed(kit, query) == expected

    async def test_event_matches_inline_primary_secondary_and_saved_metrics(self, kit, app):
        await create(kit, "Purchase", metrics=[metric("purchase")])
        await create(kit, "Secondary", metrics_secondary=[metric("purchase")])
        await create(kit, "Funnel", metrics=[{"kind": "ExperimentMetric", "metric_type": "funnel",
                                              "series": [{"kind": "EventsNode", "event": "purchase"}]}])
        await create(kit, "Signup", metrics=[metric("signup")])
        saved_user = await create(kit, "Saved", metrics=[metric("primary_event")])
        async with app.state.db.transaction() as session:
            saved = ExperimentSavedMetric(project_id=kit.project_id, name="Conversion", query=metric("saved_event"))
            session.add(saved)
            await session.flush()
            session.add(ExperimentToSavedMetric(experiment_id=saved_user["id"], saved_metric_id=saved.id))

        assert await listed(kit, "event=purchase") == {"Purchase", "Secondary", "Funnel"}
        assert await listed(kit, "event=saved_event") == {"Saved"}
        assert await listed(kit, "event=never_used") == set()
        response = await kit.client.get(f"{kit.base}/experiments/?event=purchase", headers=kit.headers)
        assert response.json()["count"] == 3
