"""The approval gate on direct flag changes (`PATCH /feature_flags/{id}/`) and the change-request loop."""

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from experiments_service.models import ChangeRequest
from tests.approvals.factories import activity, change_requests, create_flag, create_policy, load_flag, member
from tests.conftest import make_kit

PENDING = "A pending approval request already exists for this action"


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _patch(kit, flag_id, body, headers=None):
    return await kit.client.patch(f"{kit.base}/feature_flags/{flag_id}/", json=body, headers=headers or kit.headers)


async def _decide(kit, change_request_id, verb, headers, body=None):
    return await kit.client.post(f"{kit.base}/change_requests/{change_request_id}/{verb}/", json=body, headers=headers)


class TestEnableGate:
    async def test_409_body_and_nothing_written(self, kit, client, app):
        approver_headers, approver = await member(kit)
        policy = await create_policy(kit, "feature_flag.enable", [approver])
        flag = await create_flag(kit, active=False)
        before = await load_flag(app, flag["id"])

        response = await _patch(kit, flag["id"], {"active": True})

        assert response.status_code == 409, response.text
        body = response.json()
        assert list(body) == [
            "code", "status", "detail", "message", "resource_type", "resource_id", "change_request_id",
            "change_request", "required_approvers",
        ]
        assert body["code"] == "approval_required"
        assert body["status"] == "approval_required"
        assert body["detail"] == body["message"] == "A change request has been created and is pending approval."
        assert body["resource_type"] == "feature_flag"
        assert body["resource_id"] == str(flag["id"])
        assert body["required_approvers"] == {"quorum": 1, "users": [approver]}
        cr = body["change_request"]
        assert cr["id"] == body["change_request_id"]
        assert cr["action_key"] == "feature_flag.enable" and cr["action_version"] == 1
        assert cr["state"] == "pending" and cr["validation_status"] == "valid"
        assert cr["intent"] == {
            "flag_id": flag["id"],
            "flag_key": flag["key"],
            "current_state": {"active": False},
            "gated_changes": {"active": True},
            "triggered_paths": ["active"],
            "full_request_data": {"active": True},
            "preconditions": {"version": before.version, "updated_at": before.updated_at.isoformat()},
            "http_method": "PATCH",
        }
        assert cr["intent_display"]["description"] == f"Enable feature flag '{flag['key']}'"
        assert cr["policy_snapshot"] == {
            "quorum": 1, "users": [approver], "roles": [], "allow_self_approve": False, "conditions": {},
            "bypass_org_membership_levels": [], "bypass_roles": [],
        }
        assert cr["created_by"]["id"] == kit.user_id and cr["applied_by"] is None
        assert cr["approvals"] == [] and cr["apply_error"] == "" and cr["result_data"] is None
        assert (cr["can_approve"], cr["can_cancel"], cr["is_requester"], cr["user_decision"]) == (False, True, True, None)
        assert _parse(cr["expires_at"]) - _parse(cr["created_at"]) == timedelta(days=14)

        after = await load_flag(app, flag["id"])
        assert (after.active, after.version, after.filters) == (False, before.version, before.filters)
        [stored] = await change_requests(app, kit.project_id)
        assert str(stored.id) == body["change_request_id"] and stored.state == "pending"
        assert str(stored.policy_id) == policy["id"]
        assert [e.activity for e in await activity(app, kit.project_id, "ChangeRequest")] == ["created"]
        assert [e.activity for e in await activity(app, kit.project_id, "FeatureFlag")] == ["created"]

        # The approver sees the same request with can_approve.
        seen = await client.get(f"{kit.base}/change_requests/{stored.id}/", headers=approver_headers)
        assert seen.status_code == 200
        assert seen.json()["can_approve"] is True and seen.json()["is_requester"] is False

    async def test_second_attempt_is_change_request_pending(self, kit, client, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver])
        flag = await create_flag(kit, active=False)
        first = (await _patch(kit, flag["id"], {"active": True})).json()

        again = await _patch(kit, flag["id"], {"active": True})

        assert again.status_code == 409
        body = again.json()
        assert body["code"] == "change_request_pending"
        assert body["detail"] == body["message"] == PENDING
        assert body["required_approvers"] == {}
        assert body["change_request_id"] == first["change_request_id"]
        assert body["change_request"]["id"] == first["change_request_id"]
        assert len(await change_requests(app, kit.project_id)) == 1
        assert (await load_flag(app, flag["id"])).active is False

    async def test_approve_applies_then_retry_passes(self, kit, client, app):
        approver_headers, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver])
        flag = await create_flag(kit, active=False)
        version = (await load_flag(app, flag["id"])).version
        gated = (await _patch(kit, flag["id"], {"active": True, "name": "Launch"})).json()

        approved = await _decide(kit, gated["change_request_id"], "approve", approver_headers, {"reason": "ok"})

        assert approved.status_code == 200, approved.text
        body = approved.json()
        assert body["status"] == "applied"
        assert body["message"] == "Quorum reached. Change applied successfully."
        assert body["result"] == {"resource_id": flag["id"], "resource_version": version + 1}
        cr = body["change_request"]
        assert cr["state"] == "applied" and cr["applied_at"] is not None
        assert cr["applied_by"]["id"] == kit.user_id
        assert [(a["decision"], a["reason"], a["created_by"]["id"]) for a in cr["approvals"]] == [("approved", "ok", approver)]
        assert cr["user_decision"] == "approved"
        stored = await load_flag(app, flag["id"])
        assert (stored.active, stored.name, stored.version) == (True, "Launch", version + 1)

        retry = await _patch(kit, flag["id"], {"active": True, "name": "Launch"})
        assert retry.status_code == 200, retry.text
        assert retry.json()["active"] is True
        assert (await load_flag(app, flag["id"])).version == version + 1
        assert len(await change_requests(app, kit.project_id)) == 1
        logged = [e.activity for e in await activity(app, kit.project_id, "ChangeRequest")]
        assert logged == ["created", "approved", "applied"]


class TestDisableAndUpdateGates:
    async def test_disable_gated(self, kit, app):
        approver_headers, approver = await member(kit)
        await create_policy(kit, "feature_flag.disable", [approver])
        flag = await create_flag(kit, active=True)
        response = await _patch(kit, flag["id"], {"active": False})
        assert response.status_code == 409
        assert response.json()["change_request"]["action_key"] == "feature_flag.disable"
        assert (await load_flag(app, flag["id"])).active is True
        # Enabling is not covered by a disable policy.
        other = await create_flag(kit, active=False)
        assert (await _patch(kit, other["id"], {"active": True})).status_code == 200

    async def test_rollout_update_gated_with_paths(self, kit, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.update", [approver])
        flag = await create_flag(kit)
        filters = {
            "groups": [{"properties": [], "rollout_percentage": 100}],
            "multivariate": {"variants": [{"key": "control", "rollout_percentage": 20},
                                          {"key": "test", "rollout_percentage": 80}]},
        }
        response = await _patch(kit, flag["id"], {"filters": filters})
        assert response.status_code == 409
        intent = response.json()["change_request"]["intent"]
        assert intent["triggered_paths"] == [
            "multivariate.variants[0].rollout_percentage", "multivariate.variants[1].rollout_percentage",
        ]
        assert intent["gated_changes"]["rollout_percentage"] == [
            {"path": "groups[0].rollout_percentage", "value": 100},
            {"path": "multivariate.variants[0].rollout_percentage", "value": 20},
            {"path": "multivariate.variants[1].rollout_percentage", "value": 80},
        ]
        assert intent["full_request_data"] == {"filters": filters}
        assert response.json()["change_request"]["intent_display"]["description"] == (
            f"Update rollout percentage for feature flag '{flag['key']}': "
            "rollout percentage at multivariate.variants[0].rollout_percentage: 50% -> 20%; "
            "rollout percentage at multivariate.variants[1].rollout_percentage: 50% -> 80%"
        )
        assert (await load_flag(app, flag["id"])).filters == flag["filters"]
        # Changes that keep every rollout percentage pass without a request.
        renamed = await _patch(kit, flag["id"], {"name": "renamed", "active": False})
        assert renamed.status_code == 200
        assert len(await change_requests(app, kit.project_id)) == 1

    async def test_change_amount_condition(self, kit, app):
        _, approver = await member(kit)
        await create_policy(
            kit, "feature_flag.update", [approver], conditions={"type": "change_amount", "operator": ">", "value": 10}
        )
        flag = await create_flag(kit, filters={"groups": [{"properties": [], "rollout_percentage": 20}]})
        small = await _patch(kit, flag["id"], {"filters": {"groups": [{"properties": [], "rollout_percentage": 25}]}})
        assert small.status_code == 200
        down = await _patch(kit, flag["id"], {"filters": {"groups": [{"properties": [], "rollout_percentage": 0}]}})
        assert down.status_code == 200
        big = await _patch(kit, flag["id"], {"filters": {"groups": [{"properties": [], "rollout_percentage": 50}]}})
        assert big.status_code == 409
        assert (await load_flag(app, flag["id"])).filters["groups"][0]["rollout_percentage"] == 0

    async def test_before_after_condition(self, kit, app):
        _, approver = await member(kit)
        await create_policy(
            kit, "feature_flag.update", [approver], conditions={"type": "before_after", "operator": ">=", "value": 50}
        )
        flag = await create_flag(kit, filters={"groups": [{"properties": [], "rollout_percentage": 10}]})
        assert (await _patch(kit, flag["id"], {"filters": {"groups": [{"rollout_percentage": 40}]}})).status_code == 200
        assert (await _patch(kit, flag["id"], {"filters": {"groups": [{"rollout_percentage": 50}]}})).status_code == 409

    async def test_disabled_policy_does_not_gate(self, kit, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver], enabled=False)
        flag = await create_flag(kit, active=False)
        assert (await _patch(kit, flag["id"], {"active": True})).status_code == 200
        assert await change_requests(app, kit.project_id) == []

    async def test_bypass_user_passes_without_change_request(self, kit, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver], bypass_users=[kit.user_id])
        flag = await create_flag(kit, active=False)
        response = await _patch(kit, flag["id"], {"active": True})
        assert response.status_code == 200 and response.json()["active"] is True
        assert await change_requests(app, kit.project_id) == []

    async def test_policy_conflict(self, kit, app):
        _, approver = await member(kit)
        enable = await create_policy(kit, "feature_flag.enable", [approver], name="Launch review")
        update = await create_policy(kit, "feature_flag.update", [approver])
        flag = await create_flag(kit, active=False)
        response = await _patch(
            kit, flag["id"], {"active": True, "filters": {"groups": [{"properties": [], "rollout_percentage": 30}]}}
        )
        assert response.status_code == 400
        assert response.json() == {
            "code": "policy_conflict",
            "error": "This change matches multiple approval policies",
            "conflicting_policies": [
                {"id": enable["id"], "name": "Launch review"},
                {"id": update["id"], "name": "feature_flag.update policy"},
            ],
            "guidance": "Split your changes into separate API calls to address each policy independently",
        }
        stored = await load_flag(app, flag["id"])
        assert stored.active is False and stored.filters == flag["filters"]
        assert await change_requests(app, kit.project_id) == []


class TestVotes:
    async def _gated(self, kit, approvers, **policy):
        await create_policy(kit, "feature_flag.enable", approvers, **policy)
        flag = await create_flag(kit, active=False)
        response = await _patch(kit, flag["id"], {"active": True})
        assert response.status_code == 409
        return flag, response.json()

    async def test_self_approval_refused(self, kit, app):
        await member(kit)
        flag, gated = await self._gated(kit, [kit.user_id])
        assert gated["message"] == "A change request has been created and is pending approval from others."
        response = await _decide(kit, gated["change_request_id"], "approve", kit.headers)
        assert response.status_code == 403
        assert response.json() == {
            "type": "authentication_error", "code": "permission_denied",
            "detail": "You cannot approve your own change request", "attr": None,
        }
        [stored] = await change_requests(app, kit.project_id)
        assert stored.state == "pending"
        assert (await load_flag(app, flag["id"])).active is False

    async def test_self_approval_allowed_by_policy(self, kit, app):
        flag, gated = await self._gated(kit, [kit.user_id], allow_self_approve=True)
        assert gated["message"] == "A change request has been created and is pending approval."
        assert gated["change_request"]["can_approve"] is True
        response = await _decide(kit, gated["change_request_id"], "approve", kit.headers)
        assert response.status_code == 200 and response.json()["status"] == "applied"
        assert (await load_flag(app, flag["id"])).active is True

    async def test_quorum_two_needs_two_approvers(self, kit, app):
        first_headers, first = await member(kit)
        second_headers, second = await member(kit)
        flag, gated = await self._gated(kit, [first, second], quorum=2)
        one = await _decide(kit, gated["change_request_id"], "approve", first_headers)
        assert one.status_code == 200
        assert one.json()["status"] == "approved"
        assert one.json()["message"] == "Approval recorded. 1/2 approvals received."
        assert one.json()["change_request"]["state"] == "pending"
        assert (await load_flag(app, flag["id"])).active is False

        twice = await _decide(kit, gated["change_request_id"], "approve", first_headers)
        assert twice.status_code == 400
        assert twice.json()["detail"] == "You have already voted on this change request."

        two = await _decide(kit, gated["change_request_id"], "approve", second_headers)
        assert two.status_code == 200 and two.json()["status"] == "applied"
        assert len(two.json()["change_request"]["approvals"]) == 2
        assert (await load_flag(app, flag["id"])).active is True
        after = await _decide(kit, gated["change_request_id"], "approve", first_headers)
        assert after.status_code == 400
        assert after.json()["detail"] == "This change request can no longer be approved."

    async def test_non_approver_cannot_vote(self, kit, app):
        _, approver = await member(kit)
        outsider_headers, _ = await member(kit)
        flag, gated = await self._gated(kit, [approver])
        for verb in ("approve", "reject"):
            response = await _decide(kit, gated["change_request_id"], verb, outsider_headers, {"reason": "no"})
            assert response.status_code == 403
            assert response.json()["detail"] == "You are not in the approver set for this change request"
        [stored] = await change_requests(app, kit.project_id)
        assert stored.state == "pending"

    async def test_reject(self, kit, app):
        approver_headers, approver = await member(kit)
        flag, gated = await self._gated(kit, [approver])
        missing = await _decide(kit, gated["change_request_id"], "reject", approver_headers, {})
        assert missing.status_code == 400
        assert missing.json()["attr"] == "reason" and missing.json()["detail"] == "A reason is required for rejection."
        rejected = await _decide(kit, gated["change_request_id"], "reject", approver_headers, {"comment": "too risky"})
        assert rejected.status_code == 200
        assert rejected.json()["status"] == "rejected"
        assert rejected.json()["change_request"]["approvals"][0]["reason"] == "too risky"
        [stored] = await change_requests(app, kit.project_id)
        assert stored.state == "rejected"
        assert (await load_flag(app, flag["id"])).active is False
        late = await _decide(kit, gated["change_request_id"], "approve", approver_headers)
        assert late.status_code == 400
        # A rejected request no longer blocks a new attempt.
        assert (await _patch(kit, flag["id"], {"active": True})).json()["code"] == "approval_required"

    async def test_cancel_by_requester_only(self, kit, app):
        approver_headers, approver = await member(kit)
        flag, gated = await self._gated(kit, [approver])
        refused = await _decide(kit, gated["change_request_id"], "cancel", approver_headers)
        assert refused.status_code == 403
        assert refused.json()["detail"] == "You cannot cancel this change request"
        cancelled = await _decide(kit, gated["change_request_id"], "cancel", kit.headers)
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "rejected"
        assert cancelled.json()["change_request"]["approvals"][0]["reason"] == "Canceled by requester"
        [stored] = await change_requests(app, kit.project_id)
        assert stored.state == "rejected"
        assert [e.activity for e in await activity(app, kit.project_id, "ChangeRequest")] == ["created", "cancelled"]
        again = await _decide(kit, gated["change_request_id"], "cancel", kit.headers)
        assert again.status_code == 400
        assert again.json()["detail"] == "This change request can no longer be canceled."

    async def test_expired_request_is_never_applied(self, kit, app):
        approver_headers, approver = await member(kit)
        flag, gated = await self._gated(kit, [approver])
        async with app.state.db.transaction() as session:
            await session.execute(
                update(ChangeRequest)
                .where(ChangeRequest.project_id == kit.project_id)
                .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )
        response = await _decide(kit, gated["change_request_id"], "approve", approver_headers)
        assert response.status_code == 400
        assert response.json()["code"] == "expired"
        [stored] = await change_requests(app, kit.project_id)
        assert stored.state == "expired"
        assert (await load_flag(app, flag["id"])).active is False
        assert [e.activity for e in await activity(app, kit.project_id, "ChangeRequest")] == ["created", "expired"]
        # A new attempt opens a new request instead of being blocked by the expired one.
        again = await _patch(kit, flag["id"], {"active": True})
        assert again.json()["code"] == "approval_required"
        assert again.json()["change_request_id"] != gated["change_request_id"]

    async def test_expired_on_listing(self, kit, client, app):
        _, approver = await member(kit)
        await self._gated(kit, [approver], expires_after=1)
        async with app.state.db.transaction() as session:
            await session.execute(
                update(ChangeRequest)
                .where(ChangeRequest.project_id == kit.project_id)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        listed = await client.get(f"{kit.base}/change_requests/?state=pending", headers=kit.headers)
        assert listed.json()["count"] == 0
        listed = await client.get(f"{kit.base}/change_requests/", headers=kit.headers)
        assert [cr["state"] for cr in listed.json()["results"]] == ["expired"]
        assert listed.json()["results"][0]["can_approve"] is False
        expired = await client.get(f"{kit.base}/change_requests/?state=expired", headers=kit.headers)
        assert expired.json()["count"] == 1
        shown = await client.get(f"{kit.base}/change_requests/{listed.json()['results'][0]['id']}/", headers=kit.headers)
        assert shown.json()["state"] == "expired"
        # Reads never write: the row is marked expired by the next write that meets it.
        [stored] = await change_requests(app, kit.project_id)
        assert stored.state == "pending"
        assert [e.activity for e in await activity(app, kit.project_id, "ChangeRequest")] == ["created"]

    async def test_version_race_fails_with_apply_error(self, kit, app):
        approver_headers, approver = await member(kit)
        flag, gated = await self._gated(kit, [approver])
        version = gated["change_request"]["intent"]["preconditions"]["version"]
        renamed = await _patch(kit, flag["id"], {"name": "renamed meanwhile"})
        assert renamed.status_code == 200

        response = await _decide(kit, gated["change_request_id"], "approve", approver_headers)

        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "failed"
        assert body["change_request"]["state"] == "failed"
        error = body["change_request"]["apply_error"]
        assert error.startswith(f"Precondition failed: Flag version mismatch: expected {version}, got {version + 1}")
        [stored] = await change_requests(app, kit.project_id)
        assert stored.state == "failed" and stored.apply_error == error and stored.applied_at is None
        flag_now = await load_flag(app, flag["id"])
        assert (flag_now.active, flag_now.name, flag_now.version) == (False, "renamed meanwhile", version + 1)
        assert [e.activity for e in await activity(app, kit.project_id, "ChangeRequest")] == [
            "created", "approved", "failed",
        ]


class TestChangeRequestReads:
    async def test_list_filters(self, kit, client, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver])
        first = await create_flag(kit, active=False)
        second = await create_flag(kit, active=False)
        a = (await _patch(kit, first["id"], {"active": True})).json()
        b = (await _patch(kit, second["id"], {"active": True})).json()
        await _decide(kit, a["change_request_id"], "cancel", kit.headers)

        everything = (await client.get(f"{kit.base}/change_requests/", headers=kit.headers)).json()
        assert everything["count"] == 2
        assert [cr["id"] for cr in everything["results"]] == [b["change_request_id"], a["change_request_id"]]
        pending = (await client.get(f"{kit.base}/change_requests/?state=pending", headers=kit.headers)).json()
        assert [cr["id"] for cr in pending["results"]] == [b["change_request_id"]]
        both = (await client.get(f"{kit.base}/change_requests/?state=pending,rejected", headers=kit.headers)).json()
        assert both["count"] == 2
        by_flag = await client.get(
            f"{kit.base}/change_requests/?resource_type=feature_flag&resource_id={first['id']}", headers=kit.headers
        )
        assert [cr["id"] for cr in by_flag.json()["results"]] == [a["change_request_id"]]
        mine = (await client.get(f"{kit.base}/change_requests/?requester={kit.user_id}", headers=kit.headers)).json()
        assert mine["count"] == 2
        theirs = (await client.get(f"{kit.base}/change_requests/?requester={approver}", headers=kit.headers)).json()
        assert theirs["count"] == 0
        enables = await client.get(f"{kit.base}/change_requests/?action_key=feature_flag.enable", headers=kit.headers)
        assert enables.json()["count"] == 2
        disables = await client.get(f"{kit.base}/change_requests/?action_key=feature_flag.disable", headers=kit.headers)
        assert disables.json()["count"] == 0
        paged = (await client.get(f"{kit.base}/change_requests/?limit=1", headers=kit.headers)).json()
        assert len(paged["results"]) == 1 and "offset=1" in paged["next"]

    async def test_another_projects_change_request_is_not_found(self, kit, client, app):
        other = await make_kit(app, client)
        _, other_approver = await member(other)
        await create_policy(other, "feature_flag.enable", [other_approver])
        flag = await create_flag(other, active=False)
        gated = (await _patch(other, flag["id"], {"active": True})).json()
        url = f"{kit.base}/change_requests/{gated['change_request_id']}/"
        assert (await client.get(url, headers=kit.headers)).status_code == 404
        for verb in ("approve", "reject", "cancel"):
            response = await client.post(url + f"{verb}/", json={"reason": "x"}, headers=kit.headers)
            assert response.status_code == 404
            assert response.json() == {"type": "invalid_request", "code": "not_found", "detail": "Not found.", "attr": None}
        [stored] = await change_requests(app, other.project_id)
        assert stored.state == "pending"
        assert (await load_flag(app, flag["id"])).active is False
        assert (await client.get(f"{kit.base}/change_requests/", headers=kit.headers)).json()["count"] == 0


class TestConcurrentAttempts:
    async def test_racing_gated_changes_store_one_request(self, kit, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver])
        flag = await create_flag(kit, active=False)

        responses = await asyncio.gather(*(_patch(kit, flag["id"], {"active": True}) for _ in range(8)))

        assert [r.status_code for r in responses] == [409] * 8, [r.text for r in responses]
        codes = sorted(r.json()["code"] for r in responses)
        assert codes == ["approval_required"] + ["change_request_pending"] * 7
        [stored] = await change_requests(app, kit.project_id)
        assert {r.json()["change_request_id"] for r in responses} == {str(stored.id)}
        assert (await load_flag(app, flag["id"])).active is False


class TestDecisionScopes:
    async def test_read_scope_cannot_decide(self, kit, client, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver])
        flag = await create_flag(kit, active=False)
        gated = (await _patch(kit, flag["id"], {"active": True})).json()
        reader, _ = await kit.key(["approval:read"])
        assert (await client.get(f"{kit.base}/change_requests/", headers=reader)).status_code == 200
        response = await _decide(kit, gated["change_request_id"], "approve", reader)
        assert response.status_code == 403
        assert response.json()["detail"] == "API key missing required scope 'approval:write'"
        [stored] = await change_requests(app, kit.project_id)
        assert stored.state == "pending"


class TestApplyFailure:
    async def test_apply_that_cannot_be_written_fails_cleanly(self, kit, app):
        approver_headers, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver])
        flag = await create_flag(kit, active=False)
        gated = (await _patch(kit, flag["id"], {"active": True, "key": "renamed-key"})).json()
        assert gated["code"] == "approval_required"
        taken = await kit.client.post(
            f"{kit.base}/feature_flags/", json={"key": "renamed-key"}, headers=kit.headers
        )
        assert taken.status_code == 201

        response = await _decide(kit, gated["change_request_id"], "approve", approver_headers)

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "failed"
        error = response.json()["change_request"]["apply_error"]
        assert error.startswith("Apply failed:")
        [stored] = await change_requests(app, kit.project_id)
        assert (stored.state, stored.apply_error) == ("failed", error)
        unchanged = await load_flag(app, flag["id"])
        assert (unchanged.active, unchanged.key) == (False, flag["key"])
