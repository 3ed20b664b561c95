"""incremental results: event transaction stamps and stored per-entity values

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import experiments_service.models.base

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ingest_txid", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "ix_events_project_ingest_txid",
            ["project_id", "ingest_txid"],
            unique=False,
            postgresql_where=sa.text("ingest_txid IS NOT NULL"),
            sqlite_where=sa.text("ingest_txid IS NOT NULL"),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events ALTER COLUMN ingest_txid SET DEFAULT (pg_current_xact_id()::text::bigint)")

    op.create_table(
        "results_materializations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.String(length=255), nullable=False),
        sa.Column("definition_key", sa.String(length=64), nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("until", experiments_service.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("totals", sa.JSON(), nullable=True),
        sa.Column("refreshed_at", experiments_service.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["experiments.id"],
            name=op.f("fk_results_materializations_experiment_id_experiments"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results_materializations")),
        sa.UniqueConstraint("experiment_id", "slot", name=op.f("uq_results_materializations_experiment_id_slot")),
    )
    op.create_table(
        "results_entity_values",
        sa.Column("materialization_id", sa.Integer(), nullable=False),
        sa.Column("distinct_id", sa.String(length=400), nullable=False),
        sa.Column("variant", sa.String(length=400), nullable=False),
        sa.Column("value_0", sa.Float(), nullable=False),
        sa.Column("value_1", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("materialization_id", "distinct_id", name=op.f("pk_results_entity_values")),
    )


def downgrade() -> None:
    op.drop_table("results_entity_values")
    op.drop_table("results_materializations")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_project_ingest_txid")
        batch_op.drop_column("ingest_txid")
