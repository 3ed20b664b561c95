"""Approval policies, change requests, their approvals, and the activity log."""

from uuid import UUID, uuid4
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from experiments_service.models.base import Base, utcnow


class ApprovalPolicy(Base):
    __tablename__ = "approval_policies"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    action_key: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(400), default="")
    conditions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    approver_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    allow_self_approve: Mapped[bool] = mapped_column(Boolean, default=False)
    bypass_users: Mapped[list[Any]] = mapped_column(default=list)
    expires_after_seconds: Mapped[int] = mapped_column(default=14 * 24 * 3600)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChangeRequest(Base):
    __tablename__ = "change_requests"
    __table_args__ = (
        Index("ix_change_requests_resource", "project_id", "resource_type", "resource_id", "state"),
        # At most one open (pending or approved) request per action and resource, even under races.
        Index(
            "uq_change_requests_open_action",
            "project_id",
            "action_key",
            "resource_type",
            "resource_id",
            unique=True,
            postgresql_where=text("state IN ('pending', 'approved')"),
            sqlite_where=text("state IN ('pending', 'approved')"),
        ),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    policy_id: Mapped[UUID | None] = mapped_column(ForeignKey("approval_policies.id", ondelete="SET NULL"))
    action_key: Mapped[str] = mapped_column(String(100))
    action_version: Mapped[int] = mapped_column(default=1)
    resource_type: Mapped[str] = mapped_column(String(100))
    resource_id: Mapped[str | None] = mapped_column(String(100))
    intent: Mapped[dict[str, Any]] = mapped_column(default=dict)
    intent_display: Mapped[dict[str, Any]] = mapped_column(default=dict)
    policy_snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    validation_status: Mapped[str] = mapped_column(String(20), default="valid")
    validation_errors: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    validated_at: Mapped[datetime | None] = mapped_column(default=None)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    applied_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    applied_at: Mapped[datetime | None] = mapped_column(default=None)
    apply_error: Mapped[str] = mapped_column(Text, default="")
    result_data: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class Approval(Base):
    __tablename__ = "approvals"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    change_request_id: Mapped[UUID] = mapped_column(ForeignKey("change_requests.id", ondelete="CASCADE"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decision: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ActivityLog(Base):
    """Who did what to which object, with before/after, per project."""

    __tablename__ = "activity_log"
    __table_args__ = (Index("ix_activity_log_project_scope", "project_id", "scope", "item_id"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    scope: Mapped[str] = mapped_column(String(79))
    item_id: Mapped[str | None] = mapped_column(String(72))
    activity: Mapped[str] = mapped_column(String(79))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
