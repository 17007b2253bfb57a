"""Several scanned pages -> one PDF, each JPEG embedded byte for byte (img2pdf).

API
---
``Progress = Callable[[int, int], None]``   called with ``(done, total)``
``assemble_pdf(pages: Sequence[bytes], *, progress=None, page_size="A4",
title=None) -> bytes``
``async assemble_pdf_async(pages, *, progress=None, page_size="A4", title=None) -> bytes``
    runs in a worker thread; ``progress`` is called on the event loop's thread.
``PAGE_SIZES``   read-only ``{"A4": (595.28, 841.89)}`` in PDF points

img2pdf wraps a JPEG in a ``DCTDecode`` image XObject without decoding it, so the PDF
holds the exact bytes the pipeline produced: no generation loss, no pixel work, and
the size of the PDF is the sum of the pages. Each page is A4 (turned landscape for a
landscape image) with the image fitted inside and centred.

``progress`` sees ``(0, total)`` first, then ``(k, total)`` as page ``k`` has been laid
out, and ``(total, total)`` exactly once, last, when the PDF bytes exist. Every page is
checked to be a JPEG before img2pdf runs, so a bad page is named by its index.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Final

import img2pdf

from devices.scan.errors import InvalidImageError, PdfAssemblyError
from devices.scan.jpeg import read_jpeg_info

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

PAGE_SIZES: Final[Mapping[str, tuple[float, float]]] = MappingProxyType(
    {"A4": (img2pdf.mm_to_pt(210), img2pdf.mm_to_pt(297))}
)


def assemble_pdf(
    pages: Sequence[bytes],
    *,
    progress: Progress | None = None,
    page_size: str = "A4",
    title: str | None = None,
) -> bytes:
    """One PDF page per JPEG, in order; see the module docstring."""
    total = len(pages)
    if total == 0:
        raise PdfAssemblyError("cannot make a PDF of no pages")
    if page_size not in PAGE_SIZES:
        raise PdfAssemblyError(
            f"page size {page_size!r} is not one of {sorted(PAGE_SIZES)}", field="page_size"
        )
    for index, page in enumerate(pages, start=1):
        if not isinstance(page, bytes | bytearray | memoryview):
            raise PdfAssemblyError(
                f"page {index} of {total} is a {type(page).__name__}, expected JPEG bytes"
            )
        try:
            read_jpeg_info(bytes(page))
        except InvalidImageError as err:
            raise PdfAssemblyError(f"page {index} of {total}: {err.message}") from err
    report = progress if progress is not None else _no_progress
    report(0, total)
    fit_into_page = img2pdf.get_layout_fun(
        PAGE_SIZES[page_size], fit=img2pdf.FitMode.into, auto_orient=True
    )
    laid_out = 0
    callback_error: BaseException | None = None

    def layout(
        width_px: int, height_px: int, dpi: tuple[float, float]
    ) -> tuple[float, float, float, float]:
        # img2pdf lays out each page once, in order, right after reading it: the
        # honest place to count progress. The last page is reported when the bytes exist.
        nonlocal laid_out, callback_error
        result: tuple[float, float, float, float] = fit_into_page(width_px, height_px, dpi)
        laid_out += 1
        if laid_out < total:
            try:
                report(laid_out, total)
            except BaseException as err:  # the caller's bug, not img2pdf's: re-raised below
                callback_error = err
                raise
        return result

    try:
        pdf = img2pdf.convert(
            [bytes(page) for page in pages],
            layout_fun=layout,
            title=title,
            creator="vwindow",
            producer="vwindow (img2pdf)",
        )
    except Exception as err:  # img2pdf and Pillow raise many types; name the failure
        if callback_error is not None:
            raise callback_error from None
        raise PdfAssemblyError(f"img2pdf could not assemble {total} pages: {err}") from err
    if not isinstance(pdf, bytes):  # pragma: no cover - convert() returns bytes w/o stream
        raise PdfAssemblyError(f"img2pdf returned {type(pdf).__name__}, expected bytes")
    report(total, total)
    logger.info("pdf: %d pages, %d bytes", total, len(pdf))
    return pdf


async def assemble_pdf_async(
    pages: Sequence[bytes],
    *,
    progress: Progress | None = None,
    page_size: str = "A4",
    title: str | None = None,
) -> bytes:
    """:func:`assemble_pdf` in a worker thread; ``progress`` runs on the loop's thread."""
    loop = asyncio.get_running_loop()
    relay: Progress | None = None
    if progress is not None:
        callback = progress

        def relay(done: int, total: int) -> None:
            loop.call_soon_threadsafe(callback, done, total)

    # call_soon_threadsafe is first in, first out and the worker's result reaches this
    # task the same way, after the last relayed call: (total, total) runs before we resume.
    return await asyncio.to_thread(
        assemble_pdf, list(pages), progress=relay, page_size=page_size, title=title
    )


def _no_progress(done: int, total: int) -> None:
    del done, total
