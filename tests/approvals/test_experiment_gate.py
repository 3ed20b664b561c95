"""Experiment lifecycle actions under approval policies: 409, nothing written, approve, retry passes."""

from tests.approvals.factories import (
    activity,
    change_requests,
    create_experiment,
    create_policy,
    experiment_action,
    load_experiment,
    load_flag,
    member,
)

BODY_KEYS = [
    "code", "status", "detail", "message", "resource_type", "resource_id", "change_request_id", "change_request",
    "required_approvers",
]


async def _running_experiment(kit) -> dict:
    experiment = await create_experiment(kit)
    launched = await experiment_action(kit, experiment["id"], "launch")
    assert launched.status_code == 200, launched.text
    return launched.json()


async def _state(app, experiment_id: int, flag_id: int) -> tuple:
    experiment = await load_experiment(app, experiment_id)
    flag = await load_flag(app, flag_id)
    return (
        experiment.status, experiment.start_date, experiment.end_date, experiment.conclusion,
        experiment.conclusion_comment, flag.active, flag.filters, flag.version,
    )


async def _gated_then_approved(
    kit, app, experiment: dict, action: str, body: dict | None, action_key: str, approved_status: str | None = None
):
    """Run the gated action: 409 with nothing changed, a repeat 409, then approval applies the flag change.

    After approval the experiment is in `approved_status` (default: unchanged).
    """
    approver_headers, approver = await member(kit)
    await create_policy(kit, action_key, [approver])
    flag_id = experiment["feature_flag"]["id"]
    before = await _state(app, experiment["id"], flag_id)
    experiment_log_before = len(await activity(app, kit.project_id, "Experiment"))

    response = await experiment_action(kit, experiment["id"], action, body)

    assert response.status_code == 409, response.text
    gated = response.json()
    assert list(gated) == BODY_KEYS
    assert gated["code"] == gated["status"] == "approval_required"
    assert gated["message"] == gated["detail"] == "A change request has been created and is pending approval."
    assert (gated["resource_type"], gated["resource_id"]) == ("feature_flag", str(flag_id))
    assert gated["required_approvers"] == {"quorum": 1, "users": [approver]}
    assert gated["change_request"]["action_key"] == action_key
    assert gated["change_request"]["state"] == "pending"
    assert await _state(app, experiment["id"], flag_id) == before
    assert len(await activity(app, kit.project_id, "Experiment")) == experiment_log_before
    [stored] = await change_requests(app, kit.project_id)
    assert (str(stored.id), stored.state, stored.action_key) == (gated["change_request_id"], "pending", action_key)

    repeat = await experiment_action(kit, experiment["id"], action, body)
    assert repeat.status_code == 409
    assert repeat.json()["code"] == "change_request_pending"
    assert repeat.json()["change_request_id"] == gated["change_request_id"]
    assert repeat.json()["required_approvers"] == {}
    assert await _state(app, experiment["id"], flag_id) == before

    approved = await kit.client.post(
        f"{kit.base}/change_requests/{gated['change_request_id']}/approve/", headers=approver_headers
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "applied"
    experiment_now = await load_experiment(app, experiment["id"])
    assert (experiment_now.status, experiment_now.end_date) == (approved_status or before[0], before[2])
    return gated, before


def _refused(response, detail: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == {"type": "validation_error", "code": "invalid_input", "detail": detail, "attr": None}


class TestLifecycleUnderApproval:
    async def test_launch(self, kit, app):
        experiment = await create_experiment(kit)
        flag_id = experiment["feature_flag"]["id"]
        gated, before = await _gated_then_approved(kit, app, experiment, "launch", None, "feature_flag.enable")
        assert gated["change_request"]["intent"]["gated_changes"] == {"active": True}
        assert before[0] == "draft" and before[1] is None and before[5] is False
        assert (await load_flag(app, flag_id)).active is True

        retry = await experiment_action(kit, experiment["id"], "launch")

        assert retry.status_code == 200, retry.text
        assert retry.json()["status"] == "running"
        assert retry.json()["start_date"] is not None
        assert retry.json()["feature_flag"]["active"] is True
        assert (await load_flag(app, flag_id)).version == before[7] + 1
        assert len(await change_requests(app, kit.project_id)) == 1

    async def test_pause(self, kit, app):
        experiment = await _running_experiment(kit)
        flag_id = experiment["feature_flag"]["id"]
        gated, before = await _gated_then_approved(
            kit, app, experiment, "pause", None, "feature_flag.disable", approved_status="paused"
        )
        assert before[0] == "running" and before[5] is True
        # Approval switched the flag off, and the experiment with it (a paused experiment is one
        # whose flag is off), logged as paused by the requester.
        assert (await load_flag(app, flag_id)).active is False
        paused_log = [entry for entry in await activity(app, kit.project_id, "Experiment") if entry.activity == "paused"]
        assert [(entry.item_id, entry.user_id) for entry in paused_log] == [(str(experiment["id"]), kit.user_id)]
        assert paused_log[0].detail["after"] == {"status": "paused"}

        retry = await experiment_action(kit, experiment["id"], "pause")

        _refused(retry, "Experiment is already paused.")
        stored = await load_experiment(app, experiment["id"])
        assert stored.status == "paused" and stored.end_date is None
        assert (await load_flag(app, flag_id)).version == before[7] + 1
        resumed = await experiment_action(kit, experiment["id"], "resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "running"

    async def test_resume(self, kit, app):
        experiment = await _running_experiment(kit)
        paused = await experiment_action(kit, experiment["id"], "pause")
        assert paused.status_code == 200
        experiment = paused.json()
        flag_id = experiment["feature_flag"]["id"]
        gated, before = await _gated_then_approved(
            kit, app, experiment, "resume", None, "feature_flag.enable", approved_status="running"
        )
        assert before[0] == "paused" and before[5] is False
        assert (await load_flag(app, flag_id)).active is True

        retry = await experiment_action(kit, experiment["id"], "resume")

        _refused(retry, "Experiment is not paused.")
        assert (await load_experiment(app, experiment["id"])).status == "running"
        assert (await load_flag(app, flag_id)).version == before[7] + 1

    async def test_ship_variant(self, kit, app):
        experiment = await _running_experiment(kit)
        flag_id = experiment["feature_flag"]["id"]
        body = {"variant_key": "test", "conclusion": "won", "conclusion_comment": "clear winner"}
        gated, before = await _gated_then_approved(kit, app, experiment, "ship_variant", body, "feature_flag.update")
        assert before[0] == "running" and before[2] is None and before[3] is None
        intent = gated["change_request"]["intent"]
        assert intent["request_data"]["variant_key"] == "test"
        assert "multivariate.variants[0].rollout_percentage" in intent["triggered_paths"]
        shipped = (await load_flag(app, flag_id)).filters
        assert [v["rollout_percentage"] for v in shipped["multivariate"]["variants"]] == [0, 100]

        retry = await experiment_action(kit, experiment["id"], "ship_variant", body)

        assert retry.status_code == 200, retry.text
        result = retry.json()
        assert result["status"] == "stopped"
        assert result["end_date"] is not None
        assert (result["conclusion"], result["conclusion_comment"]) == ("won", "clear winner")
        flag = await load_flag(app, flag_id)
        assert flag.filters == shipped and flag.version == before[7] + 1
        assert len(await change_requests(app, kit.project_id)) == 1

    async def test_bypass_user_launches_directly(self, kit, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver], bypass_users=[kit.user_id])
        experiment = await create_experiment(kit)
        response = await experiment_action(kit, experiment["id"], "launch")
        assert response.status_code == 200 and response.json()["status"] == "running"
        assert await change_requests(app, kit.project_id) == []

    async def test_rejected_launch_leaves_experiment_in_draft(self, kit, app):
        approver_headers, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver])
        experiment = await create_experiment(kit)
        gated = (await experiment_action(kit, experiment["id"], "launch")).json()
        rejected = await kit.client.post(
            f"{kit.base}/change_requests/{gated['change_request_id']}/reject/", json={"reason": "not yet"},
            headers=approver_headers,
        )
        assert rejected.status_code == 200
        stored = await load_experiment(app, experiment["id"])
        assert (stored.status, stored.start_date) == ("draft", None)
        assert (await load_flag(app, experiment["feature_flag"]["id"])).active is False


class TestFlagSwitchOfAnExperimentFlag:
    async def test_approved_flag_disable_pauses_the_experiment(self, kit, app):
        approver_headers, approver = await member(kit)
        experiment = await _running_experiment(kit)
        flag_id = experiment["feature_flag"]["id"]
        await create_policy(kit, "feature_flag.disable", [approver])
        flag_url = f"{kit.base}/feature_flags/{flag_id}/"

        gated = await kit.client.patch(flag_url, json={"active": False}, headers=kit.headers)
        assert gated.status_code == 409
        assert (await load_experiment(app, experiment["id"])).status == "running"
        approved = await kit.client.post(
            f"{kit.base}/change_requests/{gated.json()['change_request_id']}/approve/", headers=approver_headers
        )
        assert approved.json()["status"] == "applied"

        assert (await load_flag(app, flag_id)).active is False
        assert (await load_experiment(app, experiment["id"])).status == "paused"
        shown = await kit.client.get(f"{kit.base}/experiments/{experiment['id']}/", headers=kit.headers)
        assert (shown.json()["status"], shown.json()["feature_flag"]["active"]) == ("paused", False)
        version = (await load_flag(app, flag_id)).version

        retry = await kit.client.patch(flag_url, json={"active": False}, headers=kit.headers)

        assert retry.status_code == 200, retry.text
        assert (await load_experiment(app, experiment["id"])).status == "paused"
        assert (await load_flag(app, flag_id)).version == version
        resumed = await experiment_action(kit, experiment["id"], "resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "running"


class TestExperimentPatchUnderApproval:
    async def test_split_edit_is_gated_and_leaves_the_experiment_untouched(self, kit, app):
        _, approver = await member(kit)
        experiment = await _running_experiment(kit)
        flag_id = experiment["feature_flag"]["id"]
        await create_policy(kit, "feature_flag.update", [approver])
        before = await _state(app, experiment["id"], flag_id)
        variants = [{"key": "control", "rollout_percentage": 75}, {"key": "test", "rollout_percentage": 25}]

        response = await kit.client.patch(
            f"{kit.base}/experiments/{experiment['id']}/",
            json={"description": "new split", "parameters": {"feature_flag_variants": variants},
                  "update_feature_flag_params": True},
            headers=kit.headers,
        )

        assert response.status_code == 409, response.text
        assert response.json()["change_request"]["intent"]["triggered_paths"] == [
            "multivariate.variants[0].rollout_percentage", "multivariate.variants[1].rollout_percentage",
        ]
        stored = await load_experiment(app, experiment["id"])
        assert (stored.description, stored.parameters) == (experiment["description"], experiment["parameters"])
        assert await _state(app, experiment["id"], flag_id) == before
        assert len(await change_requests(app, kit.project_id)) == 1
