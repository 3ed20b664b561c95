"""Request and response shapes of approval policies, change requests and the activity log."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from experiments_service.approvals.policies import DISABLE, ENABLE, UPDATE, format_duration
from experiments_service.auth.schemas import UserBasic
from experiments_service.models import ActivityLog, Approval, ApprovalPolicy, ChangeRequest, User, utcnow

ActionKey = Literal[ENABLE, DISABLE, UPDATE]

# --- approval policies --------------------------------------------------------------------------


class ApprovalPolicyCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action_key: ActionKey
    name: str = Field(default="", max_length=400)
    conditions: Any = Field(
        default_factory=dict,
        description=(
            "`{}` gates every change of the action. For `feature_flag.update` only: "
            '`{"type": "any_change"}`; `{"type": "before_after", "operator": OP, "value": N}` (a changed '
            'rollout percentage ends OP N); `{"type": "change_amount", "operator": OP, "value": N, '
            '"absolute": false}` (after - before OP N at a changed path). OP: > >= < <= == !='
        ),
    )
    approver_config: Any = Field(description='{"quorum": N, "users": [user ids of project members]}')
    allow_self_approve: bool = False
    bypass_users: list[int] = Field(default_factory=list)
    expires_after: str | float | None = Field(
        default=None, description='Duration: "DD HH:MM:SS", ISO 8601 or seconds; 14 days when omitted.'
    )
    enabled: bool = True


class ApprovalPolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action_key: ActionKey | None = None
    name: str | None = Field(default=None, max_length=400)
    conditions: Any = None
    approver_config: Any = None
    allow_self_approve: bool | None = None
    bypass_users: list[int] | None = None
    expires_after: str | float | None = None
    enabled: bool | None = None


class ApprovalPolicyOut(BaseModel):
    id: str
    name: str
    action_key: str
    conditions: dict[str, Any]
    approver_config: dict[str, Any]
    allow_self_approve: bool
    bypass_users: list[int]
    expires_after: str
    enabled: bool
    created_by: UserBasic | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, policy: ApprovalPolicy, users: dict[int, User]) -> "ApprovalPolicyOut":
        return cls(
            id=str(policy.id),
            name=policy.name,
            action_key=policy.action_key,
            conditions=policy.conditions or {},
            approver_config=policy.approver_config,
            allow_self_approve=policy.allow_self_approve,
            bypass_users=list(policy.bypass_users or []),
            expires_after=format_duration(policy.expires_after_seconds),
            enabled=policy.enabled,
            created_by=UserBasic.of(users.get(policy.created_by_id)),
            created_at=policy.created_at,
            updated_at=policy.updated_at,
        )


# --- change requests ----------------------------------------------------------------------------


class ApprovalOut(BaseModel):
    """One vote on a change request."""

    id: str
    created_by: UserBasic | None
    decision: str
    reason: str
    created_at: datetime

    @classmethod
    def of(cls, vote: Approval, users: dict[int, User]) -> "ApprovalOut":
        return cls(
            id=str(vote.id),
            created_by=UserBasic.of(users.get(vote.created_by_id)),
            decision=vote.decision,
            reason=vote.reason,
            created_at=vote.created_at,
        )


def shown_state(request: ChangeRequest) -> tuple[str, str]:
    """`(state, validation_status)` as read: a pending request past its expiry is expired.

    Reads never write; the stored row is marked expired by the next write that meets it.
    """
    if request.state == "pending" and request.expires_at <= utcnow():
        return "expired", "expired"
    return request.state, request.validation_status


class ChangeRequestOut(BaseModel):
    """PostHog's ChangeRequestSerializer, seen by `viewer` (who decides `can_approve` and friends)."""

    id: str
    action_key: str
    action_version: int
    resource_type: str
    resource_id: str | None
    intent: dict[str, Any]
    intent_display: dict[str, Any]
    policy_snapshot: dict[str, Any]
    validation_status: str
    validation_errors: dict[str, Any] | None
    validated_at: datetime | None
    state: str
    created_by: UserBasic | None
    applied_by: UserBasic | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    applied_at: datetime | None
    apply_error: str
    result_data: dict[str, Any] | None
    approvals: list[ApprovalOut]
    can_approve: bool
    can_cancel: bool
    is_requester: bool
    user_decision: str | None

    @classmethod
    def of(
        cls, request: ChangeRequest, *, votes: list[Approval], users: dict[int, User], viewer_id: int | None
    ) -> "ChangeRequestOut":
        snapshot = request.policy_snapshot or {}
        state, validation_status = shown_state(request)
        is_requester = viewer_id is not None and request.created_by_id == viewer_id
        own_vote = next((vote.decision for vote in votes if vote.created_by_id == viewer_id), None)
        return cls(
            id=str(request.id),
            action_key=request.action_key,
            action_version=request.action_version,
            resource_type=request.resource_type,
            resource_id=request.resource_id,
            intent=request.intent,
            intent_display=request.intent_display,
            policy_snapshot=snapshot,
            validation_status=validation_status,
            validation_errors=request.validation_errors,
            validated_at=request.validated_at,
            state=state,
            created_by=UserBasic.of(users.get(request.created_by_id)),
            applied_by=UserBasic.of(users.get(request.applied_by_id)),
            created_at=request.created_at,
            updated_at=request.updated_at,
            expires_at=request.expires_at,
            applied_at=request.applied_at,
            apply_error=request.apply_error or "",
            result_data=request.result_data,
            approvals=[ApprovalOut.of(vote, users) for vote in votes],
            can_approve=(
                state == "pending"
                and viewer_id is not None
                and viewer_id in snapshot.get("users", [])
                and (not is_requester or bool(snapshot.get("allow_self_approve")))
            ),
            can_cancel=is_requester and state == "pending",
            is_requester=is_requester,
            user_decision=own_vote,
        )


class DecisionIn(BaseModel):
    """Body of approve, reject and cancel; `comment` is accepted as another name for `reason`."""

    model_config = ConfigDict(extra="ignore")

    reason: str | None = None
    comment: str | None = None

    @property
    def text(self) -> str:
        return (self.reason if self.reason is not None else self.comment or "").strip()


class DecisionOut(BaseModel):
    status: str
    message: str
    change_request: ChangeRequestOut
    result: dict[str, Any] | None = None


# --- activity log -------------------------------------------------------------------------------


class ActivityLogEntry(BaseModel):
    id: str
    user: UserBasic | None
    activity: str
    scope: str
    item_id: str | None
    detail: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, entry: ActivityLog, users: dict[int, User]) -> "ActivityLogEntry":
        return cls(
            id=str(entry.id),
            user=UserBasic.of(users.get(entry.user_id)),
            activity=entry.activity,
            scope=entry.scope,
            item_id=entry.item_id,
            detail=entry.detail or {},
            created_at=entry.created_at,
        )
