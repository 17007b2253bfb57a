"""PDF assembly: pages parse, are A4, embed each JPEG verbatim, and report progress."""

from __future__ import annotations

import io
import threading

import numpy as np
import pikepdf
import pytest

from devices.scan import PdfAssemblyError, ScanPipeline, assemble_pdf, assemble_pdf_async
from devices.scan.jpeg import encode_jpeg
from tests.unit.devices.scan.conftest import SimStills

A4_POINTS = (595.28, 841.89)


@pytest.fixture(scope="module")
def pages(sim_stills: SimStills) -> list[bytes]:
    colour = ScanPipeline()
    bw = ScanPipeline(mode="bw")
    return [
        colour.process(sim_stills.sharp[0]).jpeg,
        bw.process(sim_stills.sharp[1]).jpeg,
        colour.process(sim_stills.sharp[2]).jpeg,
    ]


def page_images(pdf: pikepdf.Pdf) -> list[pikepdf.Stream]:
    images = []
    for page in pdf.pages:
        found = page.get_images()
        (name,) = list(found.keys())
        images.append(found[name])
    return images


def test_pdf_has_a4_pages_with_the_jpegs_embedded_verbatim(pages: list[bytes]) -> None:
    data = assemble_pdf(pages, title="Case 42")
    assert data.startswith(b"%PDF-")
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert len(pdf.pages) == 3
        for page in pdf.pages:
            box = [float(v) for v in page.mediabox]
            assert box[2:] == pytest.approx(A4_POINTS, abs=0.5)
        for jpeg, image in zip(pages, page_images(pdf), strict=True):
            assert image.Filter == pikepdf.Name.DCTDecode
            assert image.read_raw_bytes() == jpeg  # byte for byte: no re-encoding
        colour_spaces = [image.ColorSpace for image in page_images(pdf)]
        assert colour_spaces == [
            pikepdf.Name.DeviceRGB,
            pikepdf.Name.DeviceGray,
            pikepdf.Name.DeviceRGB,
        ]
        assert str(pdf.docinfo.Title) == "Case 42"
    for jpeg in pages:
        assert jpeg in data
    # The PDF is little more than the pages themselves.
    assert len(data) < sum(map(len, pages)) + 20_000


def test_progress_is_reported_page_by_page(pages: list[bytes]) -> None:
    seen: list[tuple[int, int]] = []
    assemble_pdf(pages, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_single_page_progress() -> None:
    seen: list[tuple[int, int]] = []
    page = encode_jpeg(np.full((2339, 1654, 3), 255, np.uint8))
    assemble_pdf([page], progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 1), (1, 1)]


async def test_async_assembly_reports_progress_on_the_loop_thread(pages: list[bytes]) -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int, bool]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total, threading.get_ident() == loop_thread))

    data = await assemble_pdf_async(pages, progress=progress)
    assert seen == [(0, 3, True), (1, 3, True), (2, 3, True), (3, 3, True)]
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert len(pdf.pages) == 3


def test_landscape_page_gets_a_landscape_a4_page() -> None:
    landscape = encode_jpeg(np.full((1654, 2339, 3), 250, np.uint8))
    with pikepdf.open(io.BytesIO(assemble_pdf([landscape]))) as pdf:
        box = [float(v) for v in pdf.pages[0].mediabox]
        assert box[2:] == pytest.approx(A4_POINTS[::-1], abs=0.5)


def test_an_error_in_the_progress_callback_is_not_blamed_on_img2pdf(pages: list[bytes]) -> None:
    def progress(done: int, total: int) -> None:
        if done == 1:
            raise RuntimeError("progress bar is gone")

    with pytest.raises(RuntimeError, match="progress bar is gone"):
        assemble_pdf(pages, progress=progress)


def test_no_pages_is_refused() -> None:
    with pytest.raises(PdfAssemblyError, match="no pages"):
        assemble_pdf([])


def test_a_bad_page_is_named_by_its_index(pages: list[bytes]) -> None:
    seen: list[tuple[int, int]] = []
    with pytest.raises(PdfAssemblyError, match=r"page 2 of 3: image is not a JPEG .* PNG"):
        assemble_pdf(
            [pages[0], b"\x89PNG\r\n\x1a\n....", pages[2]],
            progress=lambda d, t: seen.append((d, t)),
        )
    assert seen == []  # checked before any work starts


def test_unknown_page_size_is_refused(pages: list[bytes]) -> None:
    with pytest.raises(PdfAssemblyError, match="page size 'Letter'"):
        assemble_pdf(pages, page_size="Letter")
