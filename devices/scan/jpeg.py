"""JPEG in and out of the scan pipeline, with every failure named.

API
---
``JpegInfo`` frozen dataclass ``(width, height, components, progressive)``
``read_jpeg_info(data: bytes) -> JpegInfo``   header only (SOI ... SOF), no pixel decoding
``decode_jpeg(data: bytes, *, max_pixels=MAX_PIXELS, min_size=(64, 48)) -> BgrImage``
    BGR ``uint8``; grayscale JPEGs come back as three equal channels. EXIF orientation is
    ignored on purpose: page corners refer to the pixels as the camera stored them.
``encode_jpeg(image, *, quality=90) -> bytes``   BGR or grayscale ``uint8``

Everything that is not a complete, sane JPEG raises :class:`InvalidImageError` whose
message says what is wrong (empty, another format with its magic named, truncated,
dimensions too large or too small, undecodable). The header is checked before decoding
so an absurd size is refused without allocating it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt
import simplejpeg

from devices.scan.errors import InvalidImageError, ScanConfigError

logger = logging.getLogger(__name__)

BgrImage = npt.NDArray[np.uint8]

MAX_PIXELS: Final = 50_000_000  # a 48 MP document camera still fits; a bomb does not
_SOI: Final = b"\xff\xd8"
_EOI: Final = b"\xff\xd9"
# SOFn markers carrying frame dimensions (C4 = DHT, C8 = JPG, CC = DAC are not frames).
_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE: Final = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})
_OTHER_FORMATS: Final = (
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"RIFF", "a RIFF (WebP/AVI) file"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
)


@dataclass(frozen=True, slots=True)
class JpegInfo:
    width: int
    height: int
    components: int
    progressive: bool


def _describe_start(data: bytes) -> str:
    for magic, what in _OTHER_FORMATS:
        if data.startswith(magic):
            return f"it is {what}"
    return f"it starts with {data[:4].hex(' ')}"


def read_jpeg_info(data: bytes) -> JpegInfo:
    """Dimensions from the JPEG frame header; :class:`InvalidImageError` if there is none."""
    if not isinstance(data, bytes | bytearray):
        raise InvalidImageError(f"expected JPEG bytes, got {type(data).__name__}")
    if not data:
        raise InvalidImageError("image is empty (0 bytes), expected a JPEG")
    if not data.startswith(_SOI):
        raise InvalidImageError(
            f"image is not a JPEG ({len(data)} bytes): {_describe_start(data)}, "
            "expected ff d8 (start of image)"
        )
    pos, end = 2, len(data)
    while pos < end:
        if data[pos] != 0xFF:
            raise InvalidImageError(
                f"JPEG is corrupt: expected a marker at byte {pos}, found {data[pos]:02x}"
            )
        while pos < end and data[pos] == 0xFF:  # fill bytes may precede a marker
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # EOI or start of scan before any frame header
            raise InvalidImageError(
                f"JPEG is corrupt: marker ff {marker:02x} at byte {pos - 2} "
                "before any frame header (SOF)"
            )
        if pos + 2 > end:
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            raise InvalidImageError(
                f"JPEG is corrupt: segment ff {marker:02x} at byte {pos - 2} has length {length}"
            )
        if marker in _SOF_MARKERS:
            if pos + 8 > end:
                break
            height = int.from_bytes(data[pos + 3 : pos + 5], "big")
            width = int.from_bytes(data[pos + 5 : pos + 7], "big")
            return JpegInfo(width, height, data[pos + 7], marker in _PROGRESSIVE)
        pos += length
    raise InvalidImageError(
        f"JPEG is truncated: {len(data)} bytes end before the frame header (SOF)"
    )


def decode_jpeg(
    data: bytes, *, max_pixels: int = MAX_PIXELS, min_size: tuple[int, int] = (64, 48)
) -> BgrImage:
    """Decode a complete JPEG to BGR ``uint8``; see the module docstring for the checks."""
    info = read_jpeg_info(data)
    if info.width == 0 or info.height == 0:
        raise InvalidImageError(f"JPEG declares an empty frame {info.width}x{info.height}")
    if info.width * info.height > max_pixels:
        raise InvalidImageError(
            f"JPEG is {info.width}x{info.height}, more than the {max_pixels:,} pixel limit"
        )
    if info.width < min_size[0] or info.height < min_size[1]:
        raise InvalidImageError(
            f"JPEG is {info.width}x{info.height}, smaller than the "
            f"{min_size[0]}x{min_size[1]} minimum for a page scan"
        )
    # libjpeg fills a truncated scan with grey and only warns on stderr; refuse it here.
    if _EOI not in data[-1024:]:
        raise InvalidImageError(
            f"JPEG is truncated: {len(data)} bytes without an end-of-image marker (ff d9)"
        )
    try:
        # libjpeg-turbo through simplejpeg: the integer "fast" IDCT and plain chroma
        # upsampling take ~15% off decoding a 4K still (68 -> 57 ms on one core) for
        # ~1 grey level of difference, less than the page's own JPEG re-encode adds;
        # strict, so a corrupt scan is an error instead of a warning on stderr.
        decoded = simplejpeg.decode_jpeg(data, colorspace="BGR", fastdct=True,
                                         fastupsample=True)
    except ValueError as err:
        if info.components != 4:
            raise InvalidImageError(
                f"JPEG {info.width}x{info.height} could not be decoded: {str(err).strip()}"
            ) from err
        decoded = _decode_cmyk(data, info)  # libjpeg has no CMYK -> BGR conversion
    image = np.asarray(decoded, dtype=np.uint8)
    if image.shape[:2] != (info.height, info.width):
        raise InvalidImageError(
            f"JPEG header says {info.width}x{info.height} but decodes to "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    return image


def _decode_cmyk(data: bytes, info: JpegInfo) -> npt.NDArray[np.uint8]:
    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8),
                               cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as err:
        raise InvalidImageError(
            f"JPEG {info.width}x{info.height} could not be decoded: {str(err).strip()}"
        ) from err
    if decoded is None:
        raise InvalidImageError(
            f"JPEG {info.width}x{info.height} ({len(data)} bytes) could not be decoded"
        )
    return np.asarray(decoded, dtype=np.uint8)


def encode_jpeg(image: npt.NDArray[np.uint8], *, quality: int = 90) -> bytes:
    """Baseline JPEG of a BGR or grayscale ``uint8`` image."""
    if not 1 <= quality <= 100:
        raise ScanConfigError(f"jpeg_quality {quality} is not in 1..100", field="jpeg_quality")
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV only fails on impossible inputs
        raise InvalidImageError(f"JPEG encoding of a {image.shape} image failed")
    return bytes(buffer.tobytes())
