"""Content-addressed file store: files are named by their SHA-256.

A file is written to a temporary file in the same directory tree, fsynced, then renamed
into place, so the store never holds half a file; writing the same content twice is a
no-op.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

from vwindow.errors import NotFoundError, StorageError, ValidationError

logger = logging.getLogger(__name__)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class FileStore:
    """Files under ``root/ab/cd/abcd…`` (two levels of fan-out)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self.partial_root = self.root / "uploads"
        """Resumable uploads in progress (kept across restarts, unlike ``tmp/``)."""

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)

    async def stop(self) -> None:
        return None

    def _prepare(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        self.partial_root.mkdir(parents=True, exist_ok=True)
        # Temp files left by a crash are never referenced: remove them.
        for leftover in self._tmp.iterdir():
            leftover.unlink(missing_ok=True)

    def path_for(self, sha256: str) -> Path:
        if not _SHA256_RE.match(sha256):
            raise ValidationError(f"not a SHA-256 hex digest: {sha256!r}", field="sha256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    async def put(self, data: bytes) -> str:
        """Store ``data``; return its SHA-256 hex digest."""
        return await asyncio.to_thread(self._put, data)

    def _put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        final = self.path_for(digest)
        if final.is_file():
            return digest
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp_name, final)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
            _fsync_dir(final.parent)
        except OSError as err:
            raise StorageError.from_os_error(f"could not store file {digest[:12]}…", err) from err
        return digest

    async def put_file(self, source: str | Path) -> tuple[str, int]:
        """Store a file's content without reading it all into memory; (sha256, size)."""
        return await asyncio.to_thread(self._put_file, Path(source))

    def _put_file(self, source: Path) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
            try:
                with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                    while chunk := src.read(1024 * 1024):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                final = self.path_for(digest.hexdigest())
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, final)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
        except OSError as err:
            raise StorageError.from_os_error(f"could not store {source.name}", err) from err
        return digest.hexdigest(), size

    def adopt(self, source: Path, sha256: str) -> None:
        """Move a fully written, fsynced file whose content hashes to ``sha256`` into the
        store (same file system: one rename). Blocking; call it from a worker thread."""
        final = self.path_for(sha256)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.is_file():
                source.unlink(missing_ok=True)
                return
            os.replace(source, final)
            _fsync_dir(final.parent)
        except OSError as err:
            raise StorageError.from_os_error(f"could not store file {sha256[:12]}…", err) from err

    async def get(self, sha256: str) -> bytes:
        path = self.path_for(sha256)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as err:
            raise NotFoundError(f"file {sha256!r} is not in the store") from err

    async def verify(self, sha256: str) -> bool:
        """True when the stored bytes still hash to their name."""
        data = await self.get(sha256)
        return hashlib.sha256(data).hexdigest() == sha256


def _fsync_dir(path: Path) -> None:
    """Make a rename into ``path`` durable (the directory entry, not only the data)."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
