"""The gate called directly on a session, as any caller of `FlagService.update_flag` meets it."""

import pytest

from experiments_service.approvals.errors import ApprovalRequired
from experiments_service.flags.service import FlagService
from experiments_service.models import FeatureFlag, User
from tests.approvals.factories import MULTIVARIATE_FILTERS, change_requests, create_policy, member
from tests.factories import create_flag


async def _update(app, kit, flag_id: int, changes: dict) -> None:
    async with app.state.db.transaction() as session:
        actor = await session.get(User, kit.user_id)
        flag = await session.get(FeatureFlag, flag_id)
        await FlagService(session, kit.project_id, actor).update_flag(flag, changes)


class TestGateContract:
    async def test_raises_and_defers_the_change_request(self, kit, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.disable", [approver])
        flag = await create_flag(kit, active=True, filters=MULTIVARIATE_FILTERS)

        with pytest.raises(ApprovalRequired) as gated:
            await _update(app, kit, flag["id"], {"active": False, "name": "off"})

        # Nothing is stored until the caller runs the deferred write after its rollback.
        assert await change_requests(app, kit.project_id) == []
        assert gated.value.status_code == 409
        assert gated.value.body["code"] == "approval_required"
        async with app.state.db.transaction() as session:
            await gated.value.after_rollback(session)
        [stored] = await change_requests(app, kit.project_id)
        assert str(stored.id) == gated.value.body["change_request_id"]
        assert stored.intent["full_request_data"] == {"active": False, "name": "off"}
        async with app.state.db.sessionmaker() as session:
            unchanged = await session.get(FeatureFlag, flag["id"])
            assert (unchanged.active, unchanged.name) == (True, flag["name"])

    async def test_unchanged_fields_never_reach_the_gate(self, kit, app):
        _, approver = await member(kit)
        await create_policy(kit, "feature_flag.enable", [approver])
        flag = await create_flag(kit, active=True, filters=MULTIVARIATE_FILTERS)
        await _update(app, kit, flag["id"], {"active": True})
        assert await change_requests(app, kit.project_id) == []
