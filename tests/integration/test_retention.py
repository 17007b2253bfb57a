"""``vwindow.retention.purge`` over real SQLite and PostgreSQL and a real file store."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from vwindow.audit import verify_chain
from vwindow.db import Database
from vwindow.errors import ValidationError
from vwindow.models import (
    AuditEntry,
    Call,
    Case,
    CaseStatus,
    IdRead,
    Inspection,
    InspectionEvidence,
    Kiosk,
    Material,
    MaterialTag,
    ServiceItem,
    User,
)
from vwindow.retention import PurgeReport, RetentionConfig, RetentionJob, purge
from vwindow.seed import DEMO
from vwindow.store import FileStore

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
CONFIG = RetentionConfig(recordings_days=30, materials_days=365, id_reads_days=365)
OLD = NOW - timedelta(days=400)  # past every retention above
MID = NOW - timedelta(days=40)  # past the recordings' retention only
NEW = NOW - timedelta(days=10)

both_databases = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)


@dataclass
class Site:
    db: Database
    store: FileStore
    kiosk_id: int
    township_id: int
    item_id: int
    agent_id: int
    counter: itertools.count[int]

    def blob(self, label: str) -> bytes:
        """Distinct content per call (the store names files by their hash)."""
        return f"{label}-{next(self.counter)}-".encode() * 200

    async def case(self, status: str) -> int:
        async with self.db.session() as s:
            row = Case(number=f"RT-{next(self.counter):04d}", service_item_id=self.item_id,
                       kiosk_id=self.kiosk_id, township_id=self.township_id, status=status)
            s.add(row)
            await s.flush()
            return row.id

    async def material(self, case_id: int, data: bytes, at: datetime,
                       kind: str = "file") -> int:
        sha = await self.store.put(data)
        async with self.db.session() as s:
            row = Material(case_id=case_id, sha256=sha, size=len(data),
                           content_type="application/octet-stream", filename="x.bin",
                           source="test", kind=kind, created_by="agent:1", created_at=at)
            s.add(row)
            await s.flush()
            return row.id

    async def id_read(self, case_id: int, photo: bytes, at: datetime) -> int:
        sha = await self.store.put(photo)
        async with self.db.session() as s:
            # Synthetic, no valid check character: SQLite's DEBUG log shows the parameters.
            row = IdRead(case_id=case_id, card_type="resident", name="测试", gender="男",
                         nation="汉", birth_date="1980-01-01", address="测试地址",
                         number="0" * 18, number_valid=False, authority="测试",
                         valid_from="2020-01-01", valid_to="2040-01-01",
                         photo_sha256=sha, created_by="kiosk:1", created_at=at)
            s.add(row)
            await s.flush()
            return row.id

    async def inspection(self, case_id: int, status: str) -> int:
        async with self.db.session() as s:
            call = Call(case_id=case_id, kiosk_id=self.kiosk_id,
                        service_item_id=self.item_id, status="ended")
            s.add(call)
            await s.flush()
            row = Inspection(number=f"INS-{next(self.counter)}", case_id=case_id,
                             call_id=call.id, created_by=self.agent_id, status=status)
            s.add(row)
            await s.flush()
            return row.id

    def has_file(self, data: bytes) -> bool:
        return self.store.exists(hashlib.sha256(data).hexdigest())


async def open_site(db: Database, store: FileStore) -> Site:
    """A :class:`Site` over a started, demo-seeded database and a started store."""
    async with db.session() as s:
        kiosk = (await s.scalars(select(Kiosk).where(Kiosk.code == DEMO.kiosk_code))).one()
        item = (await s.scalars(select(ServiceItem).order_by(ServiceItem.id))).first()
        agent = (await s.scalars(select(User).order_by(User.id))).first()
    assert item is not None and agent is not None
    return Site(db, store, kiosk.id, kiosk.township_id, item.id, agent.id,
                itertools.count(1))


async def _counts(site: Site) -> tuple[int, int, int, int]:
    async with site.db.session() as s:
        return (await s.scalar(select(func.count()).select_from(Material)) or 0,
                await s.scalar(select(func.count()).select_from(IdRead)) or 0,
                await s.scalar(select(func.count()).select_from(AuditEntry)) or 0,
                await s.scalar(select(func.count()).select_from(MaterialTag)) or 0)


@both_databases
async def test_purge_removes_expired_material_of_closed_cases_only(site: Site) -> None:
    a = await site.case(CaseStatus.COMPLETED)
    b = await site.case(CaseStatus.REJECTED)
    c = await site.case(CaseStatus.IN_PROGRESS)

    rec_old, rec_new = site.blob("rec-old"), site.blob("rec-new")
    page_old, doc_mid, shared_c = site.blob("page"), site.blob("doc-mid"), site.blob("c")
    report_pdf, evidence, shared_ab = site.blob("report"), site.blob("ev"), site.blob("ab")
    photo_old, photo_new = site.blob("photo-old"), site.blob("photo-new")
    b_old, b_held = site.blob("b-old"), site.blob("b-held")

    purged = {
        "rec_old": await site.material(a, rec_old, MID, kind="recording"),
        "page_old": await site.material(a, page_old, OLD, kind="page"),
        "shared_c_in_a": await site.material(a, shared_c, OLD),
        "report": await site.material(a, report_pdf, OLD, kind="document"),
        "evidence": await site.material(a, evidence, OLD, kind="snapshot"),
        "ab_in_a": await site.material(a, shared_ab, OLD),
        "b_old": await site.material(b, b_old, OLD),
        "ab_in_b": await site.material(b, shared_ab, OLD),
    }
    kept = {
        "rec_new": await site.material(a, rec_new, NEW, kind="recording"),
        "doc_mid": await site.material(a, doc_mid, MID),
        "b_held": await site.material(b, b_held, OLD),
        "c_old": await site.material(c, shared_c, OLD),
    }
    old_read = await site.id_read(a, photo_old, OLD)
    new_read = await site.id_read(a, photo_new, NEW)
    open_case_read = await site.id_read(c, site.blob("photo-c"), OLD)

    closed_insp = await site.inspection(a, "closed")
    open_insp = await site.inspection(b, "open")
    async with site.db.session() as s:
        s.add(MaterialTag(material_id=purged["page_old"], case_id=a,
                          material_type="id_card", tagged_by="agent:1"))
        s.add(MaterialTag(material_id=kept["doc_mid"], case_id=a,
                          material_type="form", tagged_by="agent:1"))
        inspection = await s.get(Inspection, closed_insp)
        assert inspection is not None
        inspection.report_material_id = purged["report"]
        s.add(InspectionEvidence(inspection_id=closed_insp, material_id=purged["evidence"],
                                 annotated_from=purged["page_old"]))
        s.add(InspectionEvidence(inspection_id=open_insp, material_id=kept["b_held"]))

    freed = [rec_old, page_old, report_pdf, evidence, shared_ab, b_old, photo_old]
    expected = PurgeReport(cases=2, materials=8, recordings=1, id_reads=1,
                           files=len(freed), bytes=sum(len(d) for d in freed))

    before = await _counts(site)
    dry = await purge(site.db, site.store, CONFIG, NOW, dry_run=True)
    assert dry == PurgeReport(**{**expected.__dict__, "dry_run": True})
    assert await _counts(site) == before
    assert all(site.has_file(d) for d in freed)

    report = await purge(site.db, site.store, CONFIG, NOW)
    assert report == expected

    async with site.db.session() as s:
        left = set(await s.scalars(select(Material.id)))
        reads = set(await s.scalars(select(IdRead.id)))
        tags = set(await s.scalars(select(MaterialTag.material_id)))
        evidence_rows = (await s.scalars(select(InspectionEvidence))).all()
        closed = await s.get(Inspection, closed_insp)
        entries = (await s.scalars(select(AuditEntry).where(
            AuditEntry.action == "retention.purged").order_by(AuditEntry.id))).all()
        chain = await verify_chain(s)
    assert left.isdisjoint(purged.values())
    assert set(kept.values()) <= left
    assert reads == {new_read, open_case_read} and old_read not in reads
    assert tags == {kept["doc_mid"]}
    assert [(e.inspection_id, e.material_id) for e in evidence_rows] == [
        (open_insp, kept["b_held"])]
    assert closed is not None and closed.report_material_id is None

    assert not any(site.has_file(d) for d in freed)
    # Still named by a kept row: the open case's copy, the new ones, the held evidence.
    assert all(site.has_file(d) for d in (shared_c, rec_new, doc_mid, b_held, photo_new))

    assert [(e.case_id, e.actor) for e in entries] == [(a, "system:retention"),
                                                       (b, "system:retention")]
    assert entries[0].detail == {"materials": 5, "recordings": 1, "id_reads": 1,
                                 "files": 5, "bytes": sum(len(d) for d in (
                                     rec_old, page_old, report_pdf, evidence, photo_old))}
    assert entries[1].detail == {"materials": 2, "recordings": 0, "id_reads": 0,
                                 "files": 2, "bytes": len(shared_ab) + len(b_old)}
    assert chain.ok, chain.reason

    # Nothing left to do: a second run removes nothing and writes no audit entry.
    audit_rows = (await _counts(site))[2]
    assert await purge(site.db, site.store, CONFIG, NOW) == PurgeReport()
    assert (await _counts(site))[2] == audit_rows


@both_databases
async def test_open_cases_too_when_configured(site: Site) -> None:
    open_case = await site.case(CaseStatus.RECEIVED)
    data = site.blob("open-old")
    await site.material(open_case, data, OLD)
    every_case = RetentionConfig(recordings_days=30, materials_days=365,
                                 id_reads_days=365, only_closed_cases=False)
    assert await purge(site.db, site.store, CONFIG, NOW) == PurgeReport()
    report = await purge(site.db, site.store, every_case, NOW)
    assert (report.cases, report.materials, report.files) == (1, 1, 1)
    assert not site.has_file(data)


@both_databases
async def test_naive_now_is_refused(site: Site) -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        await purge(site.db, site.store, CONFIG, NOW.replace(tzinfo=None))


def test_retention_config_defaults_and_unknown_key() -> None:
    default = RetentionConfig()
    assert (default.recordings_days, default.materials_days, default.id_reads_days,
            default.only_closed_cases, default.every_hours) == (180, 1095, 1095, True, 24)
    with pytest.raises(ValueError, match="recording_days"):
        RetentionConfig.model_validate({"recording_days": 3})


@both_databases
async def test_job_runs_on_its_period_and_stops(site: Site) -> None:
    case = await site.case(CaseStatus.COMPLETED)
    data = site.blob("job")
    await site.material(case, data, datetime.now(UTC) - timedelta(days=400))
    never = RetentionJob(site.db, site.store, RetentionConfig(every_hours=0))
    await never.start()
    await never.stop()
    job = RetentionJob(site.db, site.store,
                       RetentionConfig(materials_days=365, every_hours=0.2 / 3600))
    await job.start()
    for _ in range(100):
        if not site.has_file(data):
            break
        await asyncio.sleep(0.05)
    await job.stop()
    await job.stop()
    assert not site.has_file(data)
