"""The kiosk device agent's document desk: a capture request becomes case material.

One request: take a full-resolution still, run the scan pipeline (page detection,
perspective, deskew, enhancement, blur/glare gates), read any QR code on the page,
add the page to its document and rebuild the document's PDF (img2pdf, the JPEG pages
embedded as they are), then upload the original still, the processed page and the
PDF. Everything goes into the on-disk spool before the first byte is sent, so a page
taken while the uplink is down is uploaded when it is back. Each step is reported to
the agent as ``device.progress`` (stage and percent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from devices.doccam import DocumentCamera
from devices.qr import CodeReader, DecodedCode
from devices.qr_page import read_page_codes
from devices.scan.errors import ScanError
from devices.scan.pdf import assemble_pdf_async
from devices.scan.pipeline import ScanPipeline, ScanResult
from signaling.client import ClientError
from signaling.uploader import ChunkedUploader, Spool, UploadMeta

logger = logging.getLogger(__name__)

Report = Callable[[str, float | None, str | None], Awaitable[None]]
"""(stage, percent, message) -> sent to the agent's console."""


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    request_id: str
    case_id: int
    call_id: int
    document: str | None = None
    mode: str = "color"
    accept_poor: bool = False

    @classmethod
    def from_push(cls, msg: dict[str, Any]) -> CaptureRequest:
        mode = msg.get("mode") if msg.get("mode") in ("color", "bw") else "color"
        document = msg.get("document")
        return cls(request_id=str(msg["request_id"]), case_id=int(msg["case_id"]),
                   call_id=int(msg["call_id"]),
                   document=str(document) if document else None, mode=str(mode),
                   accept_poor=bool(msg.get("accept_poor", False)))


@dataclass
class _Document:
    name: str
    pages: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    """What one capture produced (for logs and tests)."""

    document: str
    page: int
    queued: bool
    codes: tuple[str, ...]
    timings: dict[str, float]


MAX_DOCUMENT_PAGES = 40
"""Pages of one document the kiosk keeps to rebuild its PDF (about 12 MB of JPEG): more is
refused with a message to go on under another document name."""


class DocumentDesk:
    """Turns capture requests into uploaded pages; one capture at a time.

    The pages of each document are kept to rebuild its PDF as pages are added, for the
    kiosk's current case only (a capture for another case forgets the last one's), and
    at most ``MAX_DOCUMENT_PAGES`` per document: a kiosk agent runs for months.
    """

    def __init__(self, camera: DocumentCamera, spool: Spool, *,
                 pipelines: dict[str, ScanPipeline] | None = None,
                 code_reader: CodeReader | None = None) -> None:
        self.camera = camera
        self.spool = spool
        self.pipelines = pipelines or {"color": ScanPipeline(mode="color"),
                                       "bw": ScanPipeline(mode="bw")}
        self.code_reader = code_reader or CodeReader()
        self._documents: dict[int, list[_Document]] = {}
        self._busy = asyncio.Lock()
        self.upload_lock = asyncio.Lock()
        """Held while spooled files are sent, so the background drain and a capture
        never send the same file at once."""

    def _document(self, case_id: int, name: str | None) -> _Document:
        if case_id not in self._documents:
            self._documents.clear()  # the kiosk serves one case at a time
        docs = self._documents.setdefault(case_id, [])
        if name is None:
            if docs:
                return docs[-1]
            name = "材料1"
        for doc in docs:
            if doc.name == name:
                return doc
        doc = _Document(name)
        docs.append(doc)
        return doc

    async def capture(self, req: CaptureRequest, uploader: ChunkedUploader | None,
                      report: Report,
                      post_code: Callable[[DecodedCode], Awaitable[None]] | None = None,
                      ) -> CaptureOutcome | None:
        """Run one request; ``None`` when the page was sent back for a retake."""
        async with self._busy:
            return await self._capture(req, uploader, report, post_code)

    async def _capture(self, req: CaptureRequest, uploader: ChunkedUploader | None,
                       report: Report,
                       post_code: Callable[[DecodedCode], Awaitable[None]] | None,
                       ) -> CaptureOutcome | None:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        doc = self._document(req.case_id, req.document)
        if len(doc.pages) >= MAX_DOCUMENT_PAGES:
            await report("failed", 100,
                         f"《{doc.name}》已有 {MAX_DOCUMENT_PAGES} 页，请换一个材料名称继续拍摄 / "
                         f"{doc.name} has {MAX_DOCUMENT_PAGES} pages: go on under another "
                         "document name")
            return None
        await report("capturing", 5, None)
        still = await self.camera.capture_still()
        timings["capture"] = time.perf_counter() - started
        await report("processing", 20, None)
        pipeline = self.pipelines.get(req.mode, self.pipelines["color"])
        t = time.perf_counter()
        try:
            result = await pipeline.process_async(still.jpeg)
        except ScanError as err:
            await report("retake", 100, f"未能识别纸张，请把材料平放在高拍仪下 / {err.message}")
            return None
        timings["pipeline"] = time.perf_counter() - t
        if result.needs_retake and not req.accept_poor:
            await report("retake", 100, "；".join(result.messages) or "请重拍 / please retake")
            return None
        doc.pages.append(result.jpeg)
        page = len(doc.pages)
        base = UploadMeta(case_id=req.case_id, content_type="image/jpeg", filename="",
                          source="doccam", call_id=req.call_id, document=doc.name, page=page)
        # The processed page first: it is what the agent is waiting to see. The QR
        # decode and the PDF run meanwhile; everything is spooled before it is sent.
        page_entry = (result.jpeg, replace(base, kind="page",
                                           filename=f"{doc.name}-p{page}.jpg"))
        original_entry = (result.original, replace(base, kind="original",
                                                   filename=f"{doc.name}-p{page}-原件.jpg"))
        page_name = await asyncio.to_thread(self.spool.add, *page_entry)
        original_name = await asyncio.to_thread(self.spool.add, *original_entry)
        t = time.perf_counter()
        codes_task = asyncio.create_task(asyncio.to_thread(self._codes, result))
        pdf_task = asyncio.create_task(assemble_pdf_async(list(doc.pages), title=doc.name))
        try:
            sent = await self._send([page_name], [len(result.jpeg)], uploader, report, 55, 75)
            await report("building_pdf", 75, None)
            pdf = await pdf_task
            timings["pdf"] = time.perf_counter() - t
            pdf_name = await asyncio.to_thread(
                self.spool.add, pdf, replace(base, kind="document",
                                             content_type="application/pdf",
                                             filename=f"{doc.name}.pdf", page=None))
            if sent:
                sent = await self._send([original_name, pdf_name],
                                        [len(result.original), len(pdf)], uploader, report,
                                        75, 99)
            codes = await codes_task
            timings["codes"] = time.perf_counter() - t
        finally:
            for task in (codes_task, pdf_task):
                task.cancel()
        queued = not sent
        for code in codes:
            if post_code is not None and not queued:
                await post_code(code)
        timings["total"] = time.perf_counter() - started
        if queued:
            await report("queued", 100, "网络中断，页面已保存在本机，恢复后自动上传 / saved on "
                         "the kiosk, uploads when the network is back")
        else:
            await report("done", 100, f"《{doc.name}》第 {page} 页 / page {page}")
        logger.info("case %s: page %d of a document captured (%s)%s", req.case_id, page,
                    result, " - queued offline" if queued else "")
        return CaptureOutcome(doc.name, page, queued, tuple(c.symbology for c in codes),
                              timings)

    def _codes(self, result: ScanResult) -> list[DecodedCode]:
        # The 800-px preview is plenty for a code printed on an A4 page.
        return read_page_codes(self.code_reader, result.preview)

    async def _send(self, names: list[str], sizes: list[int],
                    uploader: ChunkedUploader | None, report: Report,
                    low: float, high: float) -> bool:
        """Upload this capture's spool entries; False when the network is away."""
        if uploader is None:
            return False
        total = sum(sizes)
        sent_before = 0
        last = 0.0

        async def progress(done: int, size: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= 0.2 or done == size:
                last = now
                await report("uploading", low + (high - low) * (sent_before + done) / total,
                             None)

        try:
            async with self.upload_lock:
                for name, size in zip(names, sizes, strict=True):
                    await self.spool.upload_one(name, uploader, progress)
                    sent_before += size
        except (aiohttp.ClientError, ClientError, TimeoutError, OSError) as err:
            logger.warning("upload interrupted (%s); kept in the spool", err)
            return False
        return True
