"""Captured events, persons with their distinct ids, and the event names a project has seen."""

from uuid import UUID
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, FetchedValue, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from experiments_service.models.base import Base, BigIntPK, utcnow


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("project_id", "uuid"),
        Index("ix_events_project_event_timestamp", "project_id", "event", "timestamp"),
        Index("ix_events_project_flag", "project_id", "flag_key", "timestamp"),
        # Experiment exposures: read in distinct_id order straight from the index (no heap, no hash).
        Index(
            "ix_events_flag_exposures",
            "project_id",
            "flag_key",
            "distinct_id",
            "timestamp",
            postgresql_include=["flag_response", "event"],
        ),
        # Metric events of one exposed entity (SQLite joins by nested loop; PostgreSQL for small experiments).
        Index("ix_events_project_distinct_id", "project_id", "distinct_id", "timestamp"),
        # Rows committed since a stored snapshot (incremental results on PostgreSQL). Partial, so
        # SQLite (where the column stays NULL) pays nothing for it on insert.
        Index(
            "ix_events_project_ingest_txid",
            "project_id",
            "ingest_txid",
            postgresql_where=text("ingest_txid IS NOT NULL"),
            sqlite_where=text("ingest_txid IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    uuid: Mapped[UUID] = mapped_column()
    event: Mapped[str] = mapped_column(String(400))
    distinct_id: Mapped[str] = mapped_column(String(400))
    timestamp: Mapped[datetime] = mapped_column()
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Extracted from `$feature_flag_called` at ingest so exposure queries need no JSON parsing.
    flag_key: Mapped[str | None] = mapped_column(String(400), default=None)
    flag_response: Mapped[str | None] = mapped_column(String(400), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # PostgreSQL stamps each row with its inserting transaction (xid8 as a bigint, a column
    # default set by the migration), so results can tell exactly which rows a snapshot had not
    # seen. SQLite commits one writer at a time in id order and leaves this NULL.
    ingest_txid: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue())


class Person(Base):
    """A person: properties shared by all its distinct ids (`PersonDistinctId`), merged by PostHog's rules."""

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_identified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PersonDistinctId(Base):
    """Which person a distinct id belongs to. `person_key` is the first distinct id of that
    person (the key results aggregate by): equal to `distinct_id` until a merge moves the row."""

    __tablename__ = "person_distinct_ids"
    __table_args__ = (
        UniqueConstraint("project_id", "distinct_id"),
        Index("ix_person_distinct_ids_person", "person_id"),
        # Results join events to merged distinct ids only: a small index, whatever the persons count.
        Index(
            "ix_person_distinct_ids_merged",
            "project_id",
            "person_key",
            "distinct_id",
            postgresql_where=text("person_key <> distinct_id"),
            sqlite_where=text("person_key <> distinct_id"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    distinct_id: Mapped[str] = mapped_column(String(400))
    person_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("persons.id", ondelete="CASCADE"))
    person_key: Mapped[str] = mapped_column(String(400))


class EventDefinition(Base):
    __tablename__ = "event_definitions"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


