"""ix_calls_waiting: the waiting calls in serving order, so a routing pass reads the first
few without sorting the whole queue

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_calls_waiting", "calls", [sa.text("priority DESC"), "queued_at", "id"],
                    postgresql_where=sa.text("status = 'queued'"),
                    sqlite_where=sa.text("status = 'queued'"))


def downgrade() -> None:
    op.drop_index("ix_calls_waiting", table_name="calls")
