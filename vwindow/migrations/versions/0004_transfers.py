"""transfers: hand-over notes on cases, calls reserved for a named agent

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as t:
        t.add_column(sa.Column("reserved_for", sa.Integer(), nullable=True))
        t.add_column(sa.Column("reserved_until", sa.DateTime(timezone=True), nullable=True))
        t.create_foreign_key("fk_calls_reserved_for_users", "users", ["reserved_for"], ["id"])
    op.create_table(
        "case_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("author_name", sa.String(100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_case_notes_case_id", "case_notes", ["case_id"])


def downgrade() -> None:
    op.drop_table("case_notes")
    with op.batch_alter_table("calls") as t:
        t.drop_constraint("fk_calls_reserved_for_users", type_="foreignkey")
        t.drop_column("reserved_until")
        t.drop_column("reserved_for")
