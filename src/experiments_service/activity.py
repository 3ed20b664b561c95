"""The per-project activity log writer: who did what to which object, before and after."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from experiments_service.models import ActivityLog


def field_changes(scope: str, before: Any, after: Any) -> list[dict[str, Any]] | None:
    """PostHog's `detail.changes`: one `{type, action, field, before, after}` per field that differs."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    return [
        {"type": scope, "action": "changed", "field": field, "before": before.get(field), "after": after.get(field)}
        for field in dict.fromkeys([*before, *after])
        if before.get(field) != after.get(field)
    ]


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
    changes: list[dict[str, Any]] | None = None,
) -> None:
    """Add one entry to the caller's transaction (so it commits or rolls back with the change).

    `changes` defaults to the field-by-field difference of `before` and `after`; a creation or a
    deletion carries none, as in PostHog.
    """
    if changes is None and activity not in ("created", "deleted"):
        changes = field_changes(scope, before, after)
    detail: dict[str, Any] = {"name": name, "before": before, "after": after, "changes": changes}
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
