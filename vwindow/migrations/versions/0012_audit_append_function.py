"""vw_audit_append(): PostgreSQL links and inserts a transaction's audit entries in one
round trip (lock the chain, read its tail, chain the hashes, insert)

The chain's lock is held from here to the commit. Done as four statements from the
server, it was held across three more round trips, each waiting for the writer's event
loop: under load the nodes' audited transactions queued on it. SQLite has one writer
and no function; it links in Python as before.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FUNCTION = r"""
CREATE OR REPLACE FUNCTION vw_audit_append(lock_key bigint, entries json) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    prev bytea;
    linked bytea;
    entry json;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    -- A statement of its own after the lock: it sees the tail the last holder committed.
    SELECT hash INTO prev FROM audit_log ORDER BY id DESC LIMIT 1;
    prev := coalesce(prev, decode(repeat('00', 32), 'hex'));
    FOR entry IN SELECT value FROM json_array_elements(entries) LOOP
        linked := sha256(prev || decode(entry ->> 'body', 'hex'));
        INSERT INTO audit_log (case_id, at, actor, action, detail, prev_hash, hash)
        VALUES ((entry ->> 'case_id')::integer, (entry ->> 'at')::timestamptz,
                entry ->> 'actor', entry ->> 'action', entry -> 'detail', prev, linked);
        prev := linked;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION vw_audit_append(bigint, json)")
