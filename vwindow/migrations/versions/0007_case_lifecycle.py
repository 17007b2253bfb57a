"""case lifecycle, catalog fields, material tags, SLA milestones and pauses

Service items carry the whole catalog entry (situation questions, material rules with
keys and conditions, instant approval, colloquial aliases and keywords); cases keep the
situation answers, when their status last changed and the outcome note; agents tag
materials with the checklist entry they are; SLA milestones met and the 补正 pauses of a
case get their own tables.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_EMPTY_LIST = sa.text("'[]'")
_EMPTY_OBJECT = sa.text("'{}'")


def upgrade() -> None:
    with op.batch_alter_table("service_items") as batch:
        # Existing rows get empty lists; ``vwindow.catalog_store`` derives rules from the
        # old ``required_materials`` names until the catalog is imported or seeded.
        batch.add_column(sa.Column("questions", sa.JSON(), nullable=False,
                                   server_default=_EMPTY_LIST))
        batch.add_column(sa.Column("material_rules", sa.JSON(), nullable=False,
                                   server_default=_EMPTY_LIST))
        batch.add_column(sa.Column("instant_approval", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("aliases", sa.JSON(), nullable=False,
                                   server_default=_EMPTY_LIST))
        batch.add_column(sa.Column("keywords", sa.JSON(), nullable=False,
                                   server_default=_EMPTY_LIST))
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("answers", sa.JSON(), nullable=False,
                                   server_default=_EMPTY_OBJECT))
        batch.add_column(sa.Column("status_changed_at", sa.DateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column("outcome_note", sa.Text(), nullable=True))
    op.create_table(
        "case_milestones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "key", name="uq_milestone_case_key"),
    )
    op.create_index("ix_case_milestones_case_id", "case_milestones", ["case_id"])
    op.create_table(
        "case_pauses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_by", sa.String(64), nullable=False),
        sa.Column("ended_by", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_case_pauses_case_id", "case_pauses", ["case_id"])
    op.create_table(
        "material_tags",
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("material_type", sa.String(64), nullable=False),
        sa.Column("tagged_by", sa.String(64), nullable=False),
        sa.Column("tagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["material_id"], ["materials.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("material_id"),
    )
    op.create_index("ix_material_tags_case_id", "material_tags", ["case_id"])


def downgrade() -> None:
    op.drop_table("material_tags")
    op.drop_table("case_pauses")
    op.drop_table("case_milestones")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("outcome_note")
        batch.drop_column("status_changed_at")
        batch.drop_column("answers")
    with op.batch_alter_table("service_items") as batch:
        batch.drop_column("keywords")
        batch.drop_column("aliases")
        batch.drop_column("instant_approval")
        batch.drop_column("material_rules")
        batch.drop_column("questions")
