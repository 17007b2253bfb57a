"""Backups of one deployment: the database and the file store in one tar archive.

Layout of the archive (``.tar``, or gzip-compressed when the name ends in ``.gz`` or
``.tgz``)::

    manifest.json                format, version, created_at, Alembic revision, backend,
                                 every table (rows, bytes, SHA-256), every file (SHA-256,
                                 size)
    db/<table>.jsonl             a header line {"table", "columns"}, then one JSON array
                                 per row, in primary-key order
    files/ab/cd/abcd…            the store's content-addressed files

The database is dumped logically, table by table through SQLAlchemy, inside one
read-only snapshot (REPEATABLE READ on PostgreSQL, one read transaction on SQLite).
That was chosen over ``pg_dump``/``pg_restore`` and the SQLite backup API because one
code path serves both backends, needs no client binaries whose major version must match
the server (the container image has none), hashes every table into the manifest, and
can move a SQLite pilot onto PostgreSQL. Its limit: it restores into the schema
revision it was made at (the restored node's ``vwindow migrate`` then upgrades).

The dump is taken before the store is read: the store only grows, and a material row is
committed after its file, so every file the dump refers to is in the archive. Files are
verified against their names while packed and again while restored; ``restore`` checks
the whole archive before it changes anything, restores the rows in one transaction and
swaps the store in by renaming a verified copy into place.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from alembic.util.exc import CommandError
from sqlalchemy import MetaData, Table, func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import JSON, Date, DateTime, _Binary

from vwindow.config import Config
from vwindow.db import create_engine, migrate
from vwindow.errors import VWindowError
from vwindow.models import utcnow

logger = logging.getLogger(__name__)

FORMAT = "vwindow-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SKIP_TABLES = frozenset({"alembic_version"})  # recorded as the manifest's revision
INSERT_BATCH = 500
_CHUNK = 1024 * 1024
_FILE_MEMBER = re.compile(r"files/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})")
_DB_MEMBER = re.compile(r"db/([A-Za-z0-9_]{1,63})\.jsonl")


class BackupError(VWindowError):
    code = "backup"


@dataclass(frozen=True)
class BackupReport:
    """What was written or restored."""

    path: Path
    revision: str
    tables: dict[str, int]
    files: int
    file_bytes: int


# -- values ------------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decoder(table: Table, name: str) -> Any:
    """A function turning a dumped value back into what column ``name`` takes."""
    col_type = table.c[name].type
    if isinstance(col_type, _Binary):
        return lambda v: None if v is None else base64.b64decode(v)
    if isinstance(col_type, DateTime):
        aware = bool(getattr(col_type, "timezone", False))

        def to_datetime(v: Any) -> datetime | None:
            if v is None:
                return None
            parsed = datetime.fromisoformat(v)
            # SQLite keeps UTC timestamps without a zone; PostgreSQL wants one.
            if aware and parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            if not aware and parsed.tzinfo is not None:
                return parsed.astimezone(UTC).replace(tzinfo=None)
            return parsed

        return to_datetime
    if isinstance(col_type, Date):
        return lambda v: None if v is None else date.fromisoformat(v)
    if isinstance(col_type, JSON):
        # Reflected from SQLite a JSON column may be plain text: keep what was dumped.
        return lambda v: v
    return lambda v: v


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- database: dump ------------------------------------------------------------------------


class _JsonLines:
    """A table dump being written: one JSON value per line, hashed as written."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def __enter__(self) -> _JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def put(self, value: Any) -> None:
        line = json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                          default=str).encode() + b"\n"
        self.digest.update(line)
        self.size += len(line)
        self._fh.write(line)


async def _reflect(conn: AsyncConnection) -> MetaData:
    meta = MetaData()
    await conn.run_sync(lambda sync: meta.reflect(sync))
    return meta


async def _revision(conn: AsyncConnection) -> str | None:
    def read(sync: Connection) -> str | None:
        if not inspect(sync).has_table("alembic_version"):
            return None
        value = sync.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return str(value) if value is not None else None

    return await conn.run_sync(read)


def _data_tables(meta: MetaData) -> list[Table]:
    return [t for t in meta.sorted_tables if t.name not in SKIP_TABLES]


async def _dump_database(engine: AsyncEngine, out_dir: Path) -> tuple[str, dict[str, Any]]:
    """Every table into ``out_dir/<table>.jsonl`` from one snapshot; (revision, tables)."""
    tables: dict[str, Any] = {}
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execution_options(isolation_level="REPEATABLE READ",
                                         postgresql_readonly=True)
        else:
            # pysqlite opens transactions only for writes: begin one so that every
            # table is read from the same WAL snapshot while nodes keep writing.
            await conn.exec_driver_sql("BEGIN")
        revision = await _revision(conn)
        if revision is None:
            raise BackupError("the database has no vwindow schema (run 'vwindow migrate' "
                              "first, or check db.url)", field="db.url")
        meta = await _reflect(conn)
        for table in _data_tables(meta):
            path = out_dir / f"{table.name}.jsonl"
            rows = 0
            with _JsonLines(path) as out:
                out.put({"table": table.name, "columns": [c.name for c in table.columns]})
                order = list(table.primary_key.columns) or list(table.columns)
                result = await conn.stream(select(table).order_by(*order))
                async for row in result:
                    out.put([_encode(v) for v in row])
                    rows += 1
            tables[table.name] = {"rows": rows, "bytes": out.size,
                                  "sha256": out.digest.hexdigest()}
        await conn.rollback()
    return revision, tables


# -- files: list and pack ------------------------------------------------------------------


def _store_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(sha256, path) of every content file; ``tmp/`` and ``uploads/`` are not content."""
    if not root.is_dir():
        return
    for first in sorted(root.iterdir()):
        if not (first.is_dir() and re.fullmatch(r"[0-9a-f]{2}", first.name)):
            continue
        for second in sorted(first.iterdir()):
            if not (second.is_dir() and re.fullmatch(r"[0-9a-f]{2}", second.name)):
                continue
            for path in sorted(second.iterdir()):
                if (path.is_file() and re.fullmatch(r"[0-9a-f]{64}", path.name)
                        and path.name.startswith(first.name + second.name)):
                    yield path.name, path


class _HashingReader(io.RawIOBase):
    """Reads a file for ``tarfile`` and hashes what it read, so each file is read once."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.digest.update(data)
        return data


def _open_for_writing(path: Path) -> tarfile.TarFile:
    if path.name.endswith((".gz", ".tgz")):
        return tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT)
    return tarfile.open(path, "w", format=tarfile.PAX_FORMAT)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o640
    tar.addfile(info, io.BytesIO(data))


def _write_archive(out: Path, manifest: dict[str, Any], dump_dir: Path,
                   files: list[tuple[str, Path, int]]) -> None:
    now = utcnow().timestamp()
    with _open_for_writing(out) as tar:
        _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode(), now)
        for name in manifest["tables"]:
            tar.add(dump_dir / f"{name}.jsonl", arcname=f"db/{name}.jsonl", recursive=False)
        for sha, path, size in files:
            info = tarfile.TarInfo(f"files/{sha[:2]}/{sha[2:4]}/{sha}")
            info.size = size
            info.mtime = int(now)
            info.mode = 0o640
            with path.open("rb") as fh:
                reader = _HashingReader(fh)
                tar.addfile(info, reader)
            if reader.digest.hexdigest() != sha:
                raise BackupError(f"store file {sha} is corrupt on disk (its content hashes "
                                  f"to {reader.digest.hexdigest()}); no backup written",
                                  field=str(path))


async def backup(config: Config, out_path: str | Path) -> BackupReport:
    """Write the database and the file store to ``out_path`` (never half an archive)."""
    out = Path(out_path)
    if await asyncio.to_thread(out.exists):
        raise BackupError(f"{str(out)!r} already exists; choose a new name", field="out")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{secrets.token_hex(4)}.partial"
    dump_dir = staging / "db"
    dump_dir.mkdir(parents=True)
    engine = create_engine(config.db.url)
    try:
        revision, tables = await _dump_database(engine, dump_dir)
        files = [(sha, path, path.stat().st_size)
                 for sha, path in _store_files(Path(config.storage.root))]
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION,
            "created_at": utcnow().isoformat(), "alembic_revision": revision,
            "backend": engine.dialect.name, "tables": tables,
            "files": {"count": len(files), "bytes": sum(f[2] for f in files),
                      "sha256": [[sha, size] for sha, _, size in files]},
        }
        partial = staging / "archive"
        await asyncio.to_thread(_write_archive, partial, manifest, dump_dir, files)
        await asyncio.to_thread(os.replace, partial, out)
    except OSError as err:
        raise BackupError(f"could not write the backup {str(out)!r}: {err}") from err
    finally:
        await engine.dispose()
        shutil.rmtree(staging, ignore_errors=True)
    total = sum(f[2] for f in files)
    logger.info("backup written: %d tables, %d files (%d bytes), schema %s", len(tables),
                len(files), total, revision)
    return BackupReport(out, revision, {k: v["rows"] for k, v in tables.items()},
                        len(files), total)


# -- reading an archive ----------------------------------------------------------------------


def _check_manifest(raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BackupError(f"the archive's {MANIFEST} is not JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"not a vwindow backup ({MANIFEST} names no {FORMAT!r} format)")
    if manifest.get("version") != FORMAT_VERSION:
        raise BackupError(f"backup format version {manifest.get('version')!r} is not "
                          f"supported (this vwindow reads version {FORMAT_VERSION})")
    for key, kind in (("alembic_revision", str), ("tables", dict), ("files", dict)):
        if not isinstance(manifest.get(key), kind):
            raise BackupError(f"{MANIFEST} has no valid {key!r}", field=key)
    return manifest


def _copy_hashed(src: IO[bytes], dest: Path | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    out = dest.open("wb") if dest is not None else None
    try:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
    finally:
        if out is not None:
            out.close()
    return digest.hexdigest(), size


def _read_archive(path: Path, staging: Path | None) -> dict[str, Any]:
    """Check every member against the manifest; with ``staging``, unpack there too
    (``staging/db/<table>.jsonl`` and ``staging/store/ab/cd/<sha>``)."""
    try:
        tar = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as err:
        raise BackupError(f"cannot read {str(path)!r} as a tar archive: {err}") from err
    with tar:
        try:
            return _read_members(tar, staging)
        except (tarfile.TarError, EOFError, OSError) as err:
            # gzip's CRC or a truncated stream: the archive itself is damaged.
            raise BackupError(f"the archive {str(path)!r} is damaged: {err}") from err


def _read_members(tar: tarfile.TarFile, staging: Path | None) -> dict[str, Any]:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise BackupError(f"the archive does not start with {MANIFEST}")
    fh = tar.extractfile(first)
    if fh is None:
        raise BackupError(f"the archive's {MANIFEST} cannot be read")
    manifest = _check_manifest(fh.read())
    tables: dict[str, Any] = manifest["tables"]
    expected = {sha: int(size) for sha, size in manifest["files"].get("sha256", [])}
    seen_tables: set[str] = set()
    seen_files: set[str] = set()
    while (member := tar.next()) is not None:  # streamed: iterating restarts at the top
        name = member.name
        db_match = _DB_MEMBER.fullmatch(name)
        file_match = _FILE_MEMBER.fullmatch(name)
        if not member.isfile() or not (db_match or file_match):
            raise BackupError(f"unexpected entry {name!r} in the archive", field=name)
        src = tar.extractfile(member)
        if src is None:
            raise BackupError(f"archive entry {name!r} cannot be read", field=name)
        if db_match:
            table = db_match.group(1)
            if table not in tables or table in seen_tables:
                raise BackupError(f"table dump {name!r} is not in the manifest or repeated",
                                  field=name)
            dest = staging / "db" / f"{table}.jsonl" if staging is not None else None
            digest, _ = _copy_hashed(src, dest)
            if digest != tables[table].get("sha256"):
                raise BackupError(f"archive file {name!r} is corrupt: its SHA-256 does not "
                                  "match the manifest", field=name)
            seen_tables.add(table)
        elif file_match:
            a, b, sha = file_match.groups()
            if sha[:4] != a + b or sha not in expected or sha in seen_files:
                raise BackupError(f"store file {name!r} is not in the manifest or repeated",
                                  field=name)
            dest = None
            if staging is not None:
                dest = staging / "store" / a / b / sha
                dest.parent.mkdir(parents=True, exist_ok=True)
            digest, size = _copy_hashed(src, dest)
            if digest != sha or size != expected[sha]:
                raise BackupError(f"archive file {name!r} is corrupt: its content hashes to "
                                  f"{digest}, not to its name", field=name)
            seen_files.add(sha)
    missing = sorted(set(tables) - seen_tables) + sorted(set(expected) - seen_files)
    if missing:
        raise BackupError(f"the archive lacks {len(missing)} entries named in the manifest, "
                          f"e.g. {missing[0]!r}", field=missing[0])
    return manifest


async def verify_archive(in_path: str | Path) -> BackupReport:
    """Check a backup without restoring it: manifest, every table dump, every file."""
    path = Path(in_path)
    manifest = await asyncio.to_thread(_read_archive, path, None)
    return _report(path, manifest)


def _report(path: Path, manifest: dict[str, Any]) -> BackupReport:
    files = manifest["files"]
    return BackupReport(path, manifest["alembic_revision"],
                        {k: int(v["rows"]) for k, v in manifest["tables"].items()},
                        int(files.get("count", 0)), int(files.get("bytes", 0)))


# -- restore -----------------------------------------------------------------------------------


async def _row_counts(conn: AsyncConnection, meta: MetaData) -> dict[str, int]:
    counts = {}
    for table in _data_tables(meta):
        counts[table.name] = int((await conn.execute(
            select(func.count()).select_from(table))).scalar_one())
    return counts


def _store_has_files(root: Path) -> bool:
    return next(_store_files(root), None) is not None


async def _check_target(engine: AsyncEngine, root: Path, force: bool) -> str | None:
    """The target database's revision; refuses a target that holds data unless forced."""
    async with engine.connect() as conn:
        revision = await _revision(conn)
        counts = await _row_counts(conn, await _reflect(conn)) if revision else {}
    filled = {k: v for k, v in counts.items() if v}
    if not force and filled:
        raise BackupError(f"the database already holds data ({sum(filled.values())} rows in "
                          f"{len(filled)} tables); use --force (force=True) to replace it",
                          field="db.url")
    if not force and _store_has_files(root):
        raise BackupError(f"the file store {str(root)!r} is not empty; use --force (force=True) "
                          "to replace it", field="storage.root")
    return revision


def _load_rows(path: Path, table: Table) -> Iterator[list[dict[str, Any]]]:
    with path.open("rb") as fh:
        header = json.loads(fh.readline())
        columns: list[str] = header["columns"]
        unknown = [c for c in columns if c not in table.c]
        if unknown or len(columns) != len(table.columns):
            raise BackupError(f"table {table.name!r} of the archive has columns {columns}, "
                              f"the database {[c.name for c in table.columns]}",
                              field=table.name)
        decoders = [_decoder(table, c) for c in columns]
        batch: list[dict[str, Any]] = []
        for line in fh:
            values = json.loads(line)
            batch.append({c: dec(v) for c, dec, v in zip(columns, decoders, values,
                                                         strict=True)})
            if len(batch) >= INSERT_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


async def _reset_sequences(conn: AsyncConnection, tables: list[Table]) -> None:
    """Rows came with their ids: move each PostgreSQL serial past the largest one."""
    for table in tables:
        for column in table.primary_key.columns:
            seq = (await conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                      {"t": table.name, "c": column.name})).scalar()
            if seq is None:
                continue
            top = (await conn.execute(select(func.max(column)))).scalar()
            await conn.execute(text("SELECT setval(:s, :v, :called)"),
                               {"s": seq, "v": top or 1, "called": top is not None})


async def _restore_rows(engine: AsyncEngine, dump_dir: Path, manifest: dict[str, Any],
                        force: bool) -> None:
    async with engine.begin() as conn:
        meta = await _reflect(conn)
        tables = _data_tables(meta)
        names = {t.name for t in tables}
        if names != set(manifest["tables"]):
            diff = sorted(names ^ set(manifest["tables"]))
            raise BackupError(f"the archive's tables differ from the database's: {diff}")
        if force:
            for table in reversed(tables):
                await conn.execute(table.delete())
        for table in tables:
            for batch in _load_rows(dump_dir / f"{table.name}.jsonl", table):
                await conn.execute(table.insert(), batch)
        if engine.dialect.name == "postgresql":
            await _reset_sequences(conn, tables)


def _swap_store(staged: Path, root: Path) -> None:
    """Put the verified copy in place: one rename, or two when a store was there."""
    staged.mkdir(parents=True, exist_ok=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    old = root.parent / f".{root.name}.replaced-{secrets.token_hex(4)}"
    if root.exists():
        os.replace(root, old)
    os.replace(staged, root)
    shutil.rmtree(old, ignore_errors=True)


async def restore(config: Config, in_path: str | Path, *, force: bool = False) -> BackupReport:
    """Restore an archive into ``config``'s database and store.

    Refuses a database or store that holds data unless ``force``; checks the whole
    archive before changing anything. The nodes must be stopped while it runs.
    """
    path = Path(in_path)
    if not await asyncio.to_thread(path.is_file):
        raise BackupError(f"backup {str(path)!r} does not exist", field="in")
    root = Path(config.storage.root)
    engine = create_engine(config.db.url)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.restore-{secrets.token_hex(4)}"
    (staging / "db").mkdir(parents=True)
    try:
        current = await _check_target(engine, root, force)
        manifest = await asyncio.to_thread(_read_archive, path, staging)
        wanted = manifest["alembic_revision"]
        if current is not None and current != wanted:
            raise BackupError(f"the database is at schema revision {current!r} but the "
                              f"backup at {wanted!r}: restore into an empty database",
                              field="db.url")
        if current is None:
            try:
                await migrate(engine, wanted)
            except CommandError as err:
                raise BackupError(f"this vwindow does not know the backup's schema revision "
                                  f"{wanted!r}: {err}") from err
        await _restore_rows(engine, staging / "db", manifest, force)
        await asyncio.to_thread(_swap_store, staging / "store", root)
    except OSError as err:
        raise BackupError(f"restore failed: {err}") from err
    finally:
        await engine.dispose()
        shutil.rmtree(staging, ignore_errors=True)
    report = _report(path, manifest)
    logger.info("backup restored: %d tables, %d files, schema %s", len(report.tables),
                report.files, report.revision)
    return report
