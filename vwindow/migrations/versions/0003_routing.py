"""routing: agent states, offers, priorities, callbacks, nodes, pairing

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("townships") as t:
        t.add_column(sa.Column("default_dialect", sa.String(32), nullable=True))
    with op.batch_alter_table("users") as t:
        t.add_column(sa.Column("county", sa.String(100), nullable=True))
    with op.batch_alter_table("calls") as t:
        t.add_column(sa.Column("category", sa.String(64), nullable=True))
        t.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        t.add_column(sa.Column("offered_to", sa.Integer(), nullable=True))
        t.add_column(sa.Column("offer_expires_at", sa.DateTime(timezone=True), nullable=True))
        t.add_column(sa.Column("excluded", sa.JSON(), nullable=False, server_default="[]"))
        t.add_column(sa.Column("callback", sa.Boolean(), nullable=False,
                               server_default=sa.false()))
        t.add_column(sa.Column("callback_offered_at", sa.DateTime(timezone=True),
                               nullable=True))
        t.create_foreign_key("fk_calls_offered_to_users", "users", ["offered_to"], ["id"])
    # Calls queued before the upgrade route by their service item's category.
    op.execute("UPDATE calls SET category = (SELECT category FROM service_items "
               "WHERE service_items.id = calls.service_item_id)")
    op.create_table(
        "agent_status",
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(100), nullable=True),
        sa.Column("node_id", sa.String(64), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idle_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_offer_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("wrap_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("agent_id"),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("nodes")
    op.drop_table("agent_status")
    with op.batch_alter_table("calls") as t:
        t.drop_constraint("fk_calls_offered_to_users", type_="foreignkey")
        for name in ("callback_offered_at", "callback", "excluded", "offer_expires_at",
                     "offered_to", "priority", "category"):
            t.drop_column(name)
    with op.batch_alter_table("users") as t:
        t.drop_column("county")
    with op.batch_alter_table("townships") as t:
        t.drop_column("default_dialect")
