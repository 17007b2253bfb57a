from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import pg_database
from vwindow import audit
from vwindow.db import Database
from vwindow.models import AuditEntry


async def test_chain_detects_tampering(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    await db.start()
    try:
        for i in range(5):
            async with db.session() as s:
                await audit.append(s, actor="agent:1", action="test", detail={"i": i})
        async with db.session() as s:
            report = await audit.verify_chain(s)
        assert report.ok and report.rows == 5
        async with db.session() as s:
            await s.execute(update(AuditEntry).where(AuditEntry.id == 3)
                            .values(detail={"i": 99}))
        async with db.session() as s:
            report = await audit.verify_chain(s)
        assert not report.ok and report.first_bad_id == 3
        assert "content" in report.reason
    finally:
        await db.stop()


@pytest.mark.postgres
async def test_concurrent_writers_keep_one_chain(pg_server: Any) -> None:
    """Many transactions at once, some with several entries, one rolled back: one linear
    chain, every committed entry in it, nothing from the rollback."""
    db = Database(pg_database(pg_server))
    await db.start()
    try:
        async def write(i: int) -> None:
            async with db.session() as s:
                await audit.append(s, actor=f"agent:{i}", action="test", detail={"i": i})
                if i % 3 == 0:
                    await audit.append(s, actor=f"agent:{i}", action="second",
                                       detail={"i": i})

        async def rolled_back() -> None:
            with pytest.raises(RuntimeError):
                async with db.session() as s:
                    await audit.append(s, actor="agent:x", action="never", detail={})
                    raise RuntimeError("abandon the transaction")

        await asyncio.gather(*(write(i) for i in range(30)), rolled_back())
        async with db.session() as s:
            report = await audit.verify_chain(s)
            actions = (await s.scalars(select(AuditEntry.action))).all()
        assert report.ok, report
        assert report.rows == 30 + 10 and "never" not in actions
    finally:
        await db.stop()
