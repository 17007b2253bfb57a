"""What a container needs to know about forwarded frames, read from their bitstreams.

The hub forwards encoded frames as aiortc reassembled them (see ``media.bitstream``): a
VP8 frame as libvpx wrote it, an H.264 access unit as an Annex B byte stream, an Opus
packet. Muxing them needs a little more than a keyframe flag: the picture size (VP8
keyframe header, H.264 sequence parameter set), the H.264 parameter sets for the
container's codec private data, an Opus packet's duration (its TOC byte) and an
``OpusHead`` for the container.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from media.bitstream import H264_NAL_PPS, H264_NAL_SPS, vp8_is_keyframe, vp8_keyframe_size

OPUS_RATE = 48000

# High-profile SPS carry chroma format, bit depths and scaling lists (H.264 7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})

# Frame length in 48 kHz samples per TOC configuration (RFC 6716 §3.1, table 2).
_OPUS_FRAME_SAMPLES = (
    [480, 960, 1920, 2880] * 3  # SILK NB/MB/WB: 10, 20, 40, 60 ms
    + [480, 960] * 2  # hybrid SWB/FB: 10, 20 ms
    + [120, 240, 480, 960] * 4  # CELT NB/WB/SWB/FB: 2.5, 5, 10, 20 ms
)


def opus_head(channels: int = 2) -> bytes:
    """The ``OpusHead`` codec private data (RFC 7845 §5.1) for a WebRTC Opus stream.

    Pre-skip is zero: the stream did not start at an encoder's first packet, and a
    non-zero value would make the container shift the track's start by it.
    """
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 0, OPUS_RATE, 0, 0)


def opus_samples(data: bytes) -> int:
    """Duration of one Opus packet in 48 kHz samples; 0 when it cannot be read."""
    if not data:
        return 0
    toc = data[0]
    per_frame = _OPUS_FRAME_SAMPLES[toc >> 3]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(data) >= 2:
        frames = data[1] & 0x3F
    else:
        return 0
    return per_frame * frames


def h264_nal_units(data: bytes) -> Iterator[bytes]:
    """Every NAL unit (header byte included) of an Annex B byte stream."""
    starts: list[int] = []
    pos = data.find(b"\x00\x00\x01")
    while pos != -1:
        starts.append(pos + 3)
        pos = data.find(b"\x00\x00\x01", pos + 3)
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        nal = data[start:end]
        # A 4-byte start code leaves its leading zero on the previous unit.
        yield nal.rstrip(b"\x00") if i + 1 < len(starts) else nal


def h264_parameter_sets(data: bytes) -> bytes | None:
    """The SPS and PPS of an access unit as Annex B (a container's codec private data
    when the packets are Annex B), None unless both are there."""
    sps = pps = None
    for nal in h264_nal_units(data):
        if not nal:
            continue
        kind = nal[0] & 0x1F
        if kind == H264_NAL_SPS and sps is None:
            sps = nal
        elif kind == H264_NAL_PPS and pps is None:
            pps = nal
    if sps is None or pps is None:
        return None
    return b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps


class _Bits:
    """An RBSP bit reader with Exp-Golomb codes (H.264 9.1)."""

    def __init__(self, rbsp: bytes) -> None:
        self._value = int.from_bytes(rbsp, "big")
        self._left = len(rbsp) * 8

    def u(self, count: int) -> int:
        if count > self._left:
            raise ValueError("SPS ends early")
        self._left -= count
        return (self._value >> self._left) & ((1 << count) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("SPS has a malformed Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def _unescape(nal: bytes) -> bytes:
    """Drop emulation prevention bytes (``00 00 03`` -> ``00 00``)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def h264_sps_size(sps: bytes) -> tuple[int, int]:
    """(width, height) of the cropped picture an SPS NAL unit (header included) describes.

    Raises ``ValueError`` for anything that is not a well-formed SPS.
    """
    if not sps or sps[0] & 0x1F != H264_NAL_SPS:
        raise ValueError("not an H.264 sequence parameter set")
    bits = _Bits(_unescape(sps[1:]))
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    separate_planes = 0
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.u(1)  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if bits.u(1):  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        if separate_planes or chroma_format == 0:
            unit_x, unit_y = 1, 2 - frame_mbs_only
        else:
            sub_width = 2 if chroma_format in (1, 2) else 1
            sub_height = 2 if chroma_format == 1 else 1
            unit_x, unit_y = sub_width, sub_height * (2 - frame_mbs_only)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    if width <= 0 or height <= 0:
        raise ValueError(f"SPS describes an empty picture ({width}x{height})")
    return width, height


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale if next_scale != 0 else last


def picture_size(codec: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) of a keyframe of ``codec`` ("VP8" or "H264"), None if ``data`` is
    not a keyframe that says."""
    name = codec.upper()
    if name == "VP8":
        return vp8_keyframe_size(data)
    if name == "H264":
        for nal in h264_nal_units(data):
            if nal and nal[0] & 0x1F == H264_NAL_SPS:
                try:
                    return h264_sps_size(nal)
                except ValueError:
                    return None
    return None


def detect_video_codec(data: bytes) -> str | None:
    """"VP8" or "H264" for a keyframe whose bitstream says which, else None."""
    if vp8_is_keyframe(data):
        return "VP8"
    if data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")):
        return "H264"
    return None
