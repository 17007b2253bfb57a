"""JPEG input checks, and the property that garbage only ever raises ScanError."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.scan import InvalidImageError, ScanError, ScanPipeline, ScanResult
from devices.scan.jpeg import decode_jpeg, encode_jpeg, read_jpeg_info
from tests.unit.devices.scan.scenes import a4_quad, encode, render_scene

# A small real still with a page on it, as the base for mutations (fast to process).
SMALL_STILL = render_scene(a4_quad((640, 480)), size=(640, 480)).jpeg


def sof_header(width: int, height: int, marker: int = 0xC0) -> bytes:
    """SOI + a bare frame header: enough for read_jpeg_info, not for decoding."""
    sof = bytes([0xFF, marker, 0, 11, 8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return b"\xff\xd8" + sof + bytes([1, 1, 0x11, 0]) + b"\xff\xd9"


def test_header_is_read_without_decoding() -> None:
    info = read_jpeg_info(SMALL_STILL)
    assert (info.width, info.height, info.components, info.progressive) == (640, 480, 3, False)
    progressive = read_jpeg_info(sof_header(100, 50, marker=0xC2))
    assert progressive.progressive and (progressive.width, progressive.height) == (100, 50)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(InvalidImageError, match="60000x60000, more than the 50,000,000 pixel"):
        decode_jpeg(sof_header(60000, 60000))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (sof_header(0, 10), "empty frame 0x10"),
        (sof_header(32, 32), "32x32, smaller than the 64x48 minimum"),
        (b"\xff\xd8\x00\x00", "expected a marker at byte 2, found 00"),
        (b"\xff\xd8\xff\xe0\x00\x01", "has length 1"),
        (b"GIF89a" + b"\0" * 20, "it is a GIF image"),
        (b"%PDF-1.4", "it is a PDF document"),
    ],
)
def test_bad_headers_are_named(data: bytes, match: str) -> None:
    with pytest.raises(InvalidImageError, match=match):
        decode_jpeg(data)


def test_grey_jpeg_decodes_to_three_channels() -> None:
    grey = encode_jpeg(np.full((120, 160), 200, np.uint8))
    image = decode_jpeg(grey)
    assert image.shape == (120, 160, 3)
    assert read_jpeg_info(grey).components == 1


def test_small_still_base_is_a_good_scan() -> None:
    # The mutation test below starts from a still that goes all the way through.
    result = ScanPipeline().process(SMALL_STILL)
    assert result.snapped_to_a4 and not result.needs_retake


def test_decode_round_trip() -> None:
    image = decode_jpeg(SMALL_STILL)
    again = decode_jpeg(encode(image, quality=95))
    assert float(cv2.absdiff(image, again).mean()) < 2.0


def _outcome(data: bytes) -> None:
    """Process ``data``: a result or a ScanError are fine, anything else fails the test."""
    try:
        result = ScanPipeline().process(data)
    except ScanError as err:
        assert err.message  # every refusal says something
    else:
        assert isinstance(result, ScanResult)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_only_raise_scan_error(data: bytes) -> None:
    _outcome(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=2048))
def test_random_bytes_behind_a_jpeg_marker_only_raise_scan_error(data: bytes) -> None:
    _outcome(b"\xff\xd8\xff" + data)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(SMALL_STILL) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=12,
    ),
    st.one_of(st.just(len(SMALL_STILL)), st.integers(0, len(SMALL_STILL))),
)
def test_mutated_real_jpeg_only_raises_scan_error(edits: list[tuple[int, int]], keep: int) -> None:
    data = bytearray(SMALL_STILL)
    for position, value in edits:
        data[position] = value
    _outcome(bytes(data[: max(keep, 2)]))
