"""QR codes and barcodes in camera frames: ZBar first, OpenCV's QR detector second.

ZBar (through the ctypes binding that ships with ``pyzbar``; needs ``libzbar0``)
reads QR and 1-D barcodes. ZBar normally *guesses* a QR payload's character set and
guesses wrong for short Chinese UTF-8 ("你好" comes back as Latin-1 mojibake) and for
GBK (read as Big5), so QR codes are scanned in ZBar's binary mode (``ZBAR_CFG_BINARY``,
zbar >= 0.23.1) and the raw bytes are decoded here: UTF-8, then GB 18030 (a superset
of GBK, what Chinese systems emit when not UTF-8), then Latin-1. On an older libzbar
without binary mode ZBar's own text is used, repaired when it is UTF-8-read-as-Latin-1.
If ZBar finds nothing, or ``libzbar`` is missing, OpenCV's ``QRCodeDetectorAruco``
tries (QR only); its text is repaired the same way.

API
---
``DecodedCode`` frozen dataclass: ``text: str``, ``raw: bytes``, ``symbology: str``
("QRCODE", "EAN13", "CODE128", ...), ``encoding: str`` ("utf-8", "gb18030", "latin-1"),
``polygon: tuple[tuple[int, int], ...]``, ``decoder: str`` ("zbar" | "opencv");
its ``repr`` hides the payload (a code may carry personal data).
``CodeReader(*, backends=("zbar", "opencv"), density=1)``  ``decode(frame) ->
list[DecodedCode]``; ``density`` n scans every n-th line (faster, for large codes);
    remembers that ZBar is unavailable after the first failed load; ``zbar_error``;
    ``zbar()`` the binding or None.
``decode_codes(frame) -> list[DecodedCode]``   one-shot ``CodeReader().decode``
``decode_with_zbar(frame) -> list[DecodedCode]``, ``decode_with_opencv(frame) -> ...``
``zbar_scan(zbar, gray, density=1, symbols="all"|"qr"|"linear") -> list[DecodedCode]``
``as_gray(frame) -> GrayImage``   the checks and conversion every decoder starts with
(pages: :mod:`devices.qr_page` reads them faster by looking for QR finders first)
``decode_payload(raw: bytes) -> tuple[str, str]``  (text, encoding)
``frame`` is a BGR (h, w, 3), BGRA or grayscale (h, w) ``uint8`` array; anything else
raises ``CodeDecodeError``. Decoding is CPU work: call it via ``asyncio.to_thread``.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from devices.errors import CodeDecodeError

logger = logging.getLogger(__name__)

GrayImage = npt.NDArray[np.uint8]
BACKENDS: Final = ("zbar", "opencv")
_ZBAR_CFG_ENABLE: Final = 0
_ZBAR_CFG_BINARY: Final = 4  # zbar.h >= 0.23.1; pyzbar's enum predates it
_ZBAR_CFG_X_DENSITY: Final = 0x100
_ZBAR_CFG_Y_DENSITY: Final = 0x101
_ZBAR_QRCODE: Final = 64
_Y800: Final = int.from_bytes(b"Y800", "little")


@dataclass(frozen=True, slots=True)
class DecodedCode:
    text: str
    raw: bytes
    symbology: str
    encoding: str
    polygon: tuple[tuple[int, int], ...] = field(default=())
    decoder: str = "zbar"

    def __repr__(self) -> str:
        return (
            f"DecodedCode({self.symbology}, {len(self.raw)} bytes, {self.encoding}, "
            f"via {self.decoder})"
        )


def decode_payload(raw: bytes) -> tuple[str, str]:
    """Text of a code's raw bytes: UTF-8, else GB 18030, else Latin-1 (never fails)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), "latin-1"


def _repair(text: str) -> tuple[str, bytes, str]:
    """Undo "bytes read as Latin-1" for decoders that hand out text, not bytes."""
    if text and all(ord(ch) < 0x100 for ch in text) and any(ord(ch) >= 0x80 for ch in text):
        raw = text.encode("latin-1")
        decoded, encoding = decode_payload(raw)
        return decoded, raw, encoding
    raw = text.encode("utf-8")
    return text, raw, "utf-8"


def as_gray(frame: object) -> GrayImage:
    if not isinstance(frame, np.ndarray):
        raise CodeDecodeError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise CodeDecodeError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim == 2:
        gray = frame
    elif frame.ndim == 3 and frame.shape[2] == 3:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    else:
        raise CodeDecodeError(f"frame shape {frame.shape} is not (h, w), (h, w, 3) or (h, w, 4)")
    if gray.shape[0] < 8 or gray.shape[1] < 8:
        raise CodeDecodeError(f"frame {gray.shape[1]}x{gray.shape[0]} is too small")
    return np.ascontiguousarray(gray, dtype=np.uint8)


def _load_zbar() -> Any:
    """The pyzbar ctypes wrapper; raises ImportError/OSError when libzbar is missing."""
    from pyzbar import wrapper

    # pyzbar binds lazily: touching a function loads libzbar (or fails) now.
    wrapper.zbar_version(ctypes.byref(ctypes.c_uint()), ctypes.byref(ctypes.c_uint()))
    return wrapper


def decode_with_zbar(frame: object) -> list[DecodedCode]:
    """QR codes and barcodes found by ZBar. Raises ImportError/OSError without libzbar."""
    gray = as_gray(frame)
    return zbar_scan(_load_zbar(), gray)


def zbar_scan(
    zbar: Any, gray: GrayImage, density: int = 1, symbols: str = "all"
) -> list[DecodedCode]:
    """ZBar over ``gray``; ``symbols``: "all", "qr" (QR only) or "linear" (all but QR)."""
    from pyzbar.pyzbar import ZBarSymbol

    scanner = zbar.zbar_image_scanner_create()
    try:
        if symbols == "qr":
            zbar.zbar_image_scanner_set_config(scanner, 0, _ZBAR_CFG_ENABLE, 0)
            zbar.zbar_image_scanner_set_config(scanner, _ZBAR_QRCODE, _ZBAR_CFG_ENABLE, 1)
        elif symbols == "linear":
            zbar.zbar_image_scanner_set_config(scanner, _ZBAR_QRCODE, _ZBAR_CFG_ENABLE, 0)
        binary = zbar.zbar_image_scanner_set_config(scanner, _ZBAR_QRCODE, _ZBAR_CFG_BINARY, 1) == 0
        if density > 1:
            # Scan every n-th line: n times less work, still plenty for a printed code.
            for cfg in (_ZBAR_CFG_X_DENSITY, _ZBAR_CFG_Y_DENSITY):
                zbar.zbar_image_scanner_set_config(scanner, 0, cfg, density)
        image = zbar.zbar_image_create()
        try:
            height, width = gray.shape
            # ZBar reads the pixels in place during the scan: keep them referenced.
            pixels = ctypes.c_char_p(gray.tobytes())
            zbar.zbar_image_set_format(image, _Y800)
            zbar.zbar_image_set_size(image, width, height)
            zbar.zbar_image_set_data(image, ctypes.cast(pixels, ctypes.c_void_p), gray.size, None)
            if zbar.zbar_scan_image(scanner, image) < 0:
                raise CodeDecodeError("ZBar rejected the image format")
            results: list[DecodedCode] = []
            symbol = zbar.zbar_image_first_symbol(image)
            while symbol:
                raw = ctypes.string_at(
                    zbar.zbar_symbol_get_data(symbol), zbar.zbar_symbol_get_data_length(symbol)
                )
                kind = int(symbol.contents.type)
                try:
                    symbology = ZBarSymbol(kind).name
                except ValueError:
                    symbology = f"ZBAR_{kind}"
                if kind == _ZBAR_QRCODE and binary:
                    text, encoding = decode_payload(raw)
                else:
                    # Without binary mode ZBar hands out UTF-8 text it converted itself.
                    text, raw, encoding = _repair(raw.decode("utf-8", errors="replace"))
                polygon = tuple(
                    (
                        int(zbar.zbar_symbol_get_loc_x(symbol, i)),
                        int(zbar.zbar_symbol_get_loc_y(symbol, i)),
                    )
                    for i in range(zbar.zbar_symbol_get_loc_size(symbol))
                )
                results.append(DecodedCode(text, raw, symbology, encoding, polygon, "zbar"))
                symbol = zbar.zbar_symbol_next(symbol)
            return results
        finally:
            zbar.zbar_image_destroy(image)
    finally:
        zbar.zbar_image_scanner_destroy(scanner)


def decode_with_opencv(
    frame: object, detector: cv2.QRCodeDetectorAruco | None = None
) -> list[DecodedCode]:
    """QR codes found by OpenCV's ``QRCodeDetectorAruco`` (no 1-D barcodes)."""
    gray = as_gray(frame)
    detector = detector if detector is not None else cv2.QRCodeDetectorAruco()
    ok, texts, points, _ = detector.detectAndDecodeMulti(gray)
    if not ok or points is None:
        return []
    results: list[DecodedCode] = []
    for text, quad in zip(texts, np.asarray(points).reshape(-1, 4, 2), strict=False):
        if not text:
            continue  # found but not decodable
        fixed, raw, encoding = _repair(str(text))
        polygon = tuple((round(float(x)), round(float(y))) for x, y in quad)
        results.append(DecodedCode(fixed, raw, "QRCODE", encoding, polygon, "opencv"))
    return results


class CodeReader:
    """Tries each backend in order and returns the first non-empty result."""

    def __init__(self, *, backends: Sequence[str] = BACKENDS, density: int = 1) -> None:
        unknown = [b for b in backends if b not in BACKENDS]
        if unknown or not backends:
            raise CodeDecodeError(f"unknown code backends {unknown!r} (known: {BACKENDS})")
        self._backends = tuple(backends)
        if not 1 <= density <= 8:
            raise CodeDecodeError(f"scan density {density} is not in 1..8")
        self._density = density
        self._zbar: Any = None
        self.zbar_error: str | None = None
        self._detector: cv2.QRCodeDetectorAruco | None = None

    def decode(self, frame: object) -> list[DecodedCode]:
        gray = as_gray(frame)
        for backend in self._backends:
            if backend == "zbar":
                zbar = self.zbar()
                found = zbar_scan(zbar, gray, self._density) if zbar is not None else []
            else:
                if self._detector is None:
                    self._detector = cv2.QRCodeDetectorAruco()
                found = decode_with_opencv(gray, self._detector)
            if found:
                return found
        return []

    def zbar(self) -> Any:
        """The ZBar binding, or None when libzbar is missing (then ``zbar_error`` says why)."""
        if self._zbar is None and self.zbar_error is None:
            try:
                self._zbar = _load_zbar()
            except (ImportError, OSError) as err:
                self.zbar_error = f"ZBar unavailable: {err}"
                logger.warning("QR decoding falls back to OpenCV: %s", self.zbar_error)
        return self._zbar


def decode_codes(frame: object) -> list[DecodedCode]:
    """All codes in ``frame``: ZBar, or OpenCV if ZBar finds none or is missing."""
    return CodeReader().decode(frame)
