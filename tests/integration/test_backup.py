"""``vwindow.backup``: a round trip over real SQLite and PostgreSQL, and refusals."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import MetaData, func, select

from tests.conftest import make_config, pg_database
from tests.pgserver import PgServer
from vwindow.audit import verify_chain
from vwindow.backup import BackupError, backup, restore, verify_archive
from vwindow.cases import Cases
from vwindow.config import Config
from vwindow.db import Database
from vwindow.models import AuditEntry, Kiosk, Material
from vwindow.seed import DEMO, seed_demo
from vwindow.store import FileStore

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 64 + b"\n%%EOF\n"
PHOTO = b"\xff\xd8\xff\xe0" + bytes(reversed(range(256))) * 32


@dataclass
class Site:
    config: Config
    root: Path


def _url(kind: str, tmp_path: Path, name: str, pg: PgServer | str | None) -> str:
    if kind == "postgres":
        if pg is None:
            raise RuntimeError("postgres needs the pg_server fixture")
        return pg_database(pg)
    return f"sqlite+aiosqlite:///{tmp_path / name / 'vw.db'}"


def _site(kind: str, tmp_path: Path, name: str, pg: PgServer | str | None) -> Site:
    config = make_config(_url(kind, tmp_path, name, pg), tmp_path / name)
    return Site(config, Path(config.storage.root))


async def _demo_data(site: Site) -> None:
    """Demo accounts, a call on a case with two stored materials, audit entries."""
    db = Database(site.config.db.url)
    await db.start()
    store = FileStore(site.root)
    await store.start()
    try:
        await seed_demo(db)
        cases = Cases(db)
        async with db.session() as s:
            kiosk = (await s.scalars(select(Kiosk).where(Kiosk.code == DEMO.kiosk_code))).one()
        view = await cases.start_call(kiosk.id, "SB-001")
        for data, ctype, name in ((PDF, "application/pdf", "申请表.pdf"),
                                  (PHOTO, "image/jpeg", "page-1.jpg")):
            sha = await store.put(data)
            await cases.add_material("kiosk:1", view.case_id, sha256=sha, size=len(data),
                                     content_type=ctype, filename=name, source="doccam",
                                     call_id=view.call_id)
    finally:
        await db.stop()


async def _counts(url: str) -> dict[str, int]:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            meta = MetaData()
            await conn.run_sync(lambda c: meta.reflect(c))
            return {t.name: int((await conn.execute(
                select(func.count()).select_from(t))).scalar_one())
                for t in meta.sorted_tables if t.name != "alembic_version"}
    finally:
        await db.stop()


async def _chain(url: str) -> tuple[bool, int]:
    db = Database(url)
    try:
        async with db.session() as s:
            report = await verify_chain(s)
            entries = await s.scalar(select(func.count()).select_from(AuditEntry))
        return report.ok, int(entries or 0)
    finally:
        await db.stop()


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.glob("??/??/*") if p.is_file()}


@pytest.mark.parametrize(("source_kind", "target_kind", "archive"), [
    ("sqlite", "sqlite", "backup.tar"),
    ("sqlite", "sqlite", "backup.tar.gz"),
    ("postgres", "postgres", "backup.tar"),
    ("sqlite", "postgres", "backup.tar"),  # a SQLite pilot moved onto PostgreSQL
])
async def test_round_trip(request: pytest.FixtureRequest, tmp_path: Path, source_kind: str,
                          target_kind: str, archive: str) -> None:
    needs_pg = "postgres" in (source_kind, target_kind)
    pg = request.getfixturevalue("pg_server") if needs_pg else None
    source = _site(source_kind, tmp_path, "source", pg)
    await _demo_data(source)

    out = tmp_path / archive
    made = await backup(source.config, out)
    assert made.files == 2 and made.tables["materials"] == 2
    assert (await verify_archive(out)).tables == made.tables
    with tarfile.open(out, "r:*") as tar:
        assert tar.getnames()[0] == "manifest.json"

    target = _site(target_kind, tmp_path, "target", pg)
    restored = await restore(target.config, out)
    assert restored.tables == made.tables

    before, after = await _counts(source.config.db.url), await _counts(target.config.db.url)
    assert after == before
    assert before["materials"] == 2 and before["audit_log"] > 0
    assert await _chain(target.config.db.url) == (True, before["audit_log"])
    assert _files(target.root) == _files(source.root)
    assert set(_files(target.root).values()) == {PDF, PHOTO}

    # The restored node works: new rows get fresh ids (PostgreSQL serials were moved on).
    db = Database(target.config.db.url)
    await db.start()
    try:
        async with db.session() as s:
            top = await s.scalar(select(func.max(Material.id)))
        async with db.session() as s:
            s.add(Material(case_id=1, sha256="0" * 64, size=1, content_type="text/plain",
                           filename="x", source="test", created_by="test"))
            await s.flush()
            newest = await s.scalar(select(func.max(Material.id)))
        assert newest is not None and top is not None and newest > top
    finally:
        await db.stop()


async def test_restore_refuses_a_target_with_data_unless_forced(tmp_path: Path) -> None:
    source = _site("sqlite", tmp_path, "source", None)
    await _demo_data(source)
    out = tmp_path / "b.tar"
    await backup(source.config, out)

    with pytest.raises(BackupError, match="already holds data"):
        await restore(source.config, out)
    report = await restore(source.config, out, force=True)
    assert report.files == 2
    assert await _chain(source.config.db.url) == (True, report.tables["audit_log"])
    assert set(_files(source.root).values()) == {PDF, PHOTO}

    with pytest.raises(BackupError, match="already exists"):
        await backup(source.config, out)


def _flip_byte_in(archive: Path, member_name: str) -> None:
    with tarfile.open(archive) as tar:
        offset = tar.getmember(member_name).offset_data
    with archive.open("r+b") as fh:
        fh.seek(offset + 10)
        byte = fh.read(1)
        fh.seek(offset + 10)
        fh.write(bytes([byte[0] ^ 0x01]))


@pytest.mark.parametrize("what", ["file", "table"])
async def test_a_corrupted_archive_is_refused_naming_the_entry(tmp_path: Path,
                                                               what: str) -> None:
    source = _site("sqlite", tmp_path, "source", None)
    await _demo_data(source)
    out = tmp_path / "b.tar"
    await backup(source.config, out)
    with tarfile.open(out) as tar:
        names = tar.getnames()
    victim = next(n for n in names if n.startswith("files/" if what == "file" else "db/cases"))
    _flip_byte_in(out, victim)

    with pytest.raises(BackupError, match="corrupt") as caught:
        await verify_archive(out)
    assert victim in caught.value.message

    target = _site("sqlite", tmp_path, "target", None)
    with pytest.raises(BackupError, match="corrupt") as caught:
        await restore(target.config, out)
    assert victim in caught.value.message
    # Nothing was changed: no rows, no store, no staging left behind.
    assert all(v == 0 for v in (await _counts(target.config.db.url)).values())
    assert not target.root.exists()
    assert [p.name for p in target.root.parent.iterdir() if p.name.startswith(".")] == []


async def test_not_a_backup_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar"
    with tarfile.open(bogus, "w") as tar:
        tar.add(__file__, arcname="manifest.json")
    with pytest.raises(BackupError, match="not JSON"):
        await verify_archive(bogus)
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(BackupError, match="cannot read"):
        await verify_archive(tmp_path / "junk.tar")


async def test_backup_of_a_database_without_schema_is_refused(tmp_path: Path) -> None:
    site = _site("sqlite", tmp_path, "empty", None)
    with pytest.raises(BackupError, match="no vwindow schema"):
        await backup(site.config, tmp_path / "b.tar")
    assert not (tmp_path / "b.tar").exists()
