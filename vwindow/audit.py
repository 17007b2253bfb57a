"""The append-only, hash-chained audit log.

Each row's ``hash`` is SHA-256 over the previous row's hash and a canonical JSON form of
the row; ``prev_hash`` is unique, so two writers racing for the same tail make one fail
instead of forking the chain. ``verify_chain`` recomputes every link.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from vwindow.models import AuditEntry, utcnow

GENESIS = bytes(32)
_PG_AUDIT_LOCK = 0x76776E64  # advisory lock key serialising appends across nodes
_PENDING = "vwindow.audit.pending"
_PG_APPEND = text("SELECT vw_audit_append(:k, CAST(:entries AS json))")
_TAIL = select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)


def _canonical(
    case_id: int | None, at: datetime, actor: str, action: str, detail: dict[str, Any]
) -> bytes:
    body = {
        "case_id": case_id,
        "at": at.isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "detail": detail,
    }
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def link_hash(prev: bytes, case_id: int | None, at: datetime, actor: str, action: str,
              detail: dict[str, Any]) -> bytes:
    return hashlib.sha256(prev + _canonical(case_id, at, actor, action, detail)).digest()


async def append(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    case_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry in the caller's transaction (written when it commits).

    The chain's tail is a single point every writer on every node must pass, so the
    entries are linked and inserted at commit, under the lock for the shortest time
    (lock, read the tail, insert, commit) instead of for the rest of the transaction.
    """
    pending = session.sync_session.info.setdefault(_PENDING, [])
    pending.append((case_id, utcnow(), actor, action, dict(detail or {})))


@event.listens_for(Session, "before_commit")
def _link_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # One round trip (migration 0012): the chain's lock is then held only from here
        # to the commit, not across a round trip per statement.
        conn.execute(_PG_APPEND, {"k": _PG_AUDIT_LOCK, "entries": json.dumps([
            {"case_id": case_id, "at": at.isoformat(timespec="microseconds"),
             "actor": actor, "action": action, "detail": body,
             "body": _canonical(case_id, at, actor, action, body).hex()}
            for case_id, at, actor, action, body in pending], ensure_ascii=False)})
        return
    # SQLite: one writer, so no lock; Core statements, as the ORM's unit of work is most
    # of the cost of a plain insert.
    last = conn.execute(_TAIL).scalar_one_or_none()
    prev = last if last is not None else GENESIS
    rows = []
    for case_id, at, actor, action, body in pending:
        entry_hash = link_hash(prev, case_id, at, actor, action, body)
        rows.append({"case_id": case_id, "at": at, "actor": actor, "action": action,
                     "detail": body, "prev_hash": prev, "hash": entry_hash})
        prev = entry_hash
    conn.execute(insert(AuditEntry), rows)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class ChainReport:
    rows: int
    ok: bool
    first_bad_id: int | None = None
    reason: str = ""


async def verify_chain(session: AsyncSession) -> ChainReport:
    prev = GENESIS
    count = 0
    rows = await session.stream_scalars(select(AuditEntry).order_by(AuditEntry.id))
    async for row in rows:
        count += 1
        if row.prev_hash != prev:
            return ChainReport(count, False, row.id, "prev_hash does not match the row before")
        expected = link_hash(prev, row.case_id, row.at, row.actor, row.action, row.detail)
        if row.hash != expected:
            return ChainReport(count, False, row.id, "row content does not match its hash")
        prev = row.hash
    return ChainReport(count, True)
