"""Retention: how long recordings, materials and ID-card reads are kept, and the purge.

``purge`` removes what has outlived its retention, one case per transaction, with one
audit entry (``retention.purged``, counts and bytes only) in the same transaction, so
a case's rows and its audit record of their removal commit or roll back together. The
audit log itself is never touched.

Foreign keys: a material still referenced by an *open* inspection (its report, a piece
of evidence or the source of an annotated one) is kept until the inspection closes. For
the rest, the rows that point at a purged material are handled first: its tag is
deleted, evidence rows of closed inspections that are the purged material are deleted,
and ``annotated_from`` / ``report_material_id`` pointers to it are set to NULL. So both
SQLite (``foreign_keys=ON``) and PostgreSQL stay consistent.

Files: the store is content-addressed, so a file goes only when no material, ID-card
read or resumable upload still names its SHA-256; files are unlinked after the case's
transaction commits (a crash in between leaves an unreferenced file, never a row whose
file is gone). A store write of the same bytes racing the unlink can still lose its
file (``FileStore.put`` skips writing bytes it already holds); run the purge at a quiet
hour.

Every ``vwindow serve`` node runs a :class:`RetentionJob`; ``vwindow purge`` (cron) is
the same run started by hand. On PostgreSQL a run first takes a session-level advisory
lock (:data:`PG_PURGE_LOCK`) without waiting: the node that gets it purges, the others
skip that run. Two purges never overlap, so no case gets two audit entries for one
removal; runs that follow each other find nothing left to do. SQLite is one node by
design, so there the job just runs.

The schedule is kept in the database, not in a node's timer: each run writes its start
time to ``job_runs`` (one row, :data:`JOB`, whether or not it found anything to purge),
and a node plans its next run from that row. So nodes that restart more often than
``every_hours`` still purge: an overdue run starts shortly after a node starts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, exists, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from vwindow import audit
from vwindow.db import Database
from vwindow.errors import ValidationError
from vwindow.models import (
    Case,
    CaseStatus,
    IdRead,
    Inspection,
    InspectionEvidence,
    JobRun,
    Material,
    MaterialTag,
    Upload,
    utcnow,
)
from vwindow.store import FileStore

logger = logging.getLogger(__name__)

ACTOR = "system:retention"
ACTION = "retention.purged"
CLOSED_STATUSES: tuple[str, ...] = (CaseStatus.COMPLETED, CaseStatus.REJECTED)
_T = TypeVar("_T")
_CHUNK = 500  # ids per IN (...) list: well under SQLite's and asyncpg's parameter limits
PG_PURGE_LOCK = 0x76777270
"""PostgreSQL advisory lock key ("vwrp") held by the one node purging; see RetentionJob."""
JOB = "retention.purge"
"""The purge's row in ``job_runs``: when the last run (by a node or ``vwindow purge``)
started."""
CATCH_UP_S = 60.0
"""How long after a node starts an overdue purge runs (plus up to half as much again,
at random, so nodes started together do not all wake at once)."""


class RetentionConfig(BaseModel):
    """The ``[retention]`` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recordings_days: int = Field(default=180, ge=1)
    """Days a call recording (a material of kind ``recording``) is kept."""
    materials_days: int = Field(default=1095, ge=1)
    """Days every other material (files, pages, documents, snapshots) is kept."""
    id_reads_days: int = Field(default=1095, ge=1)
    """Days an ID-card read (and its photo) is kept."""
    only_closed_cases: bool = True
    """Purge only cases that are completed or rejected; open cases keep everything."""
    every_hours: float = Field(default=24, ge=0)
    """How often the nodes run the purge (fractions allowed: 0.5 is every 30 minutes),
    counted from the last run of any node or of ``vwindow purge``, as recorded in the
    database: a run overdue when a node starts (it restarted, or every node was down)
    starts about a minute later. 0: never (run ``vwindow purge`` from cron instead). On
    PostgreSQL one node purges per run; the others skip it."""


@dataclass
class PurgeReport:
    """What a purge removed (or, in a dry run, would remove)."""

    cases: int = 0
    materials: int = 0
    """Material rows, recordings included."""
    files: int = 0
    """Files removed from the store (shared content goes with its last reference)."""
    bytes: int = 0
    """Bytes of those files."""
    id_reads: int = 0
    recordings: int = 0
    """Of ``materials``, how many were recordings."""
    dry_run: bool = False


@dataclass
class _CasePlan:
    case_id: int
    material_ids: list[int]
    recordings: int
    id_read_ids: list[int]
    shas: set[str] = field(default_factory=set)


def _chunks(items: Sequence[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start:start + _CHUNK])


def _held_by_open_inspection() -> ColumnElement[bool]:
    report = exists().where(Inspection.report_material_id == Material.id,
                            Inspection.status == "open")
    evidence = exists().where(
        InspectionEvidence.inspection_id == Inspection.id, Inspection.status == "open",
        or_(InspectionEvidence.material_id == Material.id,
            InspectionEvidence.annotated_from == Material.id))
    return or_(report, evidence)


def _closed_case(case_column: InstrumentedAttribute[int], config: RetentionConfig
                 ) -> ColumnElement[bool] | None:
    if not config.only_closed_cases:
        return None
    return exists().where(Case.id == case_column, Case.status.in_(CLOSED_STATUSES))


def _material_filter(config: RetentionConfig, now: datetime) -> list[ColumnElement[bool]]:
    recordings_cut = now - timedelta(days=config.recordings_days)
    materials_cut = now - timedelta(days=config.materials_days)
    conditions = [
        or_((Material.kind == "recording") & (Material.created_at < recordings_cut),
            (Material.kind != "recording") & (Material.created_at < materials_cut)),
        ~_held_by_open_inspection(),
    ]
    closed = _closed_case(Material.case_id, config)
    if closed is not None:
        conditions.append(closed)
    return conditions


def _id_read_filter(config: RetentionConfig, now: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        IdRead.created_at < now - timedelta(days=config.id_reads_days)]
    closed = _closed_case(IdRead.case_id, config)
    if closed is not None:
        conditions.append(closed)
    return conditions


async def _plan_case(s: AsyncSession, case_id: int, config: RetentionConfig,
                     now: datetime) -> _CasePlan:
    materials = (await s.execute(
        select(Material.id, Material.kind, Material.sha256)
        .where(Material.case_id == case_id, *_material_filter(config, now))
        .order_by(Material.id))).all()
    id_reads = (await s.execute(
        select(IdRead.id, IdRead.photo_sha256)
        .where(IdRead.case_id == case_id, *_id_read_filter(config, now))
        .order_by(IdRead.id))).all()
    plan = _CasePlan(case_id, [m.id for m in materials],
                     sum(1 for m in materials if m.kind == "recording"),
                     [r.id for r in id_reads])
    plan.shas = {m.sha256 for m in materials} | {
        r.photo_sha256 for r in id_reads if r.photo_sha256}
    return plan


async def _still_referenced(s: AsyncSession, shas: Iterable[str], gone_materials: set[int],
                            gone_id_reads: set[int]) -> set[str]:
    """The SHA-256s of ``shas`` some row outside the ``gone_*`` ids still names."""
    wanted = sorted(shas)
    held: set[str] = set()
    for chunk in _chunks(wanted):
        for row in await s.execute(select(Material.id, Material.sha256)
                                   .where(Material.sha256.in_(chunk))):
            if row.id not in gone_materials:
                held.add(row.sha256)
        for read_id, photo in await s.execute(select(IdRead.id, IdRead.photo_sha256)
                                              .where(IdRead.photo_sha256.in_(chunk))):
            if read_id not in gone_id_reads and photo:
                held.add(photo)
        held.update(await s.scalars(select(Upload.sha256).where(Upload.sha256.in_(chunk))))
    return held


def _file_size(store: FileStore, sha256: str) -> int | None:
    try:
        return store.path_for(sha256).stat().st_size
    except (FileNotFoundError, ValidationError):
        return None


def _unlink(store: FileStore, sha256: str) -> bool:
    try:
        store.path_for(sha256).unlink()
    except FileNotFoundError:
        return False
    return True


async def _delete_rows(s: AsyncSession, plan: _CasePlan) -> None:
    for chunk in _chunks(plan.material_ids):
        await s.execute(delete(MaterialTag).where(MaterialTag.material_id.in_(chunk)))
        await s.execute(delete(InspectionEvidence)
                        .where(InspectionEvidence.material_id.in_(chunk)))
        await s.execute(update(InspectionEvidence)
                        .where(InspectionEvidence.annotated_from.in_(chunk))
                        .values(annotated_from=None))
        await s.execute(update(Inspection).where(Inspection.report_material_id.in_(chunk))
                        .values(report_material_id=None))
        await s.execute(delete(Material).where(Material.id.in_(chunk)))
    for chunk in _chunks(plan.id_read_ids):
        await s.execute(delete(IdRead).where(IdRead.id.in_(chunk)))


async def _case_ids(db: Database, config: RetentionConfig, now: datetime) -> list[int]:
    async with db.session() as s:
        from_materials = set(await s.scalars(
            select(Material.case_id).where(*_material_filter(config, now)).distinct()))
        from_id_reads = set(await s.scalars(
            select(IdRead.case_id).where(*_id_read_filter(config, now)).distinct()))
    return sorted(from_materials | from_id_reads)


async def purge(db: Database, store: FileStore, config: RetentionConfig, now: datetime,
                *, dry_run: bool = False) -> PurgeReport:
    """Remove what has outlived ``config``'s retention as of ``now`` (timezone-aware).

    ``dry_run``: count what would go (the same numbers a real run gives) and change
    nothing: no rows, no files, no audit entries.
    """
    if now.tzinfo is None:
        raise ValidationError("purge needs a timezone-aware 'now'", field="now")
    report = PurgeReport(dry_run=dry_run)
    # Rows this run has removed (or would have, in a dry run): a file shared between two
    # purged cases goes with the last of them in both modes.
    gone_materials: set[int] = set()
    gone_id_reads: set[int] = set()
    for case_id in await _case_ids(db, config, now):
        files: list[tuple[str, int]] = []
        async with db.session() as s:
            plan = await _plan_case(s, case_id, config, now)
            if not plan.material_ids and not plan.id_read_ids:
                continue
            gone_materials.update(plan.material_ids)
            gone_id_reads.update(plan.id_read_ids)
            held = await _still_referenced(s, plan.shas, gone_materials, gone_id_reads)
            for sha in sorted(plan.shas - held):
                size = await asyncio.to_thread(_file_size, store, sha)
                if size is not None:
                    files.append((sha, size))
            freed = sum(size for _, size in files)
            if not dry_run:
                await _delete_rows(s, plan)
                await audit.append(s, actor=ACTOR, action=ACTION, case_id=case_id, detail={
                    "materials": len(plan.material_ids) - plan.recordings,
                    "recordings": plan.recordings,
                    "id_reads": len(plan.id_read_ids),
                    "files": len(files),
                    "bytes": freed,
                })
        if not dry_run and files:
            files = await _unlink_unreferenced(db, store, files)
        report.cases += 1
        report.materials += len(plan.material_ids)
        report.recordings += plan.recordings
        report.id_reads += len(plan.id_read_ids)
        report.files += len(files)
        report.bytes += sum(size for _, size in files)
        logger.info("retention%s: case %d: %d materials, %d recordings, %d id reads, "
                    "%d files, %d bytes", " (dry run)" if dry_run else "", case_id,
                    len(plan.material_ids) - plan.recordings, plan.recordings,
                    len(plan.id_read_ids), len(files), sum(size for _, size in files))
    logger.info("retention%s: %d cases, %d materials (%d recordings), %d id reads, "
                "%d files, %d bytes", " (dry run)" if dry_run else "", report.cases,
                report.materials, report.recordings, report.id_reads, report.files,
                report.bytes)
    return report


async def _unlink_unreferenced(db: Database, store: FileStore,
                               files: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Unlink the files no row names after the commit; return the ones removed.

    Checked again because a row naming the same content may have committed since.
    """
    async with db.session() as s:
        held = await _still_referenced(s, [sha for sha, _ in files], set(), set())
    removed: list[tuple[str, int]] = []
    for sha, size in files:
        if sha in held:
            continue
        if await asyncio.to_thread(_unlink, store, sha):
            removed.append((sha, size))
    return removed


class RetentionJob:
    """Runs the purge every ``config.every_hours`` (not at all when it is 0).

    Every server node starts one. The next run is planned from the last one recorded in
    ``job_runs`` (:func:`last_run`), whichever node or ``vwindow purge`` made it: due
    ``every_hours`` after it, or, when that time has passed (or there is no run yet),
    ``catch_up_s`` (at most one period) plus jitter after the node looked. Each run is
    :func:`purge_exclusively`: on PostgreSQL a node that does not get
    :data:`PG_PURGE_LOCK` skips the run, and so does one that finds, under the lock,
    that another node has run since it planned; a node that dies mid-run loses its
    connection and with it the lock. A failed run is logged and tried again a period
    later.
    """

    def __init__(self, db: Database, store: FileStore, config: RetentionConfig, *,
                 catch_up_s: float = CATCH_UP_S) -> None:
        self._db = db
        self._store = store
        self._config = config
        self._catch_up_s = catch_up_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._config.every_hours > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="retention-purge")

    async def stop(self) -> None:
        """Cancel the loop (a run in progress rolls back its current case); safe twice."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def run_once(self) -> PurgeReport | None:
        """A run now, due or not: what it purged, or None when another node holds the
        lock."""
        return await purge_exclusively(self._db, self._store, self._config, utcnow())

    def delay_s(self, last: datetime | None, now: datetime) -> float:
        """Seconds from ``now`` to the run after ``last`` (None: no run yet)."""
        period = self._config.every_hours * 3600
        if last is not None:
            due = (last + timedelta(seconds=period) - now).total_seconds()
            if due > 0:
                return due
        catch_up = min(self._catch_up_s, period)
        return catch_up * (1 + random.random() / 2)

    async def _run(self) -> None:
        period = self._config.every_hours * 3600
        while True:
            try:
                last = await last_run(self._db)
                await asyncio.sleep(self.delay_s(last, utcnow()))
                # Another node may have run while this one slept: then it skips, and
                # plans again from that run.
                await purge_exclusively(self._db, self._store, self._config, utcnow(),
                                        only_if=_unchanged(last))
            except Exception:
                # A failed run (database away, disk error) is retried a period later. The
                # purge's statements carry ids, hashes, dates and counts only, so the
                # traceback holds no personal data.
                logger.exception("retention purge failed; retrying in %.4g hours",
                                 self._config.every_hours)
                await asyncio.sleep(period)


def _unchanged(planned: datetime | None) -> Callable[[datetime | None], bool]:
    return lambda seen: seen == planned


async def last_run(db: Database) -> datetime | None:
    """When the last purge run (of any node, or ``vwindow purge``) started; None: never."""
    async with db.session() as s:
        return await s.scalar(select(JobRun.last_run_at).where(JobRun.job == JOB))


async def _record_run(db: Database, now: datetime) -> None:
    async with db.session() as s:
        if db.is_postgres:
            pg = pg_insert(JobRun).values(job=JOB, last_run_at=now)
            await s.execute(pg.on_conflict_do_update(index_elements=[JobRun.job],
                                                     set_={"last_run_at": now}))
        else:
            lite = sqlite_insert(JobRun).values(job=JOB, last_run_at=now)
            await s.execute(lite.on_conflict_do_update(index_elements=[JobRun.job],
                                                       set_={"last_run_at": now}))


async def _recorded_purge(db: Database, store: FileStore, config: RetentionConfig,
                          now: datetime,
                          only_if: Callable[[datetime | None], bool] | None,
                          ) -> PurgeReport | None:
    if only_if is not None and not only_if(await last_run(db)):
        logger.debug("retention: another node has run the purge since; skipping this run")
        return None
    # Recorded before purging: a run that fails is tried again a period later, not at
    # every node's start.
    await _record_run(db, now)
    return await purge(db, store, config, now)


async def purge_exclusively(db: Database, store: FileStore, config: RetentionConfig,
                            now: datetime, *,
                            only_if: Callable[[datetime | None], bool] | None = None,
                            ) -> PurgeReport | None:
    """``purge`` as a recorded run (see :func:`last_run`), unless another process of the
    installation is purging: then None.

    On PostgreSQL that is whoever holds :data:`PG_PURGE_LOCK`, taken here on a connection
    of its own in autocommit, so the lock is held without a long open transaction while
    ``purge`` works in its own short ones. SQLite has one node: it just purges.
    ``only_if``: given the last run's start as read once the lock is held, whether to
    run (None also when it says no).
    """
    if not db.is_postgres:
        return await _recorded_purge(db, store, config, now, only_if)
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"),
                                {"k": PG_PURGE_LOCK})
        if not got:
            logger.debug("retention: another node is purging; skipping this run")
            return None
        try:
            return await _recorded_purge(db, store, config, now, only_if)
        finally:
            await _unlock(conn)


async def _unlock(conn: AsyncConnection) -> None:
    try:
        await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_PURGE_LOCK})
    except Exception:
        # The connection is in doubt: drop it rather than pool it, which ends its session
        # and so releases the lock.
        logger.warning("retention: could not release the purge lock; closing its "
                       "connection", exc_info=True)
        await conn.invalidate()
