"""project-scoped personal API keys and shared rate-limit counters

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import experiments_service.models.base

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("personal_api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scoped_teams", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("last_rolled_at", experiments_service.models.base.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "rate_limit_counters",
        sa.Column("bucket", sa.String(length=100), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_rate_limit_counters")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Counters need no crash safety: unlogged, an upsert commits without waiting for a WAL flush.
        op.execute("ALTER TABLE rate_limit_counters SET UNLOGGED")


def downgrade() -> None:
    op.drop_table("rate_limit_counters")
    with op.batch_alter_table("personal_api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_rolled_at")
        batch_op.drop_column("scoped_teams")
