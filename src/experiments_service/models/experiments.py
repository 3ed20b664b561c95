"""Experiments, holdouts, saved metrics and stored metric results."""

from datetime import date, datetime
from enum import StrEnum
from uuid import UUID, uuid4
from typing import Any

from sqlalchemy import Boolean, Date, Float, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from experiments_service.models.base import Base, utcnow


class ExperimentStatus(StrEnum):
    """An experiment's lifecycle status; only the machine in `experiments/lifecycle.py` moves it."""

    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class ExperimentHoldout(Base):
    __tablename__ = "experiment_holdouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(400))
    description: Mapped[str | None] = mapped_column(String(400), default=None)
    filters: Mapped[list[Any]] = mapped_column(default=list)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ExperimentSavedMetric(Base):
    __tablename__ = "experiment_saved_metrics"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(400))
    description: Mapped[str | None] = mapped_column(String(400), default=None)
    query: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", default=None)
    tags: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(400))
    description: Mapped[str | None] = mapped_column(String(3000), default="")
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    parameters: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    secondary_metrics: Mapped[list[Any] | None] = mapped_column(default=list)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    feature_flag_id: Mapped[int] = mapped_column(ForeignKey("feature_flags.id", ondelete="RESTRICT"), index=True)
    holdout_id: Mapped[int | None] = mapped_column(ForeignKey("experiment_holdouts.id", ondelete="SET NULL"))
    start_date: Mapped[datetime | None] = mapped_column(default=None)
    end_date: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    type: Mapped[str | None] = mapped_column(String(40), default="product")
    variants: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    exposure_criteria: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    metrics: Mapped[list[Any] | None] = mapped_column(default=list)
    metrics_secondary: Mapped[list[Any] | None] = mapped_column(default=list)
    primary_metrics_ordered_uuids: Mapped[list[Any] | None] = mapped_column(default=None)
    secondary_metrics_ordered_uuids: Mapped[list[Any] | None] = mapped_column(default=None)
    stats_config: Mapped[dict[str, Any] | None] = mapped_column(default=dict)
    scheduling_config: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    only_count_matured_users: Mapped[bool] = mapped_column(Boolean, default=False)
    # draft | running | paused | stopped; written only by experiments.lifecycle.
    status: Mapped[str] = mapped_column(String(20), default=ExperimentStatus.DRAFT.value, index=True)
    conclusion: Mapped[str | None] = mapped_column(String(30), default=None)
    conclusion_comment: Mapped[str | None] = mapped_column(Text, default=None)
    # Optimistic lock: a concurrent write to the same row fails instead of being lost.
    row_version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": row_version}


class ExperimentToSavedMetric(Base):
    __tablename__ = "experiment_to_saved_metrics"
    __table_args__ = (UniqueConstraint("experiment_id", "saved_metric_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    saved_metric_id: Mapped[int] = mapped_column(ForeignKey("experiment_saved_metrics.id", ondelete="CASCADE"))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExperimentMetricResult(Base):
    """One computed (cumulative) result per metric, fingerprint and day."""

    __tablename__ = "experiment_metric_results"
    __table_args__ = (UniqueConstraint("experiment_id", "metric_uuid", "fingerprint", "query_to"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    metric_uuid: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    query_from: Mapped[datetime | None] = mapped_column(default=None)
    query_to: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="pending")
    result: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ResultsMaterialization(Base):
    """One metric's per-entity values, kept current so a results call need not join all events.

    `definition_key` hashes what the values depend on (exposure rules, start and the metric);
    `cursor` says which events are folded in (a PostgreSQL snapshot, or the last event id on
    SQLite) and `until` the upper time bound the values were computed for. `totals` holds the
    per-variant sums of the stored values, so a call need not read them all.
    """

    __tablename__ = "results_materializations"
    __table_args__ = (UniqueConstraint("experiment_id", "slot"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    slot: Mapped[str] = mapped_column(String(255))
    definition_key: Mapped[str | None] = mapped_column(String(64), default=None)
    cursor: Mapped[str | None] = mapped_column(Text, default=None)
    until: Mapped[datetime | None] = mapped_column(default=None)
    totals: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    refreshed_at: Mapped[datetime | None] = mapped_column(default=None)


class ResultsEntityValue(Base):
    """One exposed entity of a materialization: its variant and its metric value(s).

    No foreign key to the materialization: its per-row check doubles the cost of storing a
    million values. The results repository deletes the rows with their materialization, and a
    materialization's first build clears whatever is stored under its id.
    """

    __tablename__ = "results_entity_values"

    materialization_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    distinct_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    variant: Mapped[str] = mapped_column(String(400))
    value_0: Mapped[float] = mapped_column(Float)
    value_1: Mapped[float | None] = mapped_column(Float, default=None)


class ExperimentTimeseriesRecalculation(Base):
    """A durable background job: recompute the daily results of one metric."""

    __tablename__ = "experiment_timeseries_recalculations"
    __table_args__ = (
        Index(
            "uq_timeseries_recalc_active",
            "experiment_id",
            "fingerprint",
            unique=True,
            postgresql_where=text("status IN ('pending', 'in_progress')"),
            sqlite_where=text("status IN ('pending', 'in_progress')"),
        ),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    metric: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    last_successful_date: Mapped[date | None] = mapped_column(Date, default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    locked_by: Mapped[str | None] = mapped_column(String(100), default=None)
    locked_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
