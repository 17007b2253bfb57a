"""Uploads into a case: one-shot for small files, chunked and resumable for the rest.

The identity of an upload is the SHA-256 of its content, announced before the first
byte: opening the same content on the same case again finds the same upload (and its
offset, so an interrupted upload resumes) or the material it already became (so a
retry never duplicates). Chunks are appended at an explicit offset; a chunk at the
wrong offset is refused with the offset the server has, which is the length of the
partial file (``store/uploads/<id>``). When the last byte arrives the file is hashed,
its first bytes checked against the claimed type, and it is renamed into the store:
the store never holds half a file, and a half-sent upload survives a server restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from vwindow.auth import Principal
from vwindow.cases import Cases, material_view
from vwindow.db import Database
from vwindow.errors import (
    ConflictError,
    NotFoundError,
    StorageError,
    TooLargeError,
    ValidationError,
)
from vwindow.models import Material, Upload
from vwindow.store import FileStore
from vwindow.views import MaterialView

logger = logging.getLogger(__name__)

MAGIC: Final[dict[str, tuple[bytes, ...]]] = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "application/pdf": (b"%PDF-",),
    # Chat voice notes: MediaRecorder writes WebM (EBML header) or, in Firefox, Ogg.
    "audio/webm": (b"\x1aE\xdf\xa3",),
    "audio/ogg": (b"OggS",),
}
SOURCES: Final = frozenset({"doccam", "snapshot", "upload", "idcard", "qr", "surveyor"})
KINDS: Final = frozenset({"file", "original", "page", "document"})
"""Kinds a client may claim; ``snapshot`` and ``recording`` are made by the server."""

_SAFE_NAME = re.compile(r"[^\w.\-]+", re.UNICODE)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DOCUMENT = re.compile(r"[\w\-]{1,64}", re.UNICODE)


def safe_filename(name: str) -> str:
    """A name without folders or odd characters, at most 120 characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _SAFE_NAME.sub("_", base).strip("._") or "file"
    return cleaned[:120]


def check_type(content_type: str) -> None:
    if content_type not in MAGIC:
        allowed = ", ".join(sorted(MAGIC))
        raise ValidationError(f"content type {content_type!r} is not accepted "
                              f"(allowed: {allowed})", field="content_type")


def check_content(head: bytes, content_type: str) -> None:
    """The first bytes must really start a file of the claimed type."""
    check_type(content_type)
    if not head:
        raise ValidationError("upload is empty", field="body")
    if not any(head.startswith(m) for m in MAGIC[content_type]):
        raise ValidationError(f"the bytes are not a {content_type} file", field="body")


@dataclass(frozen=True, slots=True)
class UploadSpec:
    """What a client announces before sending bytes."""

    sha256: str
    size: int
    content_type: str
    filename: str
    source: str = "upload"
    kind: str = "file"
    call_id: int | None = None
    document: str | None = None
    page: int | None = None

    def check(self, max_bytes: int) -> None:
        if not _SHA256.fullmatch(self.sha256):
            raise ValidationError(f"sha256 must be 64 lower-case hex digits, got "
                                  f"{self.sha256[:70]!r}", field="sha256")
        if self.size <= 0:
            raise ValidationError(f"size must be at least 1, got {self.size}", field="size")
        if self.size > max_bytes:
            raise TooLargeError(f"upload of {self.size} bytes is over the {max_bytes}-byte "
                                "limit", field="size")
        check_type(self.content_type)
        if self.source not in SOURCES:
            raise ValidationError(f"source {self.source!r} is unknown (use one of "
                                  f"{', '.join(sorted(SOURCES))})", field="source")
        if self.kind not in KINDS:
            raise ValidationError(f"kind {self.kind!r} is unknown (use one of "
                                  f"{', '.join(sorted(KINDS))})", field="kind")
        if self.document is not None and not _DOCUMENT.fullmatch(self.document):
            raise ValidationError(f"document {self.document[:70]!r} must be 1-64 letters, "
                                  "digits, '_' or '-'", field="document")
        if self.page is not None and not 1 <= self.page <= 999:
            raise ValidationError(f"page must be 1..999, got {self.page}", field="page")


@dataclass(frozen=True, slots=True)
class UploadState:
    """Where an upload stands: in progress at ``offset``, or ``material`` once done."""

    upload_id: str | None
    offset: int
    size: int
    material: MaterialView | None = None
    new: bool = False
    """True only on the request that turned the upload into a new material."""

    @property
    def complete(self) -> bool:
        return self.material is not None


class Uploads:
    """Upload sessions of one node; the partial files live in the shared store."""

    def __init__(self, db: Database, store: FileStore, cases: Cases, *,
                 max_bytes: int, chunk_bytes: int = 4 * 1024 * 1024) -> None:
        self.db = db
        self.store = store
        self.cases = cases
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes
        self._locks: dict[str, asyncio.Lock] = {}

    def _partial(self, upload_id: str) -> Path:
        return self.store.partial_root / upload_id

    async def put(self, actor: Principal | str, case_id: int, spec: UploadSpec,
                  data: bytes) -> UploadState:
        """A whole upload in one request (small files, browsers)."""
        if len(data) != spec.size or hashlib.sha256(data).hexdigest() != spec.sha256:
            raise ValidationError("sha256/size do not match the bytes sent", field="body")
        spec.check(self.max_bytes)
        check_content(data[:16], spec.content_type)
        sha = await self.store.put(data)
        return await self._link(actor, case_id, spec, sha)

    async def open(self, actor: Principal | str, case_id: int,
                   spec: UploadSpec) -> UploadState:
        """Start an upload, or find the one (or the material) with this content."""
        spec.check(self.max_bytes)
        async with self.db.session() as s:
            done = (await s.scalars(select(Material).where(
                Material.case_id == case_id, Material.sha256 == spec.sha256))).first()
            if done is not None:
                return UploadState(None, done.size, done.size, material_view(done))
            row = (await s.scalars(select(Upload).where(
                Upload.case_id == case_id, Upload.sha256 == spec.sha256))).first()
        if row is not None:
            return UploadState(row.id, await self._offset(row.id), row.size)
        if self.store.exists(spec.sha256):
            # The bytes are already here (another case has them): link, send nothing.
            return await self._link(actor, case_id, spec, spec.sha256)
        return await self._create(actor, case_id, spec)

    async def _create(self, actor: Principal | str, case_id: int,
                      spec: UploadSpec) -> UploadState:
        actor_key = actor if isinstance(actor, str) else actor.key
        upload_id = secrets.token_hex(16)
        await asyncio.to_thread(self._touch, upload_id)
        try:
            async with self.db.session() as s:
                s.add(Upload(id=upload_id, case_id=case_id, call_id=spec.call_id,
                             sha256=spec.sha256, size=spec.size,
                             content_type=spec.content_type,
                             filename=safe_filename(spec.filename), source=spec.source,
                             kind=spec.kind, document=spec.document, page=spec.page,
                             created_by=actor_key))
        except IntegrityError:
            # Opened twice at once: the other request's upload is the one.
            self._partial(upload_id).unlink(missing_ok=True)
            async with self.db.session() as s:
                row = (await s.scalars(select(Upload).where(
                    Upload.case_id == case_id, Upload.sha256 == spec.sha256))).first()
            if row is None:
                raise ConflictError("upload was opened concurrently; retry") from None
            return UploadState(row.id, await self._offset(row.id), row.size)
        logger.info("case %s: upload %s opened (%s, %d bytes)", case_id, upload_id[:8],
                    spec.content_type, spec.size)
        return UploadState(upload_id, 0, spec.size)

    def _touch(self, upload_id: str) -> None:
        try:
            self.store.partial_root.mkdir(parents=True, exist_ok=True)
            self._partial(upload_id).touch()
        except OSError as err:
            raise StorageError.from_os_error("could not start the upload", err) from err

    async def get(self, upload_id: str) -> Upload:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise ValidationError(f"upload id {upload_id[:40]!r} is malformed",
                                  field="upload_id")
        async with self.db.session() as s:
            row = await s.get(Upload, upload_id)
        if row is None:
            raise NotFoundError(f"upload {upload_id} does not exist (finished or never "
                                "opened); open it again", field="upload_id")
        return row

    async def status(self, row: Upload) -> UploadState:
        return UploadState(row.id, await self._offset(row.id), row.size)

    async def _offset(self, upload_id: str) -> int:
        path = self._partial(upload_id)
        try:
            return (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            # The partial file is gone (store wiped, or a crash before it was made).
            await asyncio.to_thread(path.touch)
            return 0

    async def append(self, actor: Principal | str, row: Upload, offset: int,
                     chunk: bytes) -> UploadState:
        """Write ``chunk`` at ``offset``; on the last byte verify and store it."""
        if len(chunk) > self.chunk_bytes:
            raise TooLargeError(f"a chunk may be at most {self.chunk_bytes} bytes, got "
                                f"{len(chunk)}", field="body")
        # One writer per upload on this node; a client's retry racing its own
        # timed-out request must not interleave bytes.
        async with self._locks.setdefault(row.id, asyncio.Lock()):
            state = await self._append(actor, row, offset, chunk)
        if state.complete:
            self._locks.pop(row.id, None)
        return state

    async def _append(self, actor: Principal | str, row: Upload, offset: int,
                      chunk: bytes) -> UploadState:
        have = await self._offset(row.id)
        if offset != have:
            raise UploadOffsetError(f"chunk is at offset {offset} but the server has {have} "
                                    "bytes; resume from there", field="offset", offset=have)
        if not chunk and have < row.size:
            raise ValidationError("empty chunk", field="body")
        if have + len(chunk) > row.size:
            raise ValidationError(f"chunk runs past the announced size {row.size} "
                                  f"(offset {have} + {len(chunk)} bytes)", field="body")
        if have == 0:
            check_content(chunk[:16], row.content_type)
        await asyncio.to_thread(self._write, row.id, chunk)
        have += len(chunk)
        if have < row.size:
            return UploadState(row.id, have, row.size)
        return await self._finish(actor, row)

    def _write(self, upload_id: str, chunk: bytes) -> None:
        try:
            with self._partial(upload_id).open("ab") as fh:
                fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise StorageError.from_os_error("could not write the upload", err) from err

    async def _finish(self, actor: Principal | str, row: Upload) -> UploadState:
        path = self._partial(row.id)
        digest = await asyncio.to_thread(_sha256_of, path)
        if digest != row.sha256:
            # Start over rather than keep bytes that are not what was announced.
            await asyncio.to_thread(path.write_bytes, b"")
            raise ValidationError(f"the bytes received hash to {digest[:12]}…, not the "
                                  f"announced {row.sha256[:12]}…; upload again from 0",
                                  field="sha256")
        await asyncio.to_thread(self.store.adopt, path, row.sha256)
        spec = UploadSpec(sha256=row.sha256, size=row.size, content_type=row.content_type,
                          filename=row.filename, source=row.source, kind=row.kind,
                          call_id=row.call_id, document=row.document, page=row.page)
        state = await self._link(actor, row.case_id, spec, row.sha256)
        async with self.db.session() as s:
            done = await s.get(Upload, row.id)
            if done is not None:
                await s.delete(done)
        return state

    async def _link(self, actor: Principal | str, case_id: int, spec: UploadSpec,
                    sha: str) -> UploadState:
        material, new = await self.cases.add_material(
            actor, case_id, sha256=sha, size=spec.size, content_type=spec.content_type,
            filename=safe_filename(spec.filename), source=spec.source,
            call_id=spec.call_id, kind=spec.kind, document=spec.document, page=spec.page)
        return UploadState(None, spec.size, spec.size, material, new)


class UploadOffsetError(ConflictError):
    """A chunk was sent at an offset other than the server's; ``offset`` says where."""

    code = "upload_offset"

    def __init__(self, message: str, *, field: str | None = None, offset: int) -> None:
        super().__init__(message, field=field)
        self.offset = offset

    def details(self) -> dict[str, object]:
        return {"offset": self.offset}


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
