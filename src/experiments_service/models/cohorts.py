"""Cohorts: dynamic (person-property filters) or static (a list of distinct ids)."""

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from experiments_service.models.base import Base, utcnow


class Cohort(Base):
    __tablename__ = "cohorts"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(400), default=None)
    description: Mapped[str] = mapped_column(String(1000), default="")
    filters: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    groups: Mapped[list[Any]] = mapped_column(default=list)
    is_static: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(default=1)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_calculation: Mapped[datetime | None] = mapped_column(default=None)


class CohortStaticMember(Base):
    """A distinct id listed in a static cohort; the cohort holds the person it belongs to."""

    __tablename__ = "cohort_static_members"

    cohort_id: Mapped[int] = mapped_column(ForeignKey("cohorts.id", ondelete="CASCADE"), primary_key=True)
    distinct_id: Mapped[str] = mapped_column(String(400), primary_key=True)
