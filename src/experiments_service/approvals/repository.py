"""All SQL for approval policies, change requests, their votes and the activity log."""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Select, and_, not_, or_, select

from experiments_service.models import ActivityLog, Approval, ApprovalPolicy, ChangeRequest, ProjectMember
from experiments_service.pagination import PageRequest, fetch_page
from experiments_service.repository import ProjectRepository

# States in which a change request still blocks a new one for the same action and resource.
OPEN_STATES = ("pending", "approved")


def _where_given(query: Select, filters: dict[Any, Any]) -> Select:
    """`query` narrowed to rows whose column equals each filter value that was given (not None)."""
    return query.where(*(column == value for column, value in filters.items() if value is not None))


def _in_shown_states(states: list[str], now: datetime) -> ColumnElement[bool]:
    """Rows whose read state is one of `states`: pending past expiry reads as expired."""
    lapsed = and_(ChangeRequest.state == "pending", ChangeRequest.expires_at <= now)
    conditions = [and_(ChangeRequest.state.in_(states), not_(lapsed))]
    if "expired" in states:
        conditions.append(lapsed)
    return or_(*conditions)


class ApprovalRepository(ProjectRepository):

    async def delete(self, obj: Any) -> None:
        await self.session.delete(obj)

    # --- members ------------------------------------------------------------------------------

    async def member_ids(self, user_ids: Iterable[int]) -> set[int]:
        """Which of `user_ids` are members of this project."""
        wanted = set(user_ids)
        if not wanted:
            return set()
        query = select(ProjectMember.user_id).where(
            ProjectMember.project_id == self.project_id, ProjectMember.user_id.in_(wanted)
        )
        return set((await self.session.execute(query)).scalars())

    # --- policies -----------------------------------------------------------------------------

    def _policies(self) -> Select:
        return select(ApprovalPolicy).where(ApprovalPolicy.project_id == self.project_id)

    async def list_policies(
        self, page: PageRequest, *, action_key: str | None = None, enabled: bool | None = None
    ) -> tuple[list[ApprovalPolicy], int]:
        query = _where_given(self._policies(), {ApprovalPolicy.action_key: action_key})
        if enabled is not None:
            query = query.where(ApprovalPolicy.enabled.is_(enabled))
        return await fetch_page(self.session, query.order_by(ApprovalPolicy.created_at.desc(), ApprovalPolicy.id), page)

    async def get_policy(self, policy_id: UUID) -> ApprovalPolicy | None:
        query = self._policies().where(ApprovalPolicy.id == policy_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def policy_exists_for_action(self, action_key: str, *, excluding_id: UUID | None = None) -> bool:
        query = self._policies().where(ApprovalPolicy.action_key == action_key)
        if excluding_id is not None:
            query = query.where(ApprovalPolicy.id != excluding_id)
        return (await self.session.execute(query.limit(1))).first() is not None

    async def enabled_policies(self, action_keys: Iterable[str]) -> list[ApprovalPolicy]:
        query = self._policies().where(
            ApprovalPolicy.enabled.is_(True), ApprovalPolicy.action_key.in_(set(action_keys))
        )
        return list((await self.session.execute(query.order_by(ApprovalPolicy.created_at))).scalars())

    # --- change requests ----------------------------------------------------------------------

    def _change_requests(self) -> Select:
        return select(ChangeRequest).where(ChangeRequest.project_id == self.project_id)

    async def get_change_request(self, change_request_id: UUID, *, for_update: bool = False) -> ChangeRequest | None:
        query = self._change_requests().where(ChangeRequest.id == change_request_id)
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def list_change_requests(
        self,
        page: PageRequest,
        *,
        states: list[str] | None = None,
        action_key: str | None = None,
        resource_type: str | None = None,
        resource_id: str | None = None,
        requester_id: int | None = None,
        now: datetime,
    ) -> tuple[list[ChangeRequest], int]:
        """A page of requests, filtered by the state they read as (see `schemas.shown_state`)."""
        query = _where_given(
            self._change_requests(),
            {
                ChangeRequest.action_key: action_key,
                ChangeRequest.resource_type: resource_type,
                ChangeRequest.resource_id: resource_id,
                ChangeRequest.created_by_id: requester_id,
            },
        )
        if states:
            query = query.where(_in_shown_states(states, now))
        return await fetch_page(self.session, query.order_by(ChangeRequest.created_at.desc(), ChangeRequest.id), page)

    async def open_change_request(
        self, *, action_key: str, resource_type: str, resource_id: str | None, now: datetime
    ) -> ChangeRequest | None:
        """The pending (not yet expired) or approved request for this action and resource."""
        query = self._change_requests().where(
            ChangeRequest.action_key == action_key,
            ChangeRequest.resource_type == resource_type,
            ChangeRequest.resource_id == resource_id,
            ChangeRequest.state.in_(OPEN_STATES),
            or_(ChangeRequest.state == "approved", ChangeRequest.expires_at > now),
        )
        return (await self.session.execute(query.limit(1))).scalar_one_or_none()

    async def pending_past_expiry(self, now: datetime, *, resource_id: str | None = None) -> list[ChangeRequest]:
        query = self._change_requests().where(ChangeRequest.state == "pending", ChangeRequest.expires_at <= now)
        if resource_id is not None:
            query = query.where(ChangeRequest.resource_id == resource_id)
        return list((await self.session.execute(query.with_for_update())).scalars())

    async def votes_by_request(self, change_request_ids: Iterable[UUID]) -> dict[UUID, list[Approval]]:
        ids = set(change_request_ids)
        grouped: dict[UUID, list[Approval]] = defaultdict(list)
        if not ids:
            return grouped
        query = select(Approval).where(Approval.change_request_id.in_(ids)).order_by(Approval.created_at)
        for vote in (await self.session.execute(query)).scalars():
            grouped[vote.change_request_id].append(vote)
        return grouped

    # --- activity log -------------------------------------------------------------------------

    async def list_activity(
        self, page: PageRequest, *, scope: str | None = None, item_id: str | None = None, user_id: int | None = None
    ) -> tuple[list[ActivityLog], int]:
        query = _where_given(
            select(ActivityLog).where(ActivityLog.project_id == self.project_id),
            {ActivityLog.scope: scope, ActivityLog.item_id: item_id, ActivityLog.user_id: user_id},
        )
        return await fetch_page(self.session, query.order_by(ActivityLog.created_at.desc(), ActivityLog.id), page)
