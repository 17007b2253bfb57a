"""inspections: remote site inspections (远程踏勘) with checklist, evidence and report

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(40), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("site_address", sa.String(200), nullable=False),
        sa.Column("site_lat", sa.Float(), nullable=True),
        sa.Column("site_lon", sa.Float(), nullable=True),
        sa.Column("checklist", sa.JSON(), nullable=False),
        sa.Column("conclusion", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("report_material_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["report_material_id"], ["materials.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
    )
    op.create_index("ix_inspections_case_id", "inspections", ["case_id"])
    op.create_table(
        "inspection_evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("annotated_from", sa.Integer(), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspections.id"]),
        sa.ForeignKeyConstraint(["material_id"], ["materials.id"]),
        sa.ForeignKeyConstraint(["annotated_from"], ["materials.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_inspection_evidence_inspection_id", "inspection_evidence",
                    ["inspection_id"])
    with op.batch_alter_table("surveyor_links") as batch:
        batch.add_column(sa.Column("inspection_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("surveyor_links") as batch:
        batch.drop_column("inspection_id")
    op.drop_table("inspection_evidence")
    op.drop_table("inspections")
