"""`GET /api/projects/{id}/activity_log/`: newest first, filters, scope, project isolation."""

from tests.approvals.factories import MULTIVARIATE_FILTERS, create_policy, member
from tests.factories import create_flag, make_kit


class TestActivityLog:
    async def test_entries_newest_first_with_filters(self, kit, client, app):
        approver_headers, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver])
        flag = await create_flag(kit, active=False, filters=MULTIVARIATE_FILTERS)
        gated = await client.patch(f"{kit.base}/feature_flags/{flag['id']}/", json={"active": True}, headers=kit.headers)
        change_request_id = gated.json()["change_request_id"]
        await client.post(f"{kit.base}/change_requests/{change_request_id}/approve/", headers=approver_headers)

        response = await client.get(f"{kit.base}/activity_log/", headers=kit.headers)

        assert response.status_code == 200
        page = response.json()
        entries = page["results"]
        assert page["count"] == len(entries) == 6
        assert [(e["scope"], e["activity"]) for e in entries] == [
            ("ChangeRequest", "applied"),
            ("FeatureFlag", "updated"),
            ("ChangeRequest", "approved"),
            ("ChangeRequest", "created"),
            ("FeatureFlag", "created"),
            ("ApprovalPolicy", "created"),
        ]
        stamps = [e["created_at"] for e in entries]
        assert stamps == sorted(stamps, reverse=True)
        flag_update = entries[1]
        assert set(flag_update) == {"id", "user", "activity", "scope", "item_id", "detail", "created_at"}
        assert flag_update["item_id"] == str(flag["id"])
        assert flag_update["user"]["id"] == kit.user_id
        assert flag_update["detail"]["name"] == flag["key"]
        assert flag_update["detail"]["before"] == {"active": False}
        assert flag_update["detail"]["after"] == {"active": True}
        created = entries[3]
        assert created["item_id"] == change_request_id
        assert created["detail"]["after"] == {"state": "pending"}
        assert created["detail"]["action_key"] == "feature_flag.enable"

        by_scope = (await client.get(f"{kit.base}/activity_log/?scope=ChangeRequest", headers=kit.headers)).json()
        assert [e["activity"] for e in by_scope["results"]] == ["applied", "approved", "created"]
        by_item = (await client.get(f"{kit.base}/activity_log/?item_id={flag['id']}", headers=kit.headers)).json()
        assert [e["activity"] for e in by_item["results"]] == ["updated", "created"]
        by_user = (await client.get(f"{kit.base}/activity_log/?user={approver}", headers=kit.headers)).json()
        assert [(e["scope"], e["activity"]) for e in by_user["results"]] == [
            ("ChangeRequest", "applied"), ("ChangeRequest", "approved"),
        ]
        paged = (await client.get(f"{kit.base}/activity_log/?limit=2&offset=2", headers=kit.headers)).json()
        assert [e["id"] for e in paged["results"]] == [e["id"] for e in entries[2:4]]
        assert paged["previous"] is not None and paged["next"] is not None

    async def test_scope_and_project_isolation(self, kit, client, app):
        other = await make_kit(app, client)
        await create_flag(other, filters=MULTIVARIATE_FILTERS)
        assert (await client.get(f"{kit.base}/activity_log/", headers=kit.headers)).json()["count"] == 0
        headers, _ = await kit.key(["experiment:read"])
        denied = await client.get(f"{kit.base}/activity_log/", headers=headers)
        assert denied.status_code == 403
        assert denied.json()["detail"] == "API key missing required scope 'activity_log:read'"
        allowed, _ = await kit.key(["activity_log:read"])
        assert (await client.get(f"{kit.base}/activity_log/", headers=allowed)).status_code == 200
        foreign = await client.get(f"{other.base}/activity_log/", headers=kit.headers)
        assert foreign.status_code == 403
        assert foreign.json()["detail"] == "You don't have access to the project."
