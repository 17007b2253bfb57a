"""QR and barcode decoding: Chinese payloads (UTF-8 and GBK), both backends."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from devices.errors import CodeDecodeError
from devices.qr import (
    CodeReader,
    decode_codes,
    decode_payload,
    decode_with_opencv,
    decode_with_zbar,
)

segno = pytest.importorskip("segno")

CHINESE = "办事指南：黄山市歙县 https://example.cn/事项?id=1"


def qr_image(content: str | bytes, *, scale: int = 6, encoding: str | None = "utf-8") -> np.ndarray:
    """A BGR image of a QR code with a quiet zone, as a camera would see it head-on."""
    if isinstance(content, bytes):
        code = segno.make(content, micro=False)
    else:
        code = segno.make(content, encoding=encoding, micro=False)
    modules = np.pad(np.array([list(row) for row in code.matrix], dtype=np.uint8), 4)
    gray = np.where(modules, 0, 255).astype(np.uint8)
    gray = np.kron(gray, np.ones((scale, scale), np.uint8))
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def on_desk(code: np.ndarray, angle: float = 12.0) -> np.ndarray:
    """Put the code on a grey, noisy 640x480 frame, rotated and slightly in perspective."""
    rng = np.random.default_rng(3)
    frame = np.full((480, 640, 3), 150, np.uint8)
    h, w = code.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    center = np.float32([320, 240])
    theta = np.deg2rad(angle)
    rot = np.float32([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    half = np.float32([[-140, -140], [135, -135], [140, 140], [-140, 140]])
    dst = (half @ rot.T + center).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(code, matrix, (640, 480), borderValue=(150, 150, 150))
    noise = rng.integers(0, 12, size=frame.shape, dtype=np.uint8)
    return cv2.add(cv2.subtract(warped, np.full_like(warped, 6)), noise)


def ean13_image(digits12: str) -> tuple[np.ndarray, str]:
    """An EAN-13 barcode (with computed check digit) as a BGR image."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits12))
    code = digits12 + str((10 - total % 10) % 10)
    left = [
        "0001101",
        "0011001",
        "0010011",
        "0111101",
        "0100011",
        "0110001",
        "0101111",
        "0111011",
        "0110111",
        "0001011",
    ]
    right = ["".join("1" if b == "0" else "0" for b in pattern) for pattern in left]
    even = [pattern[::-1] for pattern in right]
    parity = [
        "LLLLLL",
        "LLGLGG",
        "LLGGLG",
        "LLGGGL",
        "LGLLGG",
        "LGGLLG",
        "LGGGLL",
        "LGLGLG",
        "LGLGGL",
        "LGGLGL",
    ][int(code[0])]
    bits = "101"
    for p, d in zip(parity, code[1:7], strict=True):
        bits += left[int(d)] if p == "L" else even[int(d)]
    bits += "01010" + "".join(right[int(d)] for d in code[7:]) + "101"
    row = np.array([0 if b == "1" else 255 for b in "0" * 12 + bits + "0" * 12], np.uint8)
    gray = np.repeat(np.tile(row, (120, 1)), 3, axis=1)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), code


def test_chinese_utf8_qr_via_zbar() -> None:
    [found] = decode_codes(qr_image(CHINESE))
    assert found.text == CHINESE
    assert (found.symbology, found.encoding, found.decoder) == ("QRCODE", "utf-8", "zbar")
    assert found.raw == CHINESE.encode("utf-8")
    assert len(found.polygon) >= 4


def test_short_chinese_utf8_is_not_mojibake() -> None:
    # ZBar's own charset guess reads these 6 bytes as Latin-1 ("ä½ å¥½").
    [found] = decode_with_zbar(qr_image("你好"))
    assert found.text == "你好"


def test_gbk_payload_is_decoded_as_chinese() -> None:
    [found] = decode_with_zbar(qr_image("你好，世界".encode("gbk")))
    assert (found.text, found.encoding) == ("你好，世界", "gb18030")


def test_latin1_payload_falls_back_to_latin1() -> None:
    [found] = decode_with_zbar(qr_image("Café".encode("latin-1")))
    assert (found.text, found.encoding) == ("Café", "latin-1")


def test_qr_on_a_desk_at_an_angle() -> None:
    frame = on_desk(qr_image("VW-CASE-2024-000123 材料预审"))
    [found] = decode_codes(frame)
    assert found.text == "VW-CASE-2024-000123 材料预审"


def test_opencv_path_decodes_chinese_utf8() -> None:
    [found] = decode_with_opencv(qr_image(CHINESE))
    assert (found.text, found.decoder, found.symbology) == (CHINESE, "opencv", "QRCODE")
    assert len(found.polygon) == 4


def test_opencv_path_repairs_gbk() -> None:
    [found] = decode_with_opencv(qr_image("你好，世界".encode("gbk")))
    assert (found.text, found.encoding) == ("你好，世界", "gb18030")


def test_opencv_path_on_a_desk() -> None:
    [found] = decode_with_opencv(on_desk(qr_image("预约号 A017")))
    assert found.text == "预约号 A017"


def test_falls_back_to_opencv_when_zbar_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyzbar", None)
    reader = CodeReader()
    [found] = reader.decode(qr_image(CHINESE))
    assert (found.text, found.decoder) == (CHINESE, "opencv")
    assert reader.zbar_error is not None and "ZBar unavailable" in reader.zbar_error


def test_opencv_only_reader() -> None:
    [found] = CodeReader(backends=("opencv",)).decode(qr_image("ok"))
    assert found.decoder == "opencv"


def test_ean13_barcode_via_zbar() -> None:
    image, code = ean13_image("690123456789")
    [found] = decode_codes(image)
    assert (found.text, found.symbology) == (code, "EAN13")


def test_blank_frame_has_no_codes() -> None:
    assert decode_codes(np.full((240, 320, 3), 200, np.uint8)) == []
    assert decode_with_opencv(np.full((240, 320), 200, np.uint8)) == []


def test_grayscale_and_bgra_frames() -> None:
    bgr = qr_image("灰度")
    assert decode_codes(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))[0].text == "灰度"
    assert decode_codes(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))[0].text == "灰度"


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        ("not an image", "numpy array"),
        (np.zeros((100, 100, 3), np.float32), "uint8"),
        (np.zeros((100, 100, 2), np.uint8), "shape"),
        (np.zeros((4, 4), np.uint8), "too small"),
    ],
)
def test_bad_frames_are_named(frame: object, match: str) -> None:
    with pytest.raises(CodeDecodeError, match=match):
        decode_codes(frame)


def test_unknown_backend() -> None:
    with pytest.raises(CodeDecodeError, match="quagga"):
        CodeReader(backends=("quagga",))


def test_repr_hides_payload() -> None:
    [found] = decode_codes(qr_image("身份证 340000195803140025"))
    assert "340000" not in repr(found)


@pytest.mark.parametrize(
    ("raw", "text", "encoding"),
    [
        ("中文".encode(), "中文", "utf-8"),
        (b"\xef\xbb\xbf" + "中文".encode(), "中文", "utf-8"),
        ("中文".encode("gbk"), "中文", "gb18030"),
        (b"\xff\xfe\xfd", "ÿþý", "latin-1"),
        (b"", "", "utf-8"),
    ],
)
def test_decode_payload(raw: bytes, text: str, encoding: str) -> None:
    assert decode_payload(raw) == (text, encoding)


def test_sparse_scan_still_reads_a_page_sized_code_and_bad_density_is_named() -> None:
    import segno

    matrix = np.array(segno.make_qr("营业执照 91340100MA2N123456").matrix, dtype=np.uint8)
    image = np.where(np.kron(matrix, np.ones((6, 6), np.uint8)) > 0, 0, 255).astype(np.uint8)
    image = np.pad(image, 40, constant_values=255)
    assert [c.text for c in CodeReader(density=2).decode(image)] == ["营业执照 91340100MA2N123456"]
    with pytest.raises(CodeDecodeError, match="density 0"):
        CodeReader(density=0)
