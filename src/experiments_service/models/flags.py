"""Feature flags and what their evaluation needs besides the flag itself."""

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from experiments_service.models.base import Base, utcnow


class FeatureFlag(Base):
    __tablename__ = "feature_flags"
    __table_args__ = (
        # A key is unique per project among flags that are not soft-deleted.
        Index(
            "uq_feature_flags_project_key_live",
            "project_id",
            "key",
            unique=True,
            postgresql_where=text("NOT deleted"),
            sqlite_where=text("NOT deleted"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(400))
    name: Mapped[str] = mapped_column(Text, default="")
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped by the ORM on every UPDATE: PostHog's `version` and our optimistic lock at once.
    version: Mapped[int] = mapped_column(default=1)
    ensure_experience_continuity: Mapped[bool] = mapped_column(Boolean, default=False)
    has_encrypted_payloads: Mapped[bool] = mapped_column(Boolean, default=False)
    evaluation_runtime: Mapped[str] = mapped_column(String(10), default="all")
    evaluation_tags: Mapped[list[Any]] = mapped_column(default=list)
    creation_context: Mapped[str] = mapped_column(String(40), default="feature_flags")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    last_modified_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}


class FlagDefinitionsVersion(Base):
    """Per-project stamp bumped with every flag change; processes compare it to their cache."""

    __tablename__ = "flag_definitions_versions"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GroupTypeMapping(Base):
    __tablename__ = "group_type_mappings"
    __table_args__ = (
        UniqueConstraint("project_id", "group_type"),
        UniqueConstraint("project_id", "group_type_index"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    group_type: Mapped[str] = mapped_column(String(400))
    group_type_index: Mapped[int] = mapped_column()
    name_singular: Mapped[str | None] = mapped_column(String(400), default=None)
    name_plural: Mapped[str | None] = mapped_column(String(400), default=None)


class HashKeyOverride(Base):
    """Experience continuity: the identifier a person keeps hashing on for one flag."""

    __tablename__ = "hash_key_overrides"
    __table_args__ = (UniqueConstraint("project_id", "distinct_id", "feature_flag_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    distinct_id: Mapped[str] = mapped_column(String(400))
    feature_flag_key: Mapped[str] = mapped_column(String(400))
    hash_key: Mapped[str] = mapped_column(String(400))
