"""Codes on a scanned page: QR finders located first, barcodes by a sparse scan."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from devices.qr import CodeReader
from devices.qr_page import find_qr_regions, read_page_codes
from tests.unit.devices.scan.scenes import render_page
from tests.unit.devices.test_qr import CHINESE, ean13_image, qr_image


def page_with(*stamps: tuple[np.ndarray, int, int]) -> np.ndarray:
    """An 800-px-wide printed page (the pipeline's preview size) with images pasted on."""
    page = cv2.resize(np.asarray(render_page()), (800, 1131), interpolation=cv2.INTER_AREA)
    for image, x, y in stamps:
        h, w = image.shape[:2]
        page[y : y + h, x : x + w] = image
    return page


def nested_squares(size: int = 63, ring: int = 9) -> np.ndarray:
    """回-like: a dark square ring holding a dark square *ring*, not a solid core."""
    image = np.full((size, size), 255, np.uint8)
    cv2.rectangle(image, (0, 0), (size - 1, size - 1), 0, ring)
    inner = size // 2 - size // 5, size // 2 + size // 5
    cv2.rectangle(image, (inner[0], inner[0]), (inner[1], inner[1]), 0, ring // 3)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


@pytest.mark.parametrize("scale", [2, 3, 5])
def test_qr_code_on_a_printed_page_is_located_and_read(scale: int) -> None:
    code = qr_image(CHINESE, scale=scale)
    page = page_with((code, 60, 900 - code.shape[0]))
    gray = cv2.cvtColor(page, cv2.COLOR_BGR2GRAY)
    regions = find_qr_regions(gray)
    # One region, around the code: the page's print has no finder patterns.
    assert len(regions) == 1
    x, y, w, h = regions[0]
    assert x <= 60 + 4 * scale and x + w >= 60 + code.shape[1] - 4 * scale
    assert y <= 900 - code.shape[0] + 4 * scale and y + h >= 900 - 4 * scale
    assert w < 2 * code.shape[1] and h < 2 * code.shape[0]
    codes = read_page_codes(CodeReader(), page)
    assert [c.text for c in codes] == [CHINESE]
    # Its outline is in the preview's pixels, inside the pasted code.
    xs = [p[0] for p in codes[0].polygon]
    assert 60 <= min(xs) and max(xs) <= 60 + code.shape[1]


def test_crops_come_from_the_detailed_page_when_given() -> None:
    code = qr_image("https://example.cn/booking/A1B2C3", scale=8)
    big = page_with()
    big = cv2.resize(big, (1600, 2262), interpolation=cv2.INTER_LINEAR)
    big[1400 : 1400 + code.shape[0], 200 : 200 + code.shape[1]] = code
    preview = cv2.resize(big, (800, 1131), interpolation=cv2.INTER_AREA)
    codes = read_page_codes(CodeReader(), preview, big)
    assert [c.text for c in codes] == ["https://example.cn/booking/A1B2C3"]
    # Reported in preview pixels, where the code sits at half its pasted position.
    assert min(p[0] for p in codes[0].polygon) >= 100 - 2


def test_nested_squares_of_print_are_not_finders() -> None:
    page = page_with(*((nested_squares(), 100 + 90 * i, 950) for i in range(6)))
    assert find_qr_regions(cv2.cvtColor(page, cv2.COLOR_BGR2GRAY)) == []
    assert read_page_codes(CodeReader(), page) == []


def test_barcode_on_a_page_is_read_by_the_sparse_scan() -> None:
    barcode, digits = ean13_image("690123456789")
    page = page_with((barcode, 200, 950))
    codes = read_page_codes(CodeReader(), page)
    assert [(c.symbology, c.text) for c in codes] == [("EAN13", digits)]


def test_qr_and_barcode_together() -> None:
    barcode, digits = ean13_image("690123456789")
    code = qr_image("办件编号 2026-000123", scale=3)
    page = page_with((barcode, 300, 980), (code, 40, 950))
    found = {(c.symbology, c.text) for c in read_page_codes(CodeReader(), page)}
    assert found == {("EAN13", digits), ("QRCODE", "办件编号 2026-000123")}


def test_without_zbar_opencv_reads_the_qr(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = CodeReader()
    monkeypatch.setattr(reader, "zbar", lambda: None)
    code = qr_image("hello page", scale=4)
    codes = read_page_codes(reader, page_with((code, 80, 850)))
    assert [(c.text, c.decoder) for c in codes] == [("hello page", "opencv")]
