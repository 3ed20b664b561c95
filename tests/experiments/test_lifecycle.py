"""Lifecycle actions and the state machine (spec §3.1–3.6, §3.9, SPEC decisions 2–3)."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from experiments_service.flags.rewrite import SHIPPED_RELEASE_CONDITION_DESCRIPTION, ship_variant_filters
from experiments_service.flags.service import FlagService
from experiments_service.models import FeatureFlag
from tests.experiments.conftest import (
    action,
    activities,
    create_experiment,
    error,
    make_event_definition,
    make_flag,
    make_holdout,
    mean_metric,
    stored_experiment,
    stored_flag,
)

HEX64 = re.compile(r"^[0-9a-f]{64}$")
CATCH_ALL = {"properties": [], "rollout_percentage": 100, "description": SHIPPED_RELEASE_CONDITION_DESCRIPTION}


def recent(timestamp: str) -> bool:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return datetime.now(UTC) - moment < timedelta(minutes=1)


async def set_flag(kit, flag_id: int, **fields) -> None:
    """Change a flag behind the experiment's back (as the flags API would)."""
    async with kit.app.state.db.transaction() as session:
        flag = await session.get(FeatureFlag, flag_id)
        for name, value in fields.items():
            setattr(flag, name, value)


async def in_state(kit, state: str) -> dict:
    experiment = await create_experiment(kit)
    if state == "draft":
        return experiment
    experiment = await action(kit, experiment["id"], "launch")
    if state == "paused":
        experiment = await action(kit, experiment["id"], "pause")
    elif state == "stopped":
        experiment = await action(kit, experiment["id"], "end")
    return experiment


class TestLaunch:
    async def test_launch_starts_the_experiment_and_activates_the_flag(self, kit, app):
        await make_event_definition(kit, "purchase")
        draft = await create_experiment(kit, metrics=[mean_metric()])
        body = await action(kit, draft["id"], "launch")
        assert body["status"] == "running"
        assert recent(body["start_date"]) and body["end_date"] is None
        assert body["feature_flag"]["active"] is True
        assert body["feature_flag"]["filters"] == draft["feature_flag"]["filters"]
        assert HEX64.match(body["metrics"][0]["fingerprint"])
        assert body["metrics"][0]["fingerprint"] != draft["metrics"][0]["fingerprint"]
        row = await stored_experiment(app, draft["id"])
        assert row.status == "running" and row.start_date is not None
        assert (await stored_flag(app, draft["feature_flag"]["id"])).active is True
        assert [a.activity for a in await activities(app, kit.project_id, draft["id"])] == ["created", "launched"]

    async def test_launch_ignores_a_non_object_body(self, kit):
        draft = await create_experiment(kit)
        response = await kit.client.post(
            f"{kit.base}/experiments/{draft['id']}/launch/", json=["x"], headers=kit.headers
        )
        assert response.status_code == 200 and response.json()["status"] == "running"

    @pytest.mark.parametrize("state", ["running", "paused", "stopped"])
    async def test_launch_twice_is_refused(self, kit, app, state):
        experiment = await in_state(kit, state)
        body = await action(kit, experiment["id"], "launch", 400)
        assert body == error("Experiment has already been launched.")
        assert (await stored_experiment(app, experiment["id"])).status == state

    async def test_launch_with_a_linked_inactive_flag_activates_it_and_keeps_conditions(self, kit, app):
        groups = [{"properties": [{"key": "plan", "value": "pro", "type": "person"}], "rollout_percentage": 30}]
        flag_id = await make_flag(kit, "linked", {"groups": groups, "multivariate": {"variants": [
            {"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50}]}}, active=False)
        draft = await create_experiment(kit, feature_flag_key="linked")
        body = await action(kit, draft["id"], "launch")
        assert body["feature_flag"]["active"] is True
        assert (await stored_flag(app, flag_id)).filters["groups"] == groups

    @pytest.mark.parametrize(
        ("filters", "deleted", "detail"),
        [
            ({"groups": [], "multivariate": {"variants": [{"key": "a", "rollout_percentage": 50},
                                                          {"key": "b", "rollout_percentage": 50}]}},
             False, "Feature flag must have a variant with key 'control'"),
            ({"groups": [], "multivariate": {"variants": [{"key": "control", "rollout_percentage": 100}]}},
             False, "Feature flag must have at least 2 variants (control and at least one test variant)"),
            (None, True, "Experiment cannot be launched because its feature flag has been deleted."),
        ],
    )
    async def test_launch_guards(self, kit, app, filters, deleted, detail):
        draft = await create_experiment(kit)
        changes = {"deleted": deleted} if filters is None else {"filters": filters}
        await set_flag(kit, draft["feature_flag"]["id"], **changes)
        body = await action(kit, draft["id"], "launch", 400)
        assert body == error(detail)
        row = await stored_experiment(app, draft["id"])
        assert row.status == "draft" and row.start_date is None
        assert (await stored_flag(app, draft["feature_flag"]["id"])).active is False

    async def test_launch_needs_write_scope(self, kit, app):
        draft = await create_experiment(kit)
        headers, _ = await kit.key(["experiment:read"])
        response = await kit.client.post(f"{kit.base}/experiments/{draft['id']}/launch/", headers=headers)
        assert response.status_code == 403
        assert response.json()["detail"] == "API key missing required scope 'experiment:write'"
        assert (await stored_experiment(app, draft["id"])).status == "draft"


class TestPauseResume:
    async def test_pause_turns_the_flag_off_and_stores_paused(self, kit, app, running):
        body = await action(kit, running["id"], "pause")
        assert body["status"] == "paused" and body["feature_flag"]["active"] is False
        assert body["end_date"] is None
        assert (await stored_experiment(app, running["id"])).status == "paused"
        assert (await stored_flag(app, running["feature_flag"]["id"])).active is False

    async def test_resume_turns_the_flag_on(self, kit, app, running):
        await action(kit, running["id"], "pause")
        body = await action(kit, running["id"], "resume")
        assert body["status"] == "running" and body["feature_flag"]["active"] is True
        assert (await stored_experiment(app, running["id"])).status == "running"
        logged = [a.activity for a in await activities(app, kit.project_id, running["id"])]
        assert logged == ["created", "launched", "paused", "resumed"]

    @pytest.mark.parametrize(
        ("state", "trigger", "detail"),
        [
            ("draft", "pause", "Experiment has not been launched yet."),
            ("stopped", "pause", "Experiment has already ended."),
            ("paused", "pause", "Experiment is already paused."),
            ("draft", "resume", "Experiment has not been launched yet."),
            ("stopped", "resume", "Experiment has already ended."),
            ("running", "resume", "Experiment is not paused."),
        ],
    )
    async def test_wrong_state(self, kit, app, state, trigger, detail):
        experiment = await in_state(kit, state)
        flag_before = await stored_flag(app, experiment["feature_flag"]["id"])
        body = await action(kit, experiment["id"], trigger, 400)
        assert body == error(detail)
        assert (await stored_experiment(app, experiment["id"])).status == state
        flag_after = await stored_flag(app, experiment["feature_flag"]["id"])
        assert (flag_after.active, flag_after.version) == (flag_before.active, flag_before.version)


class TestEnd:
    async def test_end_stops_and_records_the_conclusion(self, kit, app, running):
        body = await action(kit, running["id"], "end", conclusion="won", conclusion_comment="Blue wins")
        assert body["status"] == "stopped" and recent(body["end_date"])
        assert (body["conclusion"], body["conclusion_comment"]) == ("won", "Blue wins")
        assert body["feature_flag"]["active"] is True
        row = await stored_experiment(app, running["id"])
        assert (row.status, row.conclusion) == ("stopped", "won")

    async def test_end_a_paused_experiment_leaves_the_flag_off(self, kit, app, running):
        await action(kit, running["id"], "pause")
        body = await action(kit, running["id"], "end")
        assert body["status"] == "stopped" and body["feature_flag"]["active"] is False

    async def test_end_without_conclusion_clears_it(self, kit, app):
        experiment = await create_experiment(kit, start_date="2024-01-01T00:00:00Z", conclusion="lost",
                                             conclusion_comment="old")
        body = await action(kit, experiment["id"], "end")
        assert body["conclusion"] is None and body["conclusion_comment"] is None

    async def test_invalid_conclusion(self, kit, app, running):
        body = await action(kit, running["id"], "end", 400, conclusion="amazing")
        assert body == error('"amazing" is not a valid choice.', code="invalid_choice", attr="conclusion")
        assert (await stored_experiment(app, running["id"])).status == "running"

    @pytest.mark.parametrize(
        ("state", "detail"),
        [("draft", "Experiment has not been launched yet."), ("stopped", "Experiment has already ended.")],
    )
    async def test_wrong_state(self, kit, app, state, detail):
        experiment = await in_state(kit, state)
        body = await action(kit, experiment["id"], "end", 400)
        assert body == error(detail)
        assert (await stored_experiment(app, experiment["id"])).status == state


class TestShipVariant:
    FILTERS = {
        "groups": [{"properties": [{"key": "plan", "value": "pro", "type": "person"}], "rollout_percentage": 30,
                    "variant": "test"}],
        "multivariate": {"variants": [
            {"key": "control", "name": "Control", "rollout_percentage": 50},
            {"key": "test", "name": "", "rollout_percentage": 50, "extra": "dropped"},
        ]},
        "payloads": {"test": "{\"color\": \"blue\"}"},
        "aggregation_group_type_index": 0,
        "custom_key": {"kept": True},
    }

    async def _running_on(self, kit, active: bool = True) -> dict:
        holdout_id = await make_holdout(kit, 10)
        await make_flag(kit, "ship-me", {**self.FILTERS, "holdout": {"id": holdout_id, "exclusion_percentage": 10}},
                        active=active)
        experiment = await create_experiment(kit, feature_flag_key="ship-me")
        experiment = await action(kit, experiment["id"], "launch")
        self.holdout = {"id": holdout_id, "exclusion_percentage": 10}
        return experiment

    async def test_default_prepends_a_catch_all_and_keeps_everything_else(self, kit, app):
        experiment = await self._running_on(kit)
        body = await action(kit, experiment["id"], "ship_variant", variant_key="test", conclusion="won",
                            conclusion_comment="ship it")
        assert body["status"] == "stopped" and recent(body["end_date"])
        assert (body["conclusion"], body["conclusion_comment"]) == ("won", "ship it")
        flag = await stored_flag(app, experiment["feature_flag"]["id"])
        assert flag.filters == {
            "groups": [CATCH_ALL, *self.FILTERS["groups"]],
            "multivariate": {"variants": [{"key": "control", "rollout_percentage": 0, "name": "Control"},
                                          {"key": "test", "rollout_percentage": 100}]},
            "payloads": self.FILTERS["payloads"],
            "aggregation_group_type_index": 0,
            "custom_key": {"kept": True},
            "holdout": self.holdout,
        }
        assert flag.active is True
        assert body["feature_flag"]["filters"] == flag.filters
        shipped = [a for a in await activities(app, kit.project_id, experiment["id"])
                   if a.activity == "variant_shipped"]
        assert len(shipped) == 1 and shipped[0].detail["variant_key"] == "test"

    async def test_release_to_everyone_false_keeps_the_groups(self, kit, app):
        experiment = await self._running_on(kit)
        await action(kit, experiment["id"], "ship_variant", variant_key="control", release_to_everyone=False)
        flag = await stored_flag(app, experiment["feature_flag"]["id"])
        assert flag.filters["groups"] == self.FILTERS["groups"]
        assert [v["rollout_percentage"] for v in flag.filters["multivariate"]["variants"]] == [100, 0]
        assert flag.filters["holdout"] == self.holdout and flag.filters["custom_key"] == {"kept": True}

    async def test_shipping_a_paused_experiment_leaves_the_flag_off(self, kit, app):
        experiment = await self._running_on(kit)
        await action(kit, experiment["id"], "pause")
        body = await action(kit, experiment["id"], "ship_variant", variant_key="test")
        assert body["status"] == "stopped" and body["feature_flag"]["active"] is False

    async def test_shipping_a_stopped_experiment_rewrites_only_the_flag(self, kit, app):
        experiment = await self._running_on(kit)
        ended = await action(kit, experiment["id"], "end", conclusion="inconclusive", conclusion_comment="meh")
        body = await action(kit, experiment["id"], "ship_variant", variant_key="test", release_to_everyone=False)
        assert body["status"] == "stopped" and body["end_date"] == ended["end_date"]
        assert (body["conclusion"], body["conclusion_comment"]) == ("inconclusive", "meh")
        body = await action(kit, experiment["id"], "ship_variant", variant_key="control", conclusion="lost")
        assert (body["conclusion"], body["conclusion_comment"]) == ("lost", "meh")
        flag = await stored_flag(app, experiment["feature_flag"]["id"])
        assert [v["rollout_percentage"] for v in flag.filters["multivariate"]["variants"]] == [100, 0]
        assert flag.filters["groups"][0] == CATCH_ALL

    async def test_unknown_variant_changes_nothing(self, kit, app, running):
        before = await stored_flag(app, running["feature_flag"]["id"])
        body = await action(kit, running["id"], "ship_variant", 400, variant_key="nonexistent")
        assert body == error("Variant 'nonexistent' not found on feature flag.")
        after = await stored_flag(app, running["feature_flag"]["id"])
        assert (after.filters, after.version) == (before.filters, before.version)
        row = await stored_experiment(app, running["id"])
        assert row.status == "running" and row.end_date is None

    async def test_variant_key_is_required(self, kit, running):
        body = await action(kit, running["id"], "ship_variant", 400)
        assert body == error("This field is required.", code="required", attr="variant_key")

    async def test_invalid_conclusion(self, kit, running):
        body = await action(kit, running["id"], "ship_variant", 400, variant_key="test", conclusion="amazing")
        assert body == error('"amazing" is not a valid choice.', code="invalid_choice", attr="conclusion")

    async def test_draft_is_refused(self, kit, app):
        draft = await create_experiment(kit)
        body = await action(kit, draft["id"], "ship_variant", 400, variant_key="test")
        assert body == error("Experiment has not been launched yet.")
        assert (await stored_flag(app, draft["feature_flag"]["id"])).filters == draft["feature_flag"]["filters"]


class TestShipVariantFilters:
    def test_does_not_mutate_its_input_and_defaults_payloads(self):
        filters = {"groups": [{"properties": [], "rollout_percentage": 100}],
                   "multivariate": {"variants": [{"key": "control", "rollout_percentage": 50},
                                                 {"key": "test", "rollout_percentage": 50}]}}
        original = {**filters}
        shipped = ship_variant_filters(filters, "test", False)
        assert filters == original
        assert shipped["payloads"] == {}
        assert shipped["groups"] == filters["groups"]

    def test_four_variants_with_payloads(self):
        variants = [{"key": key, "rollout_percentage": 25} for key in ("control", "a", "b", "c")]
        payloads = {"a": "1", "b": "2"}
        shipped = ship_variant_filters({"groups": [], "multivariate": {"variants": variants},
                                        "payloads": payloads}, "control", True)
        assert shipped["multivariate"]["variants"] == [
            {"key": "control", "rollout_percentage": 100}, {"key": "a", "rollout_percentage": 0},
            {"key": "b", "rollout_percentage": 0}, {"key": "c", "rollout_percentage": 0}]
        assert shipped["payloads"] == payloads and shipped["groups"] == [CATCH_ALL]


class TestReset:
    @pytest.mark.parametrize("state", ["running", "paused", "stopped"])
    async def test_reset_goes_back_to_draft_and_leaves_the_flag(self, kit, app, state):
        experiment = await in_state(kit, state)
        flag_before = await stored_flag(app, experiment["feature_flag"]["id"])
        body = await action(kit, experiment["id"], "reset")
        assert body["status"] == "draft"
        assert body["start_date"] is None and body["end_date"] is None
        assert body["archived"] is False and body["conclusion"] is None and body["conclusion_comment"] is None
        flag_after = await stored_flag(app, experiment["feature_flag"]["id"])
        assert (flag_after.active, flag_after.version) == (flag_before.active, flag_before.version)
        assert (await stored_experiment(app, experiment["id"])).status == "draft"

    async def test_reset_clears_archive_and_conclusion(self, kit, app):
        experiment = await in_state(kit, "running")
        await action(kit, experiment["id"], "end", conclusion="won", conclusion_comment="x")
        await action(kit, experiment["id"], "archive")
        body = await action(kit, experiment["id"], "reset")
        assert (body["archived"], body["conclusion"], body["conclusion_comment"]) == (False, None, None)

    async def test_reset_a_draft_is_refused(self, kit):
        draft = await create_experiment(kit)
        body = await action(kit, draft["id"], "reset", 400)
        assert body == error("Experiment is already in draft state.")

    async def test_relaunch_after_reset(self, kit):
        experiment = await in_state(kit, "stopped")
        await action(kit, experiment["id"], "reset")
        body = await action(kit, experiment["id"], "launch")
        assert body["status"] == "running" and body["end_date"] is None


class TestArchive:
    async def test_archive_and_unarchive_a_stopped_experiment(self, kit, app):
        experiment = await in_state(kit, "stopped")
        body = await action(kit, experiment["id"], "archive")
        assert body["archived"] is True and body["status"] == "stopped"
        assert (await stored_experiment(app, experiment["id"])).archived is True
        body = await action(kit, experiment["id"], "archive", 400)
        assert body == error("Experiment is already archived.")
        body = await action(kit, experiment["id"], "unarchive")
        assert body["archived"] is False
        body = await action(kit, experiment["id"], "unarchive", 400)
        assert body == error("Experiment is not archived.")
        logged = [a.activity for a in await activities(app, kit.project_id, experiment["id"])]
        assert logged[-2:] == ["archived", "unarchived"]

    @pytest.mark.parametrize("state", ["draft", "running", "paused"])
    async def test_only_ended_experiments_can_be_archived(self, kit, app, state):
        experiment = await in_state(kit, state)
        body = await action(kit, experiment["id"], "archive", 400)
        assert body == error("Experiment must be ended before it can be archived.")
        assert (await stored_experiment(app, experiment["id"])).archived is False


class TestFlagActiveSync:
    async def test_direct_flag_changes_pause_and_resume_the_experiment(self, kit, app, running):
        flag_id = running["feature_flag"]["id"]
        for active, expected in ((False, "paused"), (True, "running")):
            async with app.state.db.transaction() as session:
                flag = (await session.execute(select(FeatureFlag).where(FeatureFlag.id == flag_id))).scalar_one()
                await FlagService(session, kit.project_id, None).update_flag(flag, {"active": active})
            assert (await stored_experiment(app, running["id"])).status == expected
            response = await kit.client.get(f"{kit.base}/experiments/{running['id']}/", headers=kit.headers)
            assert response.json()["status"] == expected
            assert response.json()["feature_flag"]["active"] is active

    async def test_drafts_and_stopped_experiments_are_not_moved(self, kit, app):
        draft = await in_state(kit, "draft")
        async with app.state.db.transaction() as session:
            flag = await session.get(FeatureFlag, draft["feature_flag"]["id"])
            await FlagService(session, kit.project_id, None).update_flag(flag, {"active": True})
        assert (await stored_experiment(app, draft["id"])).status == "draft"
