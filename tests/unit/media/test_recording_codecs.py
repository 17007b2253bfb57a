"""Picture sizes, parameter sets and Opus durations read from real encoder output."""

from __future__ import annotations

import fractions
import struct

import av
import numpy as np
import pytest
from av import AudioFrame, VideoFrame
from av.video.frame import PictureType

from media.codec_headers import (
    detect_video_codec,
    h264_nal_units,
    h264_parameter_sets,
    h264_sps_size,
    opus_head,
    opus_samples,
    picture_size,
)

needs_x264 = pytest.mark.skipif("libx264" not in av.codecs_available,
                                reason="this PyAV build has no libx264 encoder")


def encode_video(codec: str, width: int, height: int, count: int = 3,
                 options: dict[str, str] | None = None) -> list[bytes]:
    encoder = av.CodecContext.create(codec, "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 15)
    encoder.options = options or {}
    out: list[bytes] = []
    for i in range(count + 1):
        frame = None
        if i < count:
            image = np.full((height, width, 3), (i * 40) % 255, np.uint8)
            frame = VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
            frame.pts = i
            if i == 0:
                frame.pict_type = PictureType.I
        out += [bytes(p) for p in encoder.encode(frame)]
    return out


def encode_opus(frame_ms: float, count: int = 3) -> list[bytes]:
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.options = {"frame_duration": str(frame_ms)}
    samples = int(48000 * frame_ms / 1000)
    out: list[bytes] = []
    for i in range(count):
        wave = (np.sin(np.arange(samples) / 10) * 8000).astype(np.int16)
        frame = AudioFrame.from_ndarray(np.repeat(wave, 2).reshape(1, -1), format="s16",
                                        layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * samples
        out += [bytes(p) for p in encoder.encode(frame)]
    return out


@needs_x264
@pytest.mark.parametrize("profile", ["baseline", "main", "high"])
@pytest.mark.parametrize("size", [(320, 180), (640, 360), (176, 144), (1920, 1080),
                                  (482, 270)])
def test_h264_sps_gives_the_cropped_picture_size(profile: str, size: tuple[int, int]) -> None:
    width, height = size
    packets = encode_video("libx264", width, height,
                           options={"profile": profile, "preset": "ultrafast",
                                    "tune": "zerolatency", "x264-params": "annexb=1"})
    keyframe = packets[0]
    assert picture_size("H264", keyframe) == size
    sps = next(n for n in h264_nal_units(keyframe) if n[0] & 0x1F == 7)
    assert h264_sps_size(sps) == size
    assert detect_video_codec(keyframe) == "H264"


@needs_x264
def test_h264_parameter_sets_come_from_a_keyframe_only() -> None:
    packets = encode_video("libx264", 320, 240, count=4,
                           options={"preset": "ultrafast", "tune": "zerolatency"})
    sets = h264_parameter_sets(packets[0])
    assert sets is not None
    units = list(h264_nal_units(sets))
    assert [u[0] & 0x1F for u in units] == [7, 8]
    assert sets.startswith(b"\x00\x00\x00\x01")
    assert h264_parameter_sets(packets[1]) is None
    assert picture_size("H264", packets[1]) is None


def test_h264_sps_refuses_what_is_not_one() -> None:
    with pytest.raises(ValueError, match=r"not an H\.264 sequence parameter set"):
        h264_sps_size(b"\x68\xce\x0f\xc8")  # a PPS
    with pytest.raises(ValueError, match="ends early"):
        h264_sps_size(b"\x67\x42")


def test_vp8_keyframe_gives_its_size_and_a_delta_frame_none() -> None:
    packets = encode_video("libvpx", 320, 240, count=3,
                           options={"deadline": "realtime", "lag-in-frames": "0"})
    assert picture_size("VP8", packets[0]) == (320, 240)
    assert detect_video_codec(packets[0]) == "VP8"
    assert picture_size("VP8", packets[1]) is None
    assert detect_video_codec(packets[1]) is None
    assert picture_size("AV1", packets[0]) is None


@pytest.mark.parametrize(("frame_ms", "samples"), [(10, 480), (20, 960), (60, 2880)])
def test_opus_packet_duration_comes_from_its_toc(frame_ms: int, samples: int) -> None:
    for packet in encode_opus(frame_ms):
        assert opus_samples(packet) == samples


def test_opus_toc_frame_counts() -> None:
    celt_20ms = 31 << 3
    assert opus_samples(bytes([celt_20ms | 0])) == 960
    assert opus_samples(bytes([celt_20ms | 1])) == 1920
    assert opus_samples(bytes([celt_20ms | 2, 0])) == 1920
    assert opus_samples(bytes([celt_20ms | 3, 3])) == 2880  # code 3: the count follows
    assert opus_samples(bytes([celt_20ms | 3])) == 0
    assert opus_samples(b"") == 0


def test_opus_head_is_what_rfc_7845_says() -> None:
    head = opus_head()
    assert head[:8] == b"OpusHead"
    version, channels, pre_skip, rate, gain, mapping = struct.unpack("<BBHIhB", head[8:])
    assert (version, channels, pre_skip, rate, gain, mapping) == (1, 2, 0, 48000, 0, 0)
