"""The purge every node runs (``RetentionJob`` started by the server): it purges without
cron, one node at a time on PostgreSQL, survives a failed run and stops with the node."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from signaling.services import SERVICES
from tests.conftest import make_config, start_server
from tests.integration.test_retention import Site, open_site
from vwindow.db import Database
from vwindow.models import AuditEntry, Case, CaseStatus, Material, utcnow
from vwindow.retention import PG_PURGE_LOCK, RetentionConfig, RetentionJob
from vwindow.seed import seed_demo
from vwindow.store import FileStore

FAST = 0.05 / 3600  # every_hours for a run every 50 ms
CONFIG = RetentionConfig(materials_days=365, every_hours=FAST)
both_databases = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
postgres_only = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


@pytest.fixture
async def site(db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    db = Database(db_url)
    await db.start()
    store = FileStore(tmp_path / "files")
    await store.start()
    await seed_demo(db)
    try:
        yield await open_site(db, store)
    finally:
        await db.stop()


async def _until(what: str, done: Callable[[], bool], timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _expired_case(site: Site, label: str, materials: int = 1) -> tuple[int, list[bytes]]:
    """A closed case whose materials are all past retention, added in one transaction
    (a purge running meanwhile sees all of them or none)."""
    blobs = [site.blob(f"{label}-{i}") for i in range(materials)]
    shas = [await site.store.put(data) for data in blobs]
    async with site.db.session() as s:
        case = Case(number=f"RJ-{next(site.counter):04d}", service_item_id=site.item_id,
                    kiosk_id=site.kiosk_id, township_id=site.township_id,
                    status=CaseStatus.COMPLETED)
        s.add(case)
        await s.flush()
        for sha, data in zip(shas, blobs, strict=True):
            s.add(Material(case_id=case.id, sha256=sha, size=len(data),
                           content_type="application/octet-stream", filename="x.bin",
                           source="test", kind="file", created_by="agent:1",
                           created_at=utcnow() - timedelta(days=400)))
        return case.id, blobs


async def _purge_entries(db: Database) -> list[tuple[int | None, str]]:
    async with db.session() as s:
        rows = (await s.execute(select(AuditEntry.case_id, AuditEntry.actor).where(
            AuditEntry.action == "retention.purged").order_by(AuditEntry.id))).all()
    return [(case_id, actor) for case_id, actor in rows]


def _retention_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "retention-purge"]


async def test_every_node_purges_without_cron(db_url: str, tmp_path: Path) -> None:
    config = make_config(db_url, tmp_path).model_copy(update={"retention": CONFIG})
    runner, _url = await start_server(config)
    try:
        services = runner.app[SERVICES]
        assert len(_retention_tasks()) == 1
        site = await open_site(services.db, services.store)
        case, (data,) = await _expired_case(site, "node")
        await _until("the node's purge", lambda: not site.has_file(data))
        assert await _purge_entries(services.db) == [(case, "system:retention")]
    finally:
        await runner.cleanup()
    assert _retention_tasks() == []


@both_databases
async def test_a_failed_run_is_logged_and_the_next_one_purges(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    case, (data,) = await _expired_case(site, "fail")
    # A file where the store's shard directory should be: the purge's stat() of the
    # material's file fails with NotADirectoryError (a broken disk, in effect).
    shard = site.store.root / hashlib.sha256(data).hexdigest()[:2]
    aside = shard.with_name("aside")
    shard.rename(aside)
    shard.write_bytes(b"")
    caplog.set_level(logging.ERROR, logger="vwindow.retention")
    job = RetentionJob(site.db, site.store, CONFIG)
    await job.start()
    try:
        await _until("a failed run", lambda: any(
            r.getMessage().startswith("retention purge failed") for r in caplog.records))
        await asyncio.sleep(0.2)  # more failing runs: the loop goes on
        assert await _purge_entries(site.db) == []
        shard.unlink()
        aside.rename(shard)
        await _until("the purge after the failures", lambda: not site.has_file(data))
    finally:
        await job.stop()
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) >= 2 and all(r.exc_info for r in failures)
    assert await _purge_entries(site.db) == [(case, "system:retention")]
    if site.db.is_postgres:  # the failed runs let go of the lock
        async with site.db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                     {"k": PG_PURGE_LOCK})


@postgres_only
async def test_a_node_skips_the_run_while_another_holds_the_lock(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    _case, (data,) = await _expired_case(site, "held")
    job = RetentionJob(site.db, site.store, CONFIG)
    caplog.set_level(logging.DEBUG, logger="vwindow.retention")
    async with site.db.engine.connect() as other_node:
        other_node = await other_node.execution_options(isolation_level="AUTOCOMMIT")
        assert await other_node.scalar(text("SELECT pg_try_advisory_lock(:k)"),
                                       {"k": PG_PURGE_LOCK})
        assert await job.run_once() is None
        assert site.has_file(data)
        assert "another node is purging" in caplog.text
        await other_node.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_PURGE_LOCK})
    report = await job.run_once()
    assert report is not None and (report.cases, report.materials) == (1, 1)
    assert not site.has_file(data)


@postgres_only
async def test_two_nodes_write_one_audit_entry_per_purged_case(site: Site,
                                                               db_url: str) -> None:
    expired = [await _expired_case(site, f"two-{i}", materials=3) for i in range(12)]
    second_node = Database(db_url)  # its own engine and pool, as another process has
    await second_node.start()
    jobs = [RetentionJob(site.db, site.store, CONFIG),
            RetentionJob(second_node, site.store, CONFIG)]
    try:
        # Both at once, the way two nodes started together tick together.
        results = await asyncio.gather(*(job.run_once() for job in jobs))
        assert sum(r.cases for r in results if r is not None) == len(expired)
        for job in jobs:
            await job.start()
        more = [await _expired_case(site, f"later-{i}", materials=3) for i in range(6)]
        await _until("both nodes' loops to purge",
                     lambda: not any(site.has_file(d) for _, blobs in more for d in blobs))
        await asyncio.sleep(0.3)  # a few more overlapping runs with nothing to do
    finally:
        for job in jobs:
            await job.stop()
        await second_node.stop()
    entries = await _purge_entries(site.db)
    assert sorted(entries) == sorted((case, "system:retention")
                                     for case, _ in expired + more)
    async with site.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Material)) == 0
