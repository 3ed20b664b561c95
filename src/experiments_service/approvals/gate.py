"""The approval gate on the flag write path (registered as a flag gate, see `flags/changes.py`).

`check_flag_change` runs before any flag change is written. When an enabled approval policy of
the project matches the change, it raises the 409 (`ApprovalRequired`) carrying a deferred write:
the request's transaction is rolled back (the experiment and the flag stay untouched) and only
then is the pending change request stored and committed.
"""

import copy
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.approvals.errors import PENDING_MESSAGE, ApprovalRequired, PolicyConflict
from experiments_service.approvals.policies import (
    ENABLE,
    UPDATE,
    DetectedAction,
    conditions_match,
    detect_actions,
)
from experiments_service.approvals.repository import ApprovalRepository
from experiments_service.approvals.schemas import ChangeRequestOut
from experiments_service.approvals.service import (
    expire_due,
    load_users,
    policy_label,
    record_change_request,
    render_change_requests,
)
from experiments_service.flags.changes import FlagChange
from experiments_service.models import ApprovalPolicy, ChangeRequest, FeatureFlag, User, utcnow

RESOURCE_TYPE = "feature_flag"
APPROVAL_MESSAGE = "A change request has been created and is pending approval."
APPROVAL_FROM_OTHERS_MESSAGE = "A change request has been created and is pending approval from others."


async def check_flag_change(change: FlagChange) -> None:
    """Let the change through, or raise `ApprovalRequired` (409) after storing a change request."""
    session, project_id, actor, flag = change.session, change.project_id, change.actor, change.flag
    changes, request_data = change.changes, change.request_data
    detected = detect_actions(flag.active, flag.filters or {}, changes)
    if not detected:
        return
    repo = ApprovalRepository(session, project_id)
    policies = await repo.enabled_policies(action.action_key for action in detected)
    actor_id = actor.id if actor is not None else None
    required = [
        (action, policy)
        for action in detected
        for policy in policies
        if policy.action_key == action.action_key
        and actor_id not in (policy.bypass_users or [])
        and conditions_match(policy.conditions, action)
    ]
    if not required:
        return
    if len(required) > 1:
        raise PolicyConflict([{"id": str(policy.id), "name": policy_label(policy)} for _, policy in required])
    action, policy = required[0]
    resource_id = str(flag.id)

    async def open_request(open_repo: ApprovalRepository) -> ChangeRequest | None:
        return await open_repo.open_change_request(
            action_key=action.action_key, resource_type=RESOURCE_TYPE, resource_id=resource_id, now=utcnow()
        )

    existing = await open_request(repo)
    if existing is not None:
        raise ApprovalRequired(await _pending_body(session, repo, existing, actor_id))

    change_request = _new_change_request(project_id, actor_id, flag, changes, request_data, action, policy)
    users = await load_users(session, [actor_id])
    approvers = {name: change_request.policy_snapshot[name] for name in ("quorum", "users")}
    needs_others = not policy.allow_self_approve and actor_id in approvers["users"]
    message = APPROVAL_FROM_OTHERS_MESSAGE if needs_others else APPROVAL_MESSAGE
    rendered = ChangeRequestOut.of(change_request, votes=[], users=users, viewer_id=actor_id).model_dump(mode="json")
    error = ApprovalRequired(_body("approval_required", message, change_request, rendered, approvers))

    async def store_change_request(clean_session: AsyncSession) -> None:
        """Runs after the rollback: persist the request, unless a concurrent one got there first."""
        await expire_due(clean_session, project_id, resource_id=resource_id)
        clean_repo = ApprovalRepository(clean_session, project_id)
        try:
            async with clean_session.begin_nested():
                clean_repo.add(change_request)
                record_change_request(clean_session, change_request, "created", user_id=actor_id, before_state=None)
                await clean_session.flush()
        except IntegrityError:
            winner = await open_request(clean_repo)
            if winner is None:
                raise
            error.body = await _pending_body(clean_session, clean_repo, winner, actor_id)

    error.after_rollback = store_change_request
    raise error


async def _pending_body(
    session: AsyncSession, repo: ApprovalRepository, existing: ChangeRequest, viewer_id: int | None
) -> dict[str, Any]:
    [rendered] = await render_change_requests(session, repo, [existing], viewer_id)
    return _body("change_request_pending", PENDING_MESSAGE, existing, rendered.model_dump(mode="json"), {})


def _body(
    code: str, message: str, change_request: ChangeRequest, rendered: dict[str, Any], approvers: dict[str, Any]
) -> dict[str, Any]:
    """PostHog's 409 body for a gated change."""
    return {
        "code": code,
        "status": "approval_required",
        "detail": message,
        "message": message,
        "resource_type": change_request.resource_type,
        "resource_id": change_request.resource_id,
        "change_request_id": str(change_request.id),
        "change_request": rendered,
        "required_approvers": approvers,
    }


def _new_change_request(
    project_id: int,
    actor_id: int | None,
    flag: FeatureFlag,
    changes: dict[str, Any],
    request_data: dict[str, Any],
    action: DetectedAction,
    policy: ApprovalPolicy,
) -> ChangeRequest:
    """A pending request whose intent replays `changes` on the flag once approved."""
    now = utcnow()
    intent: dict[str, Any] = {
        "flag_id": flag.id,
        "flag_key": flag.key,
        "current_state": action.current_state,
        "gated_changes": action.gated_changes,
        "triggered_paths": action.triggered_paths,
        # The partial flag update approval applies (PostHog replays it through the flag serializer).
        "full_request_data": copy.deepcopy(changes),
        "preconditions": {
            "version": flag.version,
            "updated_at": flag.updated_at.isoformat() if flag.updated_at else None,
        },
        # Approval applies the intent as a partial update of the flag, whichever endpoint asked.
        "http_method": "PATCH",
    }
    if request_data != changes:
        # What the caller asked for when that was not a flag update (e.g. an experiment action).
        intent["request_data"] = copy.deepcopy(request_data)
    config = policy.approver_config
    return ChangeRequest(
        id=uuid.uuid4(),
        project_id=project_id,
        policy_id=policy.id,
        action_key=action.action_key,
        action_version=1,
        resource_type=RESOURCE_TYPE,
        resource_id=str(flag.id),
        intent=intent,
        intent_display=_display(flag.key, action, intent["full_request_data"]),
        policy_snapshot={
            "quorum": config["quorum"],
            "users": list(config.get("users", [])),
            "roles": [],
            "allow_self_approve": policy.allow_self_approve,
            "conditions": policy.conditions or {},
            "bypass_org_membership_levels": [],
            "bypass_roles": [],
        },
        validation_status="valid",
        validation_errors=None,
        validated_at=None,
        state="pending",
        created_by_id=actor_id,
        applied_by_id=None,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(seconds=policy.expires_after_seconds),
        applied_at=None,
        apply_error="",
        result_data=None,
    )


def _display(flag_key: str, action: DetectedAction, full_change: dict[str, Any]) -> dict[str, Any]:
    """What approvers read: a one-line description with before and after."""
    if action.action_key != UPDATE:
        verb = "Enable" if action.action_key == ENABLE else "Disable"
        return {
            "description": f"{verb} feature flag '{flag_key}'",
            "before": action.current_state,
            "after": full_change,
        }
    before, after = action.rollout_by_path()
    steps = [
        f"rollout percentage at {path}: {before.get(path, 'N/A')}% -> {after.get(path, 'N/A')}%"
        for path in action.triggered_paths
    ]
    return {
        "description": f"Update rollout percentage for feature flag '{flag_key}': {'; '.join(steps)}",
        "before": action.current_state,
        "after": action.gated_changes,
        "triggered_paths": action.triggered_paths,
    }
