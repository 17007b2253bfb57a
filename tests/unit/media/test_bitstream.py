"""Keyframe detection on real encoder output (what aiortc's depayloader reassembles)."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from av import VideoFrame
from av.video.frame import PictureType

from media.bitstream import (
    h264_is_keyframe,
    h264_nal_types,
    is_keyframe,
    vp8_is_keyframe,
    vp8_keyframe_size,
)


def encode(codec_name: str, count: int, keyframes: set[int],
           width: int = 160, height: int = 120) -> list[tuple[bytes, bool]]:
    """(bytes, the encoder's own keyframe flag) for ``count`` frames of a moving bar."""
    encoder = av.CodecContext.create(codec_name, "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 15)
    encoder.framerate = fractions.Fraction(15, 1)
    encoder.gop_size = 1000
    encoder.options = ({"deadline": "realtime", "lag-in-frames": "0"} if codec_name == "libvpx"
                       else {"tune": "zerolatency"})
    out: list[tuple[bytes, bool]] = []
    for i in range(count):
        image = np.zeros((height, width, 3), np.uint8)
        image[:, (i * 5) % width:(i * 5) % width + 8] = 255
        frame = VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        if i in keyframes:
            frame.pict_type = PictureType.I
        out += [(bytes(p), p.is_keyframe) for p in encoder.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in encoder.encode(None)]
    return out


def test_vp8_keyframes_match_the_encoder() -> None:
    packets = encode("libvpx", 12, keyframes={0, 7})
    flags = [vp8_is_keyframe(data) for data, _ in packets]
    assert flags == [own for _, own in packets]
    assert flags.count(True) == 2 and flags[0]
    assert vp8_keyframe_size(packets[0][0]) == (160, 120)
    assert vp8_keyframe_size(packets[1][0]) is None


@pytest.mark.skipif("libx264" not in av.codecs_available, reason="no libx264 in this PyAV")
def test_h264_idr_frames_match_the_encoder() -> None:
    packets = encode("libx264", 12, keyframes={0, 7})
    flags = [h264_is_keyframe(data) for data, _ in packets]
    assert flags == [own for _, own in packets]
    assert flags[0] and flags.count(True) >= 2
    first = list(h264_nal_types(packets[0][0]))
    assert 7 in first and 8 in first and 5 in first  # SPS, PPS, IDR


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00" * 9, b"\x00\x00\x00\x9d\x01\x2b1234"])
def test_short_or_corrupt_vp8_is_no_keyframe(data: bytes) -> None:
    assert not vp8_is_keyframe(data)


def test_h264_start_codes_of_both_lengths() -> None:
    stream = b"\x00\x00\x00\x01\x67AB" + b"\x00\x00\x01\x68CD" + b"\x00\x00\x01\x65EF"
    assert list(h264_nal_types(stream)) == [7, 8, 5]
    assert h264_is_keyframe(stream)
    assert not h264_is_keyframe(b"\x00\x00\x00\x01\x41xyz")  # a non-IDR slice
    assert not h264_is_keyframe(b"\x00\x00\x01")  # start code, no NAL header


def test_audio_frames_are_all_keyframes() -> None:
    assert is_keyframe("opus", b"\xfc\xff\xfe")
    assert is_keyframe("vp8", encode("libvpx", 1, {0})[0][0])
    assert not is_keyframe("VP8", b"\x01" * 20)
