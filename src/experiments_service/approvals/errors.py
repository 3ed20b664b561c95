"""Errors of the approvals domain.

Some of them carry a deferred write (`after_rollback`): the request's transaction is rolled back
so the refused change leaves nothing behind, and `TransactionalRoute` then runs the deferred
write on the same session and commits it (the stored change request of a 409, a change request
found expired). Outside a request, callers run it themselves.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.errors import CustomBodyError, ValidationError

DeferredWrite = Callable[[AsyncSession], Awaitable[None]]

POLICY_CONFLICT_MESSAGE = "This change matches multiple approval policies"
POLICY_CONFLICT_GUIDANCE = "Split your changes into separate API calls to address each policy independently"
PENDING_MESSAGE = "A pending approval request already exists for this action"


class ApprovalRequired(CustomBodyError):
    """409: the change needs approval; `body` is PostHog's reference body.

    `after_rollback` stores the new change request once everything else the request did has
    been discarded; it may replace `body` (when a concurrent request stored one first).
    """

    after_rollback: DeferredWrite | None = None

    def __init__(self, body: dict[str, Any]):
        super().__init__(409, body)


class PolicyConflict(CustomBodyError):
    """400: one change matches several approval policies and cannot be gated as one request."""

    def __init__(self, conflicting_policies: list[dict[str, str]]):
        super().__init__(
            400,
            {
                "code": "policy_conflict",
                "error": POLICY_CONFLICT_MESSAGE,
                "conflicting_policies": conflicting_policies,
                "guidance": POLICY_CONFLICT_GUIDANCE,
            },
        )


class ChangeRequestExpired(ValidationError):
    """400 for acting on a change request past its expiry; marks it `expired` after the rollback."""

    def __init__(self, after_rollback: DeferredWrite):
        super().__init__("This change request has expired.", code="expired")
        self.after_rollback = after_rollback
