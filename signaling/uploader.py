"""Client side of resumable uploads (the kiosk device agent's), and its offline spool.

``ChunkedUploader.upload`` announces the content by SHA-256, then sends chunks from the
offset the server names; after any failure the next attempt asks again and continues
where the server's bytes end, so a retry neither repeats nor duplicates.

``Spool`` keeps what is still to be uploaded on the kiosk's disk (the bytes and a small
JSON record, each written to a temp file, fsynced and renamed), so a capture taken while
the uplink is down, or before a crash, is uploaded when the server is reachable again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from signaling.client import ClientError

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], Awaitable[None] | None]
"""Called with (bytes the server has, total) after each chunk."""


@dataclass(frozen=True, slots=True)
class UploadMeta:
    """What the server is told about an upload, besides its bytes."""

    case_id: int
    content_type: str
    filename: str
    source: str = "upload"
    kind: str = "file"
    call_id: int | None = None
    document: str | None = None
    page: int | None = None


class UploadRefusedError(ClientError):
    """The server refused the content or its case (type, size, no such case): retrying
    the same request cannot help, so the spool drops it and says why."""


class ChunkedUploader:
    """Uploads over one ``aiohttp`` session; ``token`` is read at each request."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str,
                 token: Callable[[], str], *, chunk_bytes: int = 1024 * 1024) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.chunk_bytes = chunk_bytes

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    async def upload(self, data: bytes, meta: UploadMeta,
                     progress: Progress | None = None) -> dict[str, Any]:
        """Send ``data``; returns the material (a dict) it became."""
        body = {k: v for k, v in asdict(meta).items() if k != "case_id" and v is not None}
        body |= {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        announce = f"/api/v1/cases/{meta.case_id}/uploads"
        state = await self._call("POST", announce, json=body)
        recoveries = 0
        while not state["complete"]:
            offset = int(state["offset"])
            if progress is not None:
                await _maybe_await(progress(offset, len(data)))
            chunk = data[offset: offset + self.chunk_bytes]
            try:
                state = await self._call(
                    "PATCH", f"/api/v1/uploads/{state['upload_id']}", data=chunk,
                    headers={"Upload-Offset": str(offset),
                             "Content-Type": "application/offset+octet-stream"})
            except ClientError as err:
                recoveries += 1
                if recoveries > 5:
                    raise
                if err.code == "upload_offset":
                    # An earlier chunk did land (its answer was lost): ask where we are.
                    state = await self._call("GET", f"/api/v1/uploads/{state['upload_id']}")
                elif err.code == "not_found" or err.field == "sha256":
                    # Finished by a request whose answer was lost, or reset after bytes
                    # arrived damaged: announcing again says which.
                    state = await self._call("POST", announce, json=body)
                else:
                    raise
        if progress is not None:
            await _maybe_await(progress(len(data), len(data)))
        material: dict[str, Any] = state["material"]
        return material

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = self._headers() | kwargs.pop("headers", {})
        async with self.http.request(method, self.base_url + path, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=60),
                                     **kwargs) as resp:
            try:
                body: dict[str, Any] = await resp.json()
            except (aiohttp.ContentTypeError, json.JSONDecodeError) as err:
                raise ClientError("bad_response", f"{method} {path}: HTTP {resp.status} "
                                  "without a JSON body") from err
            if resp.status < 400:
                return body
            error = body.get("error", {})
            code, message = error.get("code", "error"), error.get("message", str(resp.status))
            field = error.get("field")
            if resp.status in (400, 403, 404, 413) and field != "sha256":
                raise UploadRefusedError(code, message, field)
            raise ClientError(code, message, field)


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if value is not None:
        await value


class Spool:
    """Uploads waiting on the kiosk's disk, oldest first."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add(self, data: bytes, meta: UploadMeta) -> str:
        """Keep ``data`` until it is uploaded; returns the spool entry's name."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        name = f"{meta.case_id}-{digest}"
        # Bytes first, record second: a record always has its bytes.
        self._write(self.root / f"{name}.bin", data)
        self._write(self.root / f"{name}.json", json.dumps(asdict(meta)).encode())
        return name

    def pending(self) -> list[tuple[str, UploadMeta]]:
        if not self.root.is_dir():
            return []
        records = sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        out: list[tuple[str, UploadMeta]] = []
        for record in records:
            try:
                meta = UploadMeta(**json.loads(record.read_text()))
            except (ValueError, TypeError) as err:
                logger.warning("spool: dropping unreadable record %s (%s)", record.name, err)
                self.remove(record.stem)
                continue
            out.append((record.stem, meta))
        return out

    def data(self, name: str) -> bytes:
        return (self.root / f"{name}.bin").read_bytes()

    def remove(self, name: str) -> None:
        (self.root / f"{name}.json").unlink(missing_ok=True)
        (self.root / f"{name}.bin").unlink(missing_ok=True)

    async def upload_one(self, name: str, uploader: ChunkedUploader,
                         progress: Progress | None = None) -> dict[str, Any] | None:
        """Upload one entry and remove it; ``None`` when it was already sent or the server
        refused it for good (dropped, with a log line). Connection errors propagate and
        keep the entry."""
        try:
            meta = UploadMeta(**json.loads(
                await asyncio.to_thread((self.root / f"{name}.json").read_text)))
        except FileNotFoundError:
            return None  # sent meanwhile by another drain of the same spool
        try:
            data = await asyncio.to_thread(self.data, name)
        except FileNotFoundError:
            await asyncio.to_thread(self.remove, name)
            return None
        try:
            material = await uploader.upload(data, meta, progress)
        except UploadRefusedError as err:
            logger.warning("spool: case %s upload refused (%s: %s); dropped",
                           meta.case_id, err.code, err.message)
            await asyncio.to_thread(self.remove, name)
            return None
        await asyncio.to_thread(self.remove, name)
        return material

    async def drain(self, uploader: ChunkedUploader,
                    on_done: Callable[[UploadMeta, dict[str, Any]], Awaitable[None]] | None
                    = None) -> int:
        """Upload everything pending; stop at the first connection failure (the caller
        tries again later). Returns how many entries were uploaded."""
        done = 0
        for name, meta in await asyncio.to_thread(self.pending):
            material = await self.upload_one(name, uploader)
            if material is None:
                continue
            done += 1
            if on_done is not None:
                await on_done(meta, material)
        return done
