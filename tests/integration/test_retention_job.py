"""The purge every node runs (``RetentionJob`` started by the server): it purges without
cron, one node at a time on PostgreSQL, survives a failed run and stops with the node, and
its schedule, kept in the database, survives restarts of the nodes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from signaling.services import SERVICES
from tests.conftest import make_config, start_server
from tests.integration.test_retention import Site, open_site
from vwindow.db import Database
from vwindow.models import AuditEntry, Case, CaseStatus, JobRun, Material, utcnow
from vwindow.retention import (
    JOB,
    PG_PURGE_LOCK,
    RetentionConfig,
    RetentionJob,
    last_run,
    purge_exclusively,
)

FAST = 0.05 / 3600  # every_hours for a run every 50 ms
CONFIG = RetentionConfig(materials_days=365, every_hours=FAST)
DAILY = RetentionConfig(materials_days=365, every_hours=24)
CATCH_UP = 0.05  # RetentionJob's catch_up_s: an overdue run starts 50-75 ms after start
both_databases = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
postgres_only = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


async def _until(what: str, done: Callable[[], bool], timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def expired_case(site: Site, label: str, materials: int = 1) -> tuple[int, list[bytes]]:
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


async def purge_entries(db: Database) -> list[tuple[int | None, str]]:
    async with db.session() as s:
        rows = (await s.execute(select(AuditEntry.case_id, AuditEntry.actor).where(
            AuditEntry.action == "retention.purged").order_by(AuditEntry.id))).all()
    return [(case_id, actor) for case_id, actor in rows]


async def _ran_at(db: Database, when: datetime) -> None:
    """The last purge run, as if a node (before it restarted) had made it at ``when``."""
    async with db.session() as s:
        await s.merge(JobRun(job=JOB, last_run_at=when))


def _runs(caplog: pytest.LogCaptureFixture) -> int:
    """Purge runs made (each logs one summary line)."""
    return sum(1 for r in caplog.records
               if re.match(r"retention: \d+ cases", r.getMessage()))


def _retention_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "retention-purge"]


async def test_every_node_purges_without_cron(db_url: str, tmp_path: Path) -> None:
    config = make_config(db_url, tmp_path).model_copy(update={"retention": CONFIG})
    runner, _url = await start_server(config)
    try:
        services = runner.app[SERVICES]
        assert len(_retention_tasks()) == 1
        site = await open_site(services.db, services.store)
        case, (data,) = await expired_case(site, "node")
        await _until("the node's purge", lambda: not site.has_file(data))
        assert await purge_entries(services.db) == [(case, "system:retention")]
    finally:
        await runner.cleanup()
    assert _retention_tasks() == []


@both_databases
async def test_a_failed_run_is_logged_and_the_next_one_purges(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    case, (data,) = await expired_case(site, "fail")
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
        assert await purge_entries(site.db) == []
        shard.unlink()
        aside.rename(shard)
        await _until("the purge after the failures", lambda: not site.has_file(data))
    finally:
        await job.stop()
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) >= 2 and all(r.exc_info for r in failures)
    assert await purge_entries(site.db) == [(case, "system:retention")]
    if site.db.is_postgres:  # the failed runs let go of the lock
        async with site.db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                     {"k": PG_PURGE_LOCK})


@postgres_only
async def test_a_node_skips_the_run_while_another_holds_the_lock(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    _case, (data,) = await expired_case(site, "held")
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
    expired = [await expired_case(site, f"two-{i}", materials=3) for i in range(12)]
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
        more = [await expired_case(site, f"later-{i}", materials=3) for i in range(6)]
        await _until("both nodes' loops to purge",
                     lambda: not any(site.has_file(d) for _, blobs in more for d in blobs))
        await asyncio.sleep(0.3)  # a few more overlapping runs with nothing to do
    finally:
        for job in jobs:
            await job.stop()
        await second_node.stop()
    entries = await purge_entries(site.db)
    assert sorted(entries) == sorted((case, "system:retention")
                                     for case, _ in expired + more)
    async with site.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Material)) == 0


@both_databases
async def test_an_overdue_run_starts_shortly_after_the_node_starts(site: Site) -> None:
    """Nodes restarting more often than every_hours: the run is due since long ago, so it
    comes a moment after the start, not a whole period later."""
    case, (data,) = await expired_case(site, "overdue")
    await _ran_at(site.db, utcnow() - timedelta(days=3))
    job = RetentionJob(site.db, site.store, DAILY, catch_up_s=CATCH_UP)
    started = utcnow()
    await job.start()
    try:
        await _until("the overdue purge", lambda: not site.has_file(data))
    finally:
        await job.stop()
    assert await purge_entries(site.db) == [(case, "system:retention")]
    ran = await last_run(site.db)
    assert ran is not None and ran >= started


@both_databases
async def test_a_recent_run_is_not_repeated_when_the_node_starts(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    _case, (data,) = await expired_case(site, "recent")
    an_hour_ago = utcnow() - timedelta(hours=1)
    await _ran_at(site.db, an_hour_ago)
    caplog.set_level(logging.INFO, logger="vwindow.retention")
    job = RetentionJob(site.db, site.store, DAILY, catch_up_s=CATCH_UP)
    await job.start()
    try:
        await asyncio.sleep(0.5)  # ten times the catch-up delay
        assert site.has_file(data) and _runs(caplog) == 0
    finally:
        await job.stop()
    assert await last_run(site.db) == an_hour_ago
    # The next run is planned for 24 hours after the last one, not after this start.
    wait = job.delay_s(an_hour_ago, utcnow())
    assert 23 * 3600 - 5 < wait <= 23 * 3600


@both_databases
async def test_a_run_waits_for_the_rest_of_the_period_then_runs(site: Site) -> None:
    _case, (data,) = await expired_case(site, "rest")
    config = RetentionConfig(materials_days=365, every_hours=1.5 / 3600)
    await _ran_at(site.db, utcnow())
    job = RetentionJob(site.db, site.store, config, catch_up_s=CATCH_UP)
    await job.start()
    try:
        await asyncio.sleep(0.5)
        assert site.has_file(data)
        await _until("the run 1.5 s after the last", lambda: not site.has_file(data))
    finally:
        await job.stop()


@both_databases
async def test_every_run_is_recorded_but_only_purges_write_audit_entries(
        site: Site) -> None:
    job = RetentionJob(site.db, site.store, DAILY)
    assert await last_run(site.db) is None
    before = utcnow()
    report = await job.run_once()
    assert report is not None and report.cases == 0
    first = await last_run(site.db)
    assert first is not None and first >= before
    assert await job.run_once() is not None
    second = await last_run(site.db)
    assert second is not None and second > first
    async with site.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action.like("retention.%"))) == 0
        assert await s.scalar(select(func.count()).select_from(JobRun)) == 1


@postgres_only
async def test_nodes_restarted_together_make_one_overdue_run(
        site: Site, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    expired = [await expired_case(site, f"restart-{i}") for i in range(3)]
    await _ran_at(site.db, utcnow() - timedelta(days=2))
    caplog.set_level(logging.DEBUG, logger="vwindow.retention")
    others = [Database(db_url) for _ in range(2)]
    for db in others:
        await db.start()
    jobs = [RetentionJob(db, site.store, DAILY, catch_up_s=CATCH_UP)
            for db in (site.db, *others)]
    try:
        for job in jobs:
            await job.start()
        await _until("the overdue purge", lambda: not any(
            site.has_file(d) for _, blobs in expired for d in blobs))
        await asyncio.sleep(0.5)  # the other nodes woke, and skipped
    finally:
        for job in jobs:
            await job.stop()
        for db in others:
            await db.stop()
    assert _runs(caplog) == 1
    assert sorted(await purge_entries(site.db)) == sorted(
        (case, "system:retention") for case, _ in expired)


@both_databases
async def test_a_run_planned_before_another_node_ran_is_skipped(site: Site) -> None:
    _case, (data,) = await expired_case(site, "planned")
    planned = utcnow() - timedelta(days=2)
    await _ran_at(site.db, planned)
    await _ran_at(site.db, utcnow())  # another node's run, while this one slept
    assert await purge_exclusively(site.db, site.store, DAILY, utcnow(),
                                   only_if=lambda seen: seen == planned) is None
    assert site.has_file(data)
