"""persons with many distinct ids, and cohorts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import experiments_service.models.base

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MERGED = "person_key <> distinct_id"


def upgrade() -> None:
    op.create_table(
        "person_distinct_ids",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("distinct_id", sa.String(length=400), nullable=False),
        sa.Column("person_id", sa.BigInteger(), nullable=False),
        sa.Column("person_key", sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_person_distinct_ids_person_id_persons"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_person_distinct_ids_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person_distinct_ids")),
        sa.UniqueConstraint("project_id", "distinct_id", name=op.f("uq_person_distinct_ids_project_id_distinct_id")),
    )
    with op.batch_alter_table("person_distinct_ids", schema=None) as batch_op:
        batch_op.create_index("ix_person_distinct_ids_person", ["person_id"], unique=False)
        batch_op.create_index(
            "ix_person_distinct_ids_merged",
            ["project_id", "person_key", "distinct_id"],
            unique=False,
            postgresql_where=sa.text(MERGED),
            sqlite_where=sa.text(MERGED),
        )
    op.execute(
        "INSERT INTO person_distinct_ids (project_id, distinct_id, person_id, person_key)"
        " SELECT project_id, distinct_id, id, distinct_id FROM persons"
    )
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_constraint("uq_persons_project_id_distinct_id", type_="unique")
        batch_op.drop_column("distinct_id")
        batch_op.add_column(sa.Column("is_identified", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index(batch_op.f("ix_persons_project_id"), ["project_id"], unique=False)
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.alter_column("is_identified", server_default=None)

    op.create_table(
        "cohorts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=True),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=True),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("is_static", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", experiments_service.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_calculation", experiments_service.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_cohorts_created_by_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_cohorts_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cohorts")),
    )
    with op.batch_alter_table("cohorts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cohorts_project_id"), ["project_id"], unique=False)
    op.create_table(
        "cohort_static_members",
        sa.Column("cohort_id", sa.Integer(), nullable=False),
        sa.Column("distinct_id", sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_id"], ["cohorts.id"], name=op.f("fk_cohort_static_members_cohort_id_cohorts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("cohort_id", "distinct_id", name=op.f("pk_cohort_static_members")),
    )


def downgrade() -> None:
    op.drop_table("cohort_static_members")
    with op.batch_alter_table("cohorts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cohorts_project_id"))
    op.drop_table("cohorts")
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_persons_project_id"))
        batch_op.drop_column("is_identified")
        batch_op.add_column(sa.Column("distinct_id", sa.String(length=400), nullable=True))
    # Each person keeps its first distinct id; the others become persons of their own again.
    op.execute(
        "UPDATE persons SET distinct_id = (SELECT min(person_key) FROM person_distinct_ids"
        " WHERE person_distinct_ids.person_id = persons.id)"
    )
    op.execute("DELETE FROM persons WHERE distinct_id IS NULL")
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.alter_column("distinct_id", nullable=False)
        batch_op.create_unique_constraint("uq_persons_project_id_distinct_id", ["project_id", "distinct_id"])
    with op.batch_alter_table("person_distinct_ids", schema=None) as batch_op:
        batch_op.drop_index("ix_person_distinct_ids_merged")
        batch_op.drop_index("ix_person_distinct_ids_person")
    op.drop_table("person_distinct_ids")
