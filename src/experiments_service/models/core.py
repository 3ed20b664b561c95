"""Projects, users, membership and personal API keys."""

from uuid import UUID, uuid4
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from experiments_service.models.base import Base, utcnow


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[UUID] = mapped_column(default=uuid4, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Public project API key (`phc_...`): authenticates flag evaluation and capture only.
    api_token: Mapped[str] = mapped_column(String(100), unique=True)
    timezone: Mapped[str] = mapped_column(String(100), default="UTC")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[UUID] = mapped_column(default=uuid4, unique=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    first_name: Mapped[str] = mapped_column(String(150), default="")
    last_name: Mapped[str] = mapped_column(String(150), default="")
    distinct_id: Mapped[str] = mapped_column(String(200), unique=True)
    is_email_verified: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectMember(Base):
    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PersonalAPIKey(Base):
    """A user's `phx_` key; only a SHA-256 of the secret is stored."""

    __tablename__ = "personal_api_keys"
    __table_args__ = (UniqueConstraint("secure_value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    secure_value: Mapped[str] = mapped_column(String(128))
    mask_value: Mapped[str] = mapped_column(String(20))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    # Projects the key may reach (PostHog's `scoped_teams`); NULL or empty: every project the
    # user is a member of. Membership applies either way.
    scoped_teams: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Refreshed at most once per `LAST_USED_REFRESH` (auth/dependencies.py), not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    last_rolled_at: Mapped[datetime | None] = mapped_column(default=None)


class RateLimitCounter(Base):
    """One fixed-window request counter per limited key or token, shared by every worker
    on PostgreSQL (ratelimit/repository.py); SQLite set-ups count in process memory."""

    __tablename__ = "rate_limit_counters"

    bucket: Mapped[str] = mapped_column(String(100), primary_key=True)
    # When the current window ends, in epoch milliseconds (a later hit past it starts a new one).
    expires_at: Mapped[int] = mapped_column(BigInteger)
    hits: Mapped[int] = mapped_column(Integer)
