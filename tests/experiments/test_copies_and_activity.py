"""Duplicate, copy to another project, velocity stats and per-experiment activity (PostHog's tests, over HTTP)."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from experiments_service.auth.repository import AuthRepository
from experiments_service.auth.service import create_project, ensure_user
from experiments_service.flags.service import FlagService
from experiments_service.models import Experiment, FeatureFlag

MEAN = {"kind": "ExperimentMetric", "metric_type": "mean", "source": {"kind": "EventsNode", "event": "$pageview"}}
CLICK = {"kind": "ExperimentMetric", "metric_type": "mean", "source": {"kind": "EventsNode", "event": "$click"}}
VARIANTS = [
    {"key": "control", "name": "Control Group", "rollout_percentage": 50},
    {"key": "test", "name": "Test Variant", "rollout_percentage": 50},
]


def key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def post(kit, path: str, body: Any = None, status: int = 201) -> dict[str, Any]:
    response = await kit.client.post(f"{kit.base}/experiments/{path}", json=body, headers=kit.headers)
    assert response.status_code == status, response.text
    return response.json()


async def create(kit, **payload: Any) -> dict[str, Any]:
    body = {"name": "Original Experiment", "feature_flag_key": key("flag"), "allow_unknown_events": True, **payload}
    return await post(kit, "", body)


async def make_flag(kit, flag_key: str, variants: list[dict[str, Any]], project_id: int | None = None) -> int:
    async with kit.app.state.db.transaction() as session:
        filters = {"groups": [{"properties": [], "rollout_percentage": 100}], "multivariate": {"variants": variants}}
        flag = await FlagService(session, project_id or kit.project_id, None).create_flag(key=flag_key, filters=filters)
        return flag.id


async def make_saved_metric(kit) -> dict[str, Any]:
    return await post_to(kit, "experiment_saved_metrics/", {"name": key("saved"), "query": MEAN})


async def make_holdout(kit, rollout_percentage: int) -> dict[str, Any]:
    body = {"name": "Holdout", "filters": [{"properties": [], "rollout_percentage": rollout_percentage}]}
    return await post_to(kit, "experiment_holdouts/", body)


async def post_to(kit, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await kit.client.post(f"{kit.base}/{path}", json=body, headers=kit.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def other_project(kit, *, member: bool = True) -> int:
    """Another project; the kit's user is a member of it unless `member` is false."""
    async with kit.app.state.db.transaction() as session:
        project = await create_project(session, key("target"))
        if member:
            user = await AuthRepository(session).user(kit.user_id)
            await ensure_user(session, user.email, project)
        return project.id


async def experiments_in(kit, project_id: int) -> list[Experiment]:
    async with kit.app.state.db.sessionmaker() as session:
        query = select(Experiment).where(Experiment.project_id == project_id)
        return list((await session.execute(query)).scalars())


def strip_identity(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k not in ("uuid", "fingerprint")} for m in metrics]


class TestDuplicate:
    async def test_duplicate_is_a_draft_copy_sharing_the_flag_with_fresh_metric_uuids(self, kit):
        original = await create(
            kit,
            description="Original description",
            start_date="2021-12-01T10:23",
            parameters={"feature_flag_variants": VARIANTS},
            filters={"events": [{"order": 0, "id": "$pageview"}]},
            metrics=[MEAN],
            metrics_secondary=[CLICK],
            stats_config={"method": "bayesian"},
        )
        copy = await post(kit, f"{original['id']}/duplicate/", {})

        assert copy["name"] == "Original Experiment (Copy)"
        assert copy["id"] != original["id"]
        assert copy["status"] == "draft"
        assert copy["start_date"] is copy["end_date"] is None
        assert copy["archived"] is copy["deleted"] is False
        for field in ("description", "type", "parameters", "filters", "stats_config", "exposure_criteria"):
            assert copy[field] == original[field], field
        assert copy["feature_flag_key"] == original["feature_flag_key"]
        assert copy["feature_flag"]["id"] == original["feature_flag"]["id"]
        assert strip_identity(copy["metrics"]) == strip_identity(original["metrics"])
        assert strip_identity(copy["metrics_secondary"]) == strip_identity(original["metrics_secondary"])
        assert {m["uuid"] for m in copy["metrics"]}.isdisjoint({m["uuid"] for m in original["metrics"]})
        assert copy["primary_metrics_ordered_uuids"] == [m["uuid"] for m in copy["metrics"]]

    async def test_names_of_further_copies_count_up(self, kit):
        original = await create(kit, name="Conflict Test")
        first = await post(kit, f"{original['id']}/duplicate/", {})
        second = await post(kit, f"{original['id']}/duplicate/", {})
        third = await post(kit, f"{original['id']}/duplicate/", {})
        assert [first["name"], second["name"], third["name"]] == [
            "Conflict Test (Copy)", "Conflict Test (Copy) 1", "Conflict Test (Copy) 2",
        ]

    async def test_a_long_name_is_shortened_to_fit(self, kit):
        original = await create(kit, name="n" * 400)
        copy = await post(kit, f"{original['id']}/duplicate/", {})
        assert copy["name"].endswith(" (Copy)") and len(copy["name"]) <= 400

    async def test_a_given_name_is_used(self, kit):
        original = await create(kit)
        copy = await post(kit, f"{original['id']}/duplicate/", {"name": "Second round"})
        assert copy["name"] == "Second round"

    async def test_an_existing_flag_key_links_that_flag_and_its_variants(self, kit):
        original = await create(
            kit,
            parameters={"feature_flag_variants": [
                {"key": "control", "name": "Control Group", "rollout_percentage": 50},
                {"key": "original-variant", "name": "Original Variant", "rollout_percentage": 50},
            ], "minimum_detectable_effect": 20},
        )
        new_variants = [
            {"key": "control", "name": "Control", "rollout_percentage": 34},
            {"key": "new-variant-1", "name": "New Variant 1", "rollout_percentage": 33},
            {"key": "new-variant-2", "name": "New Variant 2", "rollout_percentage": 33},
        ]
        other_key = key("other")
        flag_id = await make_flag(kit, other_key, new_variants)

        copy = await post(kit, f"{original['id']}/duplicate", {"feature_flag_key": other_key})

        assert copy["feature_flag"]["id"] == flag_id
        assert copy["feature_flag_key"] == other_key
        assert copy["parameters"]["feature_flag_variants"] == [
            {**v, "split_percent": v["rollout_percentage"]} for v in new_variants
        ]
        assert copy["parameters"]["minimum_detectable_effect"] == 20

    async def test_a_new_flag_key_creates_an_inactive_flag_with_the_sources_payloads_and_continuity(self, kit):
        original = await create(
            kit,
            start_date="2021-12-01T10:23",
            parameters={"feature_flag_variants": VARIANTS, "feature_flag_payloads": {"test": '"v1"'},
                        "ensure_experience_continuity": True},
        )
        new_key = key("fresh")
        copy = await post(kit, f"{original['id']}/duplicate/", {"feature_flag_key": new_key})

        assert copy["status"] == "draft"
        flag = copy["feature_flag"]
        assert flag["key"] == new_key and flag["id"] != original["feature_flag"]["id"]
        assert flag["active"] is False
        assert flag["ensure_experience_continuity"] is True
        assert flag["filters"]["payloads"] == {"test": '"v1"'}
        assert [v["key"] for v in flag["filters"]["multivariate"]["variants"]] == ["control", "test"]
        assert flag["name"] == "Feature Flag for Experiment Original Experiment (Copy)"

    async def test_running_and_stopped_sources_give_drafts(self, kit):
        running = await create(kit, start_date="2021-12-01T10:23")
        stopped = await create(kit, start_date="2021-12-01T10:23", end_date="2021-12-10T00:00", conclusion="won")
        for source in (running, stopped):
            copy = await post(kit, f"{source['id']}/duplicate/", {"feature_flag_key": key("copy")})
            assert copy["status"] == "draft"
            assert copy["conclusion"] is None

    async def test_saved_metrics_and_holdout_are_copied(self, kit):
        saved = await make_saved_metric(kit)
        holdout = await make_holdout(kit, 10)
        original = await create(
            kit, holdout_id=holdout["id"], saved_metrics_ids=[{"id": saved["id"], "metadata": {"type": "secondary"}}]
        )
        copy = await post(kit, f"{original['id']}/duplicate/", {})
        assert copy["holdout_id"] == holdout["id"]
        assert [(link["saved_metric"], link["metadata"]) for link in copy["saved_metrics"]] == [
            (saved["id"], {"type": "secondary"})
        ]
        assert copy["secondary_metrics_ordered_uuids"] == [saved["query"]["uuid"]]

    async def test_blank_flag_key_is_refused_and_nothing_is_created(self, kit, app):
        original = await create(kit, name=key("Blank"))
        body = await post(kit, f"{original['id']}/duplicate/", {"feature_flag_key": ""}, status=400)
        assert body == {"type": "validation_error", "code": "blank", "detail": "This field may not be blank.",
                        "attr": "feature_flag_key"}
        names = [e.name for e in await experiments_in(kit, kit.project_id)]
        assert f"{original['name']} (Copy)" not in names

    async def test_legacy_metrics_are_refused_with_a_plain_detail(self, kit, app):
        original = await create(kit)
        async with app.state.db.transaction() as session:
            row = await session.get(Experiment, original["id"])
            row.metrics = [{"kind": "ExperimentTrendsQuery", "count_query": {}}]
        body = await post(kit, f"{original['id']}/duplicate/", {}, status=400)
        assert body == {"detail": "Duplication is not supported for experiments using legacy metrics."}

    async def test_unknown_experiment_is_404_and_read_scope_is_403(self, kit):
        await post(kit, "999999/duplicate/", {}, status=404)
        original = await create(kit)
        headers, _ = await kit.key(["experiment:read"])
        response = await kit.client.post(f"{kit.base}/experiments/{original['id']}/duplicate/", json={}, headers=headers)
        assert response.status_code == 403
        assert response.json()["detail"] == "API key missing required scope 'experiment:write'"


class TestCopyToProject:
    async def test_copy_lands_in_the_target_with_a_disabled_flag_and_no_saved_metrics_or_holdout(self, kit, app):
        target = await other_project(kit)
        holdout = await make_holdout(kit, 10)
        saved = await make_saved_metric(kit)
        flag_key = key("copy-test-flag")
        original = await create(
            kit,
            feature_flag_key=flag_key,
            description="Original description",
            start_date="2021-12-01T10:23",
            metrics=[MEAN],
            metrics_secondary=[CLICK],
            holdout_id=holdout["id"],
            saved_metrics_ids=[{"id": saved["id"], "metadata": {"type": "primary"}}],
        )
        copy = await post(kit, f"{original['id']}/copy_to_project/", {"target_team_id": target})

        assert copy["name"] == "Original Experiment (Copy)"
        assert copy["description"] == "Original description"
        assert copy["status"] == "draft" and copy["start_date"] is None
        assert copy["holdout"] is None and copy["saved_metrics"] == []
        assert strip_identity(copy["metrics"]) == strip_identity(original["metrics"])
        assert copy["feature_flag"]["key"] == flag_key
        assert copy["feature_flag"]["team_id"] == target
        assert copy["feature_flag"]["active"] is False
        assert copy["feature_flag"]["filters"]["holdout"] is None
        [stored] = await experiments_in(kit, target)
        assert stored.id == copy["id"]
        # The copy is not readable from the source project.
        response = await kit.client.get(f"{kit.base}/experiments/{copy['id']}/", headers=kit.headers)
        assert response.status_code == 404

    async def test_an_existing_flag_in_the_target_is_reused(self, kit):
        target = await other_project(kit)
        flag_key = key("existing")
        existing = await make_flag(kit, flag_key, VARIANTS, project_id=target)
        original = await create(kit, feature_flag_key=flag_key)
        copy = await post(kit, f"{original['id']}/copy_to_project/", {"target_team_id": target})
        assert copy["feature_flag"]["id"] == existing

    async def test_missing_target_is_400(self, kit):
        original = await create(kit)
        body = await post(kit, f"{original['id']}/copy_to_project/", {}, status=400)
        assert body == {"type": "validation_error", "code": "required", "detail": "This field is required.",
                        "attr": "target_team_id"}

    async def test_unknown_target_is_404_and_a_foreign_one_403_with_nothing_written(self, kit, app):
        original = await create(kit)
        body = await post(kit, f"{original['id']}/copy_to_project/", {"target_team_id": 987654321}, status=404)
        assert body == {"detail": "Target team not found."}
        foreign = await other_project(kit, member=False)
        body = await post(kit, f"{original['id']}/copy_to_project/", {"target_team_id": foreign}, status=403)
        assert body == {"detail": "You do not have write access to the target project."}
        assert await experiments_in(kit, foreign) == []
        async with app.state.db.sessionmaker() as session:
            flags = await session.scalar(select(func.count()).where(FeatureFlag.project_id == foreign))
        assert flags == 0


class TestVelocityStats:
    async def test_empty_project(self, kit):
        response = await kit.client.get(f"{kit.base}/experiments/stats/", headers=kit.headers)
        assert response.status_code == 200
        assert response.json() == {"launched_last_30d": 0, "launched_previous_30d": 0, "percent_change": 0.0,
                                   "active_experiments": 0, "completed_last_30d": 0}

    async def test_counts_and_percent_change(self, kit):
        now = datetime.now(UTC)

        def iso(days_ago: float) -> str:
            return (now - timedelta(days=days_ago)).isoformat()

        await create(kit, start_date=iso(5))
        await create(kit, start_date=iso(10), end_date=iso(3))
        await create(kit, start_date=iso(40))
        archived = await create(kit, start_date=iso(12), end_date=iso(11))
        await kit.client.patch(f"{kit.base}/experiments/{archived['id']}/", json={"archived": True},
                               headers=kit.headers)
        await create(kit)  # a draft counts nowhere

        response = await kit.client.get(f"{kit.base}/experiments/stats", headers=kit.headers)
        assert response.status_code == 200
        assert response.json() == {"launched_last_30d": 2, "launched_previous_30d": 1, "percent_change": 100.0,
                                   "active_experiments": 2, "completed_last_30d": 1}

    async def test_percent_change_rounds_to_one_decimal(self, kit):
        now = datetime.now(UTC)
        for days in (35, 40, 45):
            await create(kit, start_date=(now - timedelta(days=days)).isoformat())
        await create(kit, start_date=(now - timedelta(days=2)).isoformat())
        body = (await kit.client.get(f"{kit.base}/experiments/stats/", headers=kit.headers)).json()
        assert (body["launched_last_30d"], body["launched_previous_30d"]) == (1, 3)
        assert body["percent_change"] == -66.7


class TestExperimentActivity:
    async def test_only_this_experiments_entries_and_its_flags(self, kit):
        saved = await make_saved_metric(kit)
        holdout = await make_holdout(kit, 20)
        mine = await create(kit, holdout_id=holdout["id"],
                            saved_metrics_ids=[{"id": saved["id"], "metadata": {"type": "secondary"}}])
        await kit.client.patch(f"{kit.base}/experiments/{mine['id']}/", json={"description": "Updated"},
                               headers=kit.headers)
        await kit.client.patch(f"{kit.base}/experiment_holdouts/{holdout['id']}/", json={"name": "Renamed"},
                               headers=kit.headers)
        await kit.client.patch(f"{kit.base}/experiment_saved_metrics/{saved['id']}/", json={"name": key("renamed")},
                               headers=kit.headers)
        flag_id = mine["feature_flag"]["id"]
        response = await kit.client.patch(f"{kit.base}/feature_flags/{flag_id}/", json={"active": True},
                                          headers=kit.headers)
        assert response.status_code == 200
        other = await create(kit)
        await kit.client.patch(f"{kit.base}/experiments/{other['id']}/", json={"description": "Unrelated"},
                               headers=kit.headers)

        response = await kit.client.get(f"{kit.base}/experiments/{mine['id']}/activity?limit=50", headers=kit.headers)
        assert response.status_code == 200
        results = response.json()["results"]
        by_scope = {(entry["scope"], entry["item_id"]) for entry in results}
        assert ("Experiment", str(other["id"])) not in by_scope
        assert by_scope <= {("Experiment", str(mine["id"])), ("Experiment", str(holdout["id"])),
                            ("Experiment", str(saved["id"])), ("FeatureFlag", str(flag_id))}
        own = [e["activity"] for e in results if e["scope"] == "Experiment" and e["item_id"] == str(mine["id"])
               and e["detail"].get("type") is None]
        assert "created" in own and "updated" in own
        assert {e["detail"].get("type") for e in results} >= {"holdout", "saved_metric"}
        assert any(e["scope"] == "FeatureFlag" for e in results)
        assert response.json()["count"] == len(results)

    async def test_unknown_experiment_is_404(self, kit):
        response = await kit.client.get(f"{kit.base}/experiments/999999/activity/", headers=kit.headers)
        assert response.status_code == 404
