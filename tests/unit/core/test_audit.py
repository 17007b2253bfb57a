from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

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
