"""`/api/projects/{id}/approval_policies/`: CRUD, validation, scopes."""

import uuid

from sqlalchemy import select

from experiments_service.models import ApprovalPolicy
from tests.approvals.factories import activity, create_policy, member
from tests.factories import make_kit


async def _policies_in_db(app, project_id: int) -> list[ApprovalPolicy]:
    async with app.state.db.sessionmaker() as session:
        query = select(ApprovalPolicy).where(ApprovalPolicy.project_id == project_id)
        return list((await session.execute(query)).scalars())


class TestCreate:
    async def test_create_with_defaults(self, kit, client, app):
        _, approver = await member(kit)
        response = await client.post(
            f"{kit.base}/approval_policies/",
            json={"action_key": "feature_flag.update", "approver_config": {"quorum": 1, "users": [approver]}},
            headers=kit.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        uuid.UUID(body["id"])
        assert body["action_key"] == "feature_flag.update"
        assert body["conditions"] == {}
        assert body["approver_config"] == {"quorum": 1, "users": [approver]}
        assert body["allow_self_approve"] is False
        assert body["bypass_users"] == []
        assert body["expires_after"] == "14 00:00:00"
        assert body["enabled"] is True
        assert body["created_by"]["id"] == kit.user_id
        [stored] = await _policies_in_db(app, kit.project_id)
        assert stored.expires_after_seconds == 14 * 86400
        [logged] = await activity(app, kit.project_id, "ApprovalPolicy")
        assert logged.activity == "created" and logged.item_id == body["id"]

    async def test_expires_after_accepts_duration_and_seconds(self, kit, client):
        _, approver = await member(kit)
        first = await create_policy(kit, "feature_flag.enable", [approver], expires_after="2 12:00:00")
        assert first["expires_after"] == "2 12:00:00"
        second = await create_policy(kit, "feature_flag.disable", [approver], expires_after=3600)
        assert second["expires_after"] == "01:00:00"
        third = await create_policy(kit, "feature_flag.update", [approver], expires_after="P1D")
        assert third["expires_after"] == "1 00:00:00"

    async def test_conditions_are_stored_normalised(self, kit, client):
        _, approver = await member(kit)
        body = await create_policy(
            kit, "feature_flag.update", [approver],
            conditions={"type": "change_amount", "operator": ">", "value": 10},
        )
        assert body["conditions"] == {
            "type": "change_amount", "field": "rollout_percentage", "operator": ">", "value": 10, "absolute": False,
        }


class TestCreateValidation:
    async def _post(self, kit, body):
        return await kit.client.post(f"{kit.base}/approval_policies/", json=body, headers=kit.headers)

    async def _assert_refused(self, kit, app, body, *, code, attr, detail=None):
        response = await self._post(kit, body)
        assert response.status_code == 400, response.text
        error = response.json()
        assert error["type"] == "validation_error"
        assert error["code"] == code
        assert error["attr"] == attr
        if detail is not None:
            assert error["detail"] == detail
        assert await _policies_in_db(app, kit.project_id) == []
        return error

    async def test_unknown_action(self, kit, app):
        _, approver = await member(kit)
        await self._assert_refused(
            kit, app, {"action_key": "feature_flag.delete", "approver_config": {"quorum": 1, "users": [approver]}},
            code="invalid_choice", attr="action_key", detail='"feature_flag.delete" is not a valid choice.',
        )

    async def test_negative_and_zero_quorum(self, kit, app):
        _, approver = await member(kit)
        for quorum in (-1, 0):
            await self._assert_refused(
                kit, app, {"action_key": "feature_flag.update", "approver_config": {"quorum": quorum, "users": [approver]}},
                code="min_value", attr="approver_config", detail="Quorum must be at least 1",
            )

    async def test_quorum_above_number_of_approvers(self, kit, app):
        _, approver = await member(kit)
        await self._assert_refused(
            kit, app, {"action_key": "feature_flag.update", "approver_config": {"quorum": 2, "users": [approver]}},
            code="invalid_input", attr="approver_config",
            detail="Quorum (2) cannot exceed the number of approvers (1).",
        )

    async def test_unknown_and_foreign_users(self, kit, app, client):
        other = await make_kit(app, client)
        error = await self._assert_refused(
            kit, app, {"action_key": "feature_flag.update", "approver_config": {"quorum": 1, "users": [other.user_id]}},
            code="does_not_exist", attr="approver_config",
        )
        assert str(other.user_id) in error["detail"]
        await self._assert_refused(
            kit, app,
            {"action_key": "feature_flag.update", "approver_config": {"quorum": 1, "users": [kit.user_id]},
             "bypass_users": [999_999_999]},
            code="does_not_exist", attr="bypass_users",
        )

    async def test_missing_approver_config(self, kit, app):
        await self._assert_refused(kit, app, {"action_key": "feature_flag.update"}, code="required", attr="approver_config")

    async def test_bad_conditions(self, kit, app):
        _, approver = await member(kit)
        config = {"quorum": 1, "users": [approver]}
        bad = [
            ({"type": "sometimes"}, "invalid_choice"),
            ({"type": "before_after", "operator": "~", "value": 5}, "invalid_choice"),
            ({"type": "before_after", "operator": ">", "value": "5"}, "invalid_input"),
            ({"type": "before_after", "operator": ">", "value": 150}, "invalid_input"),
            ({"type": "any_change", "field": "name"}, "invalid_choice"),
        ]
        for conditions, code in bad:
            await self._assert_refused(
                kit, app, {"action_key": "feature_flag.update", "approver_config": config, "conditions": conditions},
                code=code, attr="conditions",
            )
        await self._assert_refused(
            kit, app,
            {"action_key": "feature_flag.enable", "approver_config": config, "conditions": {"type": "any_change"}},
            code="invalid_input", attr="conditions",
        )

    async def test_bad_durations(self, kit, app):
        _, approver = await member(kit)
        for value in ("soon", 0, "-1 00:00:00"):
            await self._assert_refused(
                kit, app,
                {"action_key": "feature_flag.update", "approver_config": {"quorum": 1, "users": [approver]},
                 "expires_after": value},
                code="min_value" if value != "soon" else "invalid", attr="expires_after",
            )

    async def test_second_policy_for_the_same_action(self, kit, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.update", [approver])
        response = await self._post(
            kit, {"action_key": "feature_flag.update", "approver_config": {"quorum": 1, "users": [approver]}}
        )
        assert response.status_code == 400
        assert response.json()["detail"] == (
            "A policy for this action already exists. You can edit the existing policy instead."
        )
        assert len(await _policies_in_db(app, kit.project_id)) == 1


class TestReadUpdateDelete:
    async def test_list_retrieve_patch_delete(self, kit, client, app):
        _, approver = await member(kit)
        _, second = await member(kit)
        created = await create_policy(kit, "feature_flag.update", [approver])
        await create_policy(kit, "feature_flag.enable", [approver], enabled=False)

        listed = await client.get(f"{kit.base}/approval_policies/", headers=kit.headers)
        assert listed.status_code == 200
        page = listed.json()
        assert page["count"] == 2 and page["next"] is None and page["previous"] is None
        assert {p["action_key"] for p in page["results"]} == {"feature_flag.update", "feature_flag.enable"}
        enabled_only = await client.get(f"{kit.base}/approval_policies/?enabled=true", headers=kit.headers)
        assert [p["id"] for p in enabled_only.json()["results"]] == [created["id"]]
        by_action = await client.get(f"{kit.base}/approval_policies/?action_key=feature_flag.update", headers=kit.headers)
        assert [p["id"] for p in by_action.json()["results"]] == [created["id"]]

        url = f"{kit.base}/approval_policies/{created['id']}/"
        assert (await client.get(url, headers=kit.headers)).json() == created

        patched = await client.patch(
            url, json={"approver_config": {"quorum": 2, "users": [approver, second]}, "expires_after": "7 00:00:00"},
            headers=kit.headers,
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["approver_config"] == {"quorum": 2, "users": [approver, second]}
        assert patched.json()["expires_after"] == "7 00:00:00"
        assert patched.json()["action_key"] == "feature_flag.update"

        refused = await client.patch(url, json={"approver_config": {"quorum": 3, "users": [approver]}}, headers=kit.headers)
        assert refused.status_code == 400 and refused.json()["attr"] == "approver_config"
        assert (await client.get(url, headers=kit.headers)).json()["approver_config"]["quorum"] == 2

        deleted = await client.delete(url, headers=kit.headers)
        assert deleted.status_code == 204 and deleted.content == b""
        assert (await client.get(url, headers=kit.headers)).status_code == 404
        assert [p.action_key for p in await _policies_in_db(app, kit.project_id)] == ["feature_flag.enable"]
        logged = [entry.activity for entry in await activity(app, kit.project_id, "ApprovalPolicy")]
        assert logged == ["created", "created", "updated", "deleted"]

    async def test_another_projects_policy_is_not_found(self, kit, client, app):
        other = await make_kit(app, client)
        policy = await create_policy(other, "feature_flag.update", [other.user_id])
        url = f"{kit.base}/approval_policies/{policy['id']}/"
        assert (await client.get(url, headers=kit.headers)).status_code == 404
        assert (await client.patch(url, json={"enabled": False}, headers=kit.headers)).status_code == 404
        assert (await client.delete(url, headers=kit.headers)).status_code == 404
        assert (await client.get(f"{kit.base}/approval_policies/not-a-uuid/", headers=kit.headers)).status_code == 404
        [stored] = await _policies_in_db(app, other.project_id)
        assert stored.enabled is True


class TestScopes:
    async def test_read_scope_cannot_write(self, kit, client):
        headers, _ = await kit.key(["approval:read"])
        assert (await client.get(f"{kit.base}/approval_policies/", headers=headers)).status_code == 200
        response = await client.post(
            f"{kit.base}/approval_policies/",
            json={"action_key": "feature_flag.update", "approver_config": {"quorum": 1, "users": [kit.user_id]}},
            headers=headers,
        )
        assert response.status_code == 403
        assert response.json() == {
            "type": "authentication_error", "code": "permission_denied",
            "detail": "API key missing required scope 'approval:write'", "attr": None,
        }

    async def test_other_scopes_cannot_read(self, kit, client):
        headers, _ = await kit.key(["feature_flag:write"])
        response = await client.get(f"{kit.base}/approval_policies/", headers=headers)
        assert response.status_code == 403
        assert response.json()["detail"] == "API key missing required scope 'approval:read'"
        assert (await client.get(f"{kit.base}/approval_policies/")).status_code == 401

    async def test_patch_onto_an_action_that_has_a_policy(self, kit, client, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver])
        update = await create_policy(
            kit, "feature_flag.update", [approver], conditions={"type": "any_change"}
        )
        url = f"{kit.base}/approval_policies/{update['id']}/"
        taken = await client.patch(url, json={"action_key": "feature_flag.enable"}, headers=kit.headers)
        assert taken.status_code == 400 and taken.json()["attr"] == "action_key"
        # Conditions are re-checked against the new action: enable policies take none.
        await client.delete(f"{kit.base}/approval_policies/{(await _policies_in_db(app, kit.project_id))[0].id}/",
                            headers=kit.headers)
        moved = await client.patch(url, json={"action_key": "feature_flag.disable"}, headers=kit.headers)
        assert moved.status_code == 400 and moved.json()["attr"] == "conditions"
        assert (await client.get(url, headers=kit.headers)).json()["action_key"] == "feature_flag.update"
