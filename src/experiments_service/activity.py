"""The per-project activity log writer: who did what to which object, before and after."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import ActivityLog


def record_activity(
    session: AsyncSession,
    *,
    project_id: int,
    user_id: int | None,
    scope: str,
    item_id: Any,
    activity: str,
    name: str | None = None,
    before: Any = None,
    after: Any = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Add one entry to the caller's transaction (so it commits or rolls back with the change)."""
    detail: dict[str, Any] = {"name": name, "before": before, "after": after}
    if extra:
        detail.update(extra)
    session.add(
        ActivityLog(
            project_id=project_id,
            user_id=user_id,
            scope=scope,
            item_id=None if item_id is None else str(item_id),
            activity=activity,
            detail=detail,
        )
    )
