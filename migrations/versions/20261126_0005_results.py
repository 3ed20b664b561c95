"""results schema changes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

import experiments_service.models.base  # noqa: F401

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_flag_exposures",
            ["project_id", "flag_key", "distinct_id", "timestamp"],
            unique=False,
            postgresql_include=["flag_response", "event"],
        )
        batch_op.create_index(
            "ix_events_project_distinct_id", ["project_id", "distinct_id", "timestamp"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_project_distinct_id")
        batch_op.drop_index("ix_events_flag_exposures")
