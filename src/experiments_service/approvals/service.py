"""Approval policies and the change-request lifecycle: vote, apply, reject, cancel, expire.

Change-request states: `pending` -> `applied` | `failed` (quorum reached: the stored intent is
applied at once, or refused when the flag moved since the request) | `rejected` (an approver
said no, or the requester cancelled) | `expired` (past `expires_at`, never applied).
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.activity import record_activity
from experiments_service.approvals.errors import ChangeRequestExpired
from experiments_service.approvals.policies import (
    ACTION_KEYS,
    DEFAULT_EXPIRES_AFTER,
    InvalidPolicy,
    parse_duration,
    validate_conditions,
)
from experiments_service.approvals.repository import ApprovalRepository
from experiments_service.approvals.schemas import ActivityLogEntry, ApprovalPolicyOut, ChangeRequestOut
from experiments_service.auth.repository import AuthRepository
from experiments_service.errors import APIError, NotFound, PermissionDenied, ValidationError
from experiments_service.flags.service import FlagService
from experiments_service.models import Approval, ApprovalPolicy, ChangeRequest, User, utcnow
from experiments_service.pagination import PageRequest

CHANGE_REQUEST_SCOPE = "ChangeRequest"
POLICY_SCOPE = "ApprovalPolicy"
POLICY_FIELDS = (
    "action_key", "name", "conditions", "approver_config", "allow_self_approve", "bypass_users",
    "expires_after_seconds", "enabled",
)  # fmt: skip


def policy_label(policy: ApprovalPolicy) -> str:
    """How a policy is named to people (its name, else its action)."""
    return policy.name or f"{policy.action_key} policy"


def _policy_state(policy: ApprovalPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in POLICY_FIELDS}


class _ProjectService:
    """What one project member does in one project, on the request's session."""

    def __init__(self, session: AsyncSession, project_id: int, actor: User):
        self.session = session
        self.project_id = project_id
        self.actor = actor
        self.repo = ApprovalRepository(session, project_id)


class PolicyService(_ProjectService):
    """Create, change and delete a project's approval policies (one per action)."""

    async def page(
        self, page: PageRequest, *, action_key: str | None, enabled: bool | None
    ) -> tuple[list[ApprovalPolicyOut], int]:
        policies, total = await self.repo.list_policies(page, action_key=action_key, enabled=enabled)
        users = await load_users(self.session, [policy.created_by_id for policy in policies])
        return [ApprovalPolicyOut.of(policy, users) for policy in policies], total

    async def render(self, policy: ApprovalPolicy) -> ApprovalPolicyOut:
        return ApprovalPolicyOut.of(policy, await load_users(self.session, [policy.created_by_id]))

    async def get(self, policy_id: UUID) -> ApprovalPolicy:
        policy = await self.repo.get_policy(policy_id)
        if policy is None:
            raise NotFound()
        return policy

    async def create(self, fields: dict[str, Any]) -> ApprovalPolicy:
        policy = ApprovalPolicy(project_id=self.project_id, created_by_id=self.actor.id, name="")
        policy.expires_after_seconds = int(DEFAULT_EXPIRES_AFTER.total_seconds())
        await self._assign(policy, fields, creating=True)
        self.repo.add(policy)
        await self.session.flush()
        self._record(policy, "created", before=None, after=_policy_state(policy))
        return policy

    async def update(self, policy: ApprovalPolicy, fields: dict[str, Any]) -> ApprovalPolicy:
        before = _policy_state(policy)
        await self._assign(policy, fields, creating=False)
        policy.updated_at = utcnow()
        await self.session.flush()
        after = _policy_state(policy)
        changed = [name for name in POLICY_FIELDS if before[name] != after[name]]
        self._record(
            policy, "updated", before={n: before[n] for n in changed}, after={n: after[n] for n in changed}
        )
        return policy

    async def delete(self, policy: ApprovalPolicy) -> None:
        self._record(policy, "deleted", before=_policy_state(policy), after=None)
        await self.repo.delete(policy)
        await self.session.flush()

    def _record(self, policy: ApprovalPolicy, activity: str, *, before: Any, after: Any) -> None:
        record_activity(
            self.session, project_id=self.project_id, user_id=self.actor.id, scope=POLICY_SCOPE,
            item_id=policy.id, activity=activity, name=policy_label(policy), before=before, after=after,
        )

    async def _assign(self, policy: ApprovalPolicy, fields: dict[str, Any], *, creating: bool) -> None:
        """Validate the given fields against the policy as it will be, then set them."""
        fields = {name: value for name, value in fields.items() if creating or value is not None}
        action_key = fields.get("action_key", policy.action_key)
        if action_key not in ACTION_KEYS:
            raise ValidationError(f'"{action_key}" is not a valid choice.', code="invalid_choice", attr="action_key")
        if "action_key" in fields and await self.repo.policy_exists_for_action(action_key, excluding_id=policy.id):
            raise ValidationError(
                "A policy for this action already exists. You can edit the existing policy instead.",
                attr="action_key",
            )
        try:
            if "conditions" in fields or "action_key" in fields:
                policy.conditions = validate_conditions(fields.get("conditions", policy.conditions), action_key)
            if "approver_config" in fields:
                policy.approver_config = await self._approver_config(fields["approver_config"])
            if "bypass_users" in fields:
                policy.bypass_users = await self._members(fields["bypass_users"], "bypass_users")
            if fields.get("expires_after") is not None:
                policy.expires_after_seconds = max(1, round(parse_duration(fields["expires_after"]).total_seconds()))
        except InvalidPolicy as error:
            raise ValidationError(str(error), code=error.code, attr=error.attr) from None
        policy.action_key = action_key
        for name in ("name", "allow_self_approve", "enabled"):
            if name in fields:
                setattr(policy, name, fields[name])

    async def _members(self, user_ids: list[int], attr: str) -> list[int]:
        unique = list(dict.fromkeys(user_ids))
        members = await self.repo.member_ids(unique)
        missing = [user_id for user_id in unique if user_id not in members]
        if missing:
            listed = ", ".join(str(user_id) for user_id in missing)
            raise ValidationError(f"Users are not members of this project: {listed}.", code="does_not_exist", attr=attr)
        return unique

    async def _approver_config(self, config: Any) -> dict[str, Any]:
        if not isinstance(config, dict):
            raise InvalidPolicy('Expected a dictionary like {"quorum": 1, "users": [...]}.', "approver_config", "invalid")
        unknown = sorted(set(config) - {"quorum", "users", "roles"})
        if unknown:
            raise InvalidPolicy(f"Unknown approver_config keys: {', '.join(unknown)}.", "approver_config")
        if config.get("roles"):
            raise InvalidPolicy("Approver roles are not supported; list approver users.", "approver_config")
        quorum = config.get("quorum")
        if isinstance(quorum, bool) or not isinstance(quorum, int):
            raise InvalidPolicy("Quorum must be an integer.", "approver_config", "invalid")
        if quorum < 1:
            raise InvalidPolicy("Quorum must be at least 1", "approver_config", "min_value")
        users = config.get("users", [])
        if not isinstance(users, list) or any(isinstance(u, bool) or not isinstance(u, int) for u in users):
            raise InvalidPolicy("Approver users must be a list of user ids.", "approver_config", "invalid")
        users = await self._members(users, "approver_config")
        if quorum > len(users):
            raise InvalidPolicy(
                f"Quorum ({quorum}) cannot exceed the number of approvers ({len(users)}).", "approver_config"
            )
        return {"quorum": quorum, "users": users}


async def load_users(session: AsyncSession, ids: list[int | None]) -> dict[int, User]:
    return await AuthRepository(session).users_by_ids([user_id for user_id in ids if user_id is not None])


async def render_change_requests(
    session: AsyncSession, repo: ApprovalRepository, requests: list[ChangeRequest], viewer_id: int | None
) -> list[ChangeRequestOut]:
    """Full representations (votes and users loaded in two queries)."""
    votes = await repo.votes_by_request(request.id for request in requests)
    user_ids = [uid for r in requests for uid in (r.created_by_id, r.applied_by_id)]
    user_ids += [vote.created_by_id for group in votes.values() for vote in group]
    users = await load_users(session, user_ids)
    return [
        ChangeRequestOut.of(request, votes=votes.get(request.id, []), users=users, viewer_id=viewer_id)
        for request in requests
    ]


def record_change_request(
    session: AsyncSession, request: ChangeRequest, activity: str, *, user_id: int | None, before_state: str | None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Log a change request's step (created, approved, rejected, cancelled, applied, failed, expired)."""
    record_activity(
        session,
        project_id=request.project_id,
        user_id=user_id,
        scope=CHANGE_REQUEST_SCOPE,
        item_id=request.id,
        activity=activity,
        name=(request.intent_display or {}).get("description"),
        before=None if before_state is None else {"state": before_state},
        after={"state": request.state},
        extra={
            "action_key": request.action_key,
            "resource_type": request.resource_type,
            "resource_id": request.resource_id,
            **(extra or {}),
        },
    )


async def activity_page(
    session: AsyncSession, project_id: int, page: PageRequest, *, scope: str | None, item_id: str | None,
    user_id: int | None,
) -> tuple[list[ActivityLogEntry], int]:
    """A page of the project's activity log, newest first."""
    entries, total = await ApprovalRepository(session, project_id).list_activity(
        page, scope=scope, item_id=item_id, user_id=user_id
    )
    users = await load_users(session, [entry.user_id for entry in entries])
    return [ActivityLogEntry.of(entry, users) for entry in entries], total


async def expire_due(session: AsyncSession, project_id: int, *, resource_id: str | None = None) -> int:
    """Mark pending requests past `expires_at` as expired (they are never applied)."""
    now = utcnow()
    due = await ApprovalRepository(session, project_id).pending_past_expiry(now, resource_id=resource_id)
    for request in due:
        request.state = "expired"
        request.validation_status = "expired"
        request.updated_at = now
        record_change_request(session, request, "expired", user_id=None, before_state="pending")
    if due:
        await session.flush()
    return len(due)


@dataclass
class Decision:
    """The outcome of a vote or a cancellation, as the decision endpoints report it."""

    request: ChangeRequest
    status: str
    message: str
    result: dict[str, Any] | None = None


class ChangeRequestService(_ProjectService):
    """What a project member can do with change requests."""

    async def render(self, requests: list[ChangeRequest]) -> list[ChangeRequestOut]:
        return await render_change_requests(self.session, self.repo, requests, self.actor.id)

    async def page(self, page: PageRequest, **filters: Any) -> tuple[list[ChangeRequestOut], int]:
        """A page of change requests (read only: lapsed ones read as expired, see `shown_state`)."""
        requests, total = await self.repo.list_change_requests(page, now=utcnow(), **filters)
        return await self.render(requests), total

    async def get(self, change_request_id: UUID) -> ChangeRequest:
        request = await self.repo.get_change_request(change_request_id)
        if request is None:
            raise NotFound()
        return request

    async def _locked(self, change_request_id: UUID) -> ChangeRequest:
        request = await self.repo.get_change_request(change_request_id, for_update=True)
        if request is None:
            raise NotFound()
        return request

    def _ensure_open(self, request: ChangeRequest, verb: str) -> None:
        """Refuse a request unless pending and unexpired (an expired one is marked so)."""
        if request.state == "pending" and request.expires_at <= utcnow():
            project_id, resource_id = self.project_id, request.resource_id

            async def mark_expired(session: AsyncSession) -> None:
                await expire_due(session, project_id, resource_id=resource_id)

            raise ChangeRequestExpired(mark_expired)
        if request.state != "pending":
            raise ValidationError(f"This change request can no longer be {verb}.", code="invalid_state")

    def _vote(self, request: ChangeRequest, decision: str, reason: str) -> None:
        self.repo.add(
            Approval(change_request_id=request.id, created_by_id=self.actor.id, decision=decision, reason=reason)
        )

    async def _check_can_vote(self, request: ChangeRequest, verb: str) -> list[Approval]:
        """Refuse a voter the snapshot does not allow; else the votes cast so far."""
        votes = (await self.repo.votes_by_request([request.id])).get(request.id, [])
        snapshot = request.policy_snapshot or {}
        if request.created_by_id == self.actor.id and not snapshot.get("allow_self_approve"):
            raise PermissionDenied(f"You cannot {verb} your own change request")
        if self.actor.id not in snapshot.get("users", []):
            raise PermissionDenied("You are not in the approver set for this change request")
        if any(vote.created_by_id == self.actor.id for vote in votes):
            raise ValidationError("You have already voted on this change request.", code="already_voted")
        return votes

    async def approve(self, change_request_id: UUID, reason: str) -> Decision:
        """Record an approval; on quorum apply the intent."""
        request = await self._locked(change_request_id)
        self._ensure_open(request, "approved")
        votes = await self._check_can_vote(request, "approve")
        self._vote(request, "approved", reason)
        approvers = set((request.policy_snapshot or {}).get("users", []))
        approved_by = {v.created_by_id for v in votes if v.decision == "approved"} | {self.actor.id}
        count, quorum = len(approved_by & approvers), int((request.policy_snapshot or {}).get("quorum", 1))
        request.updated_at = utcnow()
        record_change_request(
            self.session, request, "approved", user_id=self.actor.id, before_state="pending",
            extra={"approvals": count, "quorum": quorum},
        )
        if count < quorum:
            await self.session.flush()
            return Decision(request, "approved", f"Approval recorded. {count}/{quorum} approvals received.")
        request.state = "approved"
        await self.session.flush()
        result = await self._apply(request)
        if request.state == "failed":
            return Decision(request, "failed", f"Quorum reached but application failed: {request.apply_error}")
        return Decision(request, "applied", "Quorum reached. Change applied successfully.", result)

    async def _apply(self, request: ChangeRequest) -> dict[str, Any] | None:
        """Write the approved intent to the flag in this transaction, unless the flag moved."""
        intent = request.intent or {}
        requester = await AuthRepository(self.session).user(request.created_by_id) if request.created_by_id else None
        flags = FlagService(self.session, self.project_id, requester)
        flag = await flags.get_for_write(int(intent["flag_id"]))
        expected = (intent.get("preconditions") or {}).get("version")
        error = None
        if flag is None or flag.deleted:
            error = "Precondition failed: the feature flag no longer exists."
        elif flag.version != expected:
            error = (
                f"Precondition failed: Flag version mismatch: expected {expected}, got {flag.version}. "
                "The flag changed after this request was made; request the change again."
            )
        else:
            try:
                async with self.session.begin_nested():
                    # The one flag write path, past its gates: listeners (experiments following
                    # the flag's `active`, activity log, version stamp) run as for any change.
                    await flags.update_flag(flag, intent.get("full_request_data") or {}, approved=True)
            except SQLAlchemyError:
                error = "Apply failed: the change conflicts with the project's current flags (e.g. a key now taken)."
            except (APIError, ValueError) as failure:
                error = f"Apply failed: {failure}"
        now = utcnow()
        request.updated_at = now
        if error is not None:
            request.state = "failed"
            request.apply_error = error
            record_change_request(
                self.session, request, "failed", user_id=self.actor.id, before_state="approved",
                extra={"apply_error": error},
            )
            await self.session.flush()
            return None
        request.state = "applied"
        request.applied_at = now
        request.applied_by_id = request.created_by_id
        request.result_data = {"resource_id": flag.id, "resource_version": flag.version}
        record_change_request(self.session, request, "applied", user_id=self.actor.id, before_state="approved")
        await self.session.flush()
        return request.result_data

    async def reject(self, change_request_id: UUID, reason: str) -> Decision:
        request = await self._locked(change_request_id)
        self._ensure_open(request, "rejected")
        await self._check_can_vote(request, "reject")
        if not reason:
            raise ValidationError("A reason is required for rejection.", code="required", attr="reason")
        await self._close_rejected(request, "rejected", reason)
        return Decision(request, "rejected", "Change request rejected.")

    async def cancel(self, change_request_id: UUID, reason: str) -> Decision:
        """The requester withdraws a pending request: it becomes `rejected` with their note."""
        request = await self._locked(change_request_id)
        if request.created_by_id != self.actor.id:
            raise PermissionDenied("You cannot cancel this change request")
        self._ensure_open(request, "canceled")
        reason = reason or "Canceled by requester"
        await self._close_rejected(request, "cancelled", reason)
        return Decision(request, "rejected", "Change request canceled.")

    async def _close_rejected(self, request: ChangeRequest, activity: str, reason: str) -> None:
        """End a pending request `rejected` with the actor's note (a rejection or a cancellation)."""
        self._vote(request, "rejected", reason)
        request.state = "rejected"
        request.updated_at = utcnow()
        record_change_request(
            self.session, request, activity, user_id=self.actor.id, before_state="pending", extra={"reason": reason}
        )
        await self.session.flush()

