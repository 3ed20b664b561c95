"""approvals schema changes

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import experiments_service.models.base  # noqa: F401

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


OPEN_STATES = "state IN ('pending', 'approved')"


def upgrade() -> None:
    with op.batch_alter_table("change_requests", schema=None) as batch_op:
        batch_op.create_index(
            "uq_change_requests_open_action",
            ["project_id", "action_key", "resource_type", "resource_id"],
            unique=True,
            postgresql_where=sa.text(OPEN_STATES),
            sqlite_where=sa.text(OPEN_STATES),
        )


def downgrade() -> None:
    with op.batch_alter_table("change_requests", schema=None) as batch_op:
        batch_op.drop_index("uq_change_requests_open_action")
