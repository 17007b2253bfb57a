"""Just enough of the VP8 and H.264 bitstreams to tell a keyframe from a delta frame.

The input is what aiortc's jitter buffer reassembles (``JitterFrame.data``): the RTP
payloads of one frame with the RTP payload descriptors already stripped. For VP8 that is
the frame as libvpx wrote it (RFC 6386), for H.264 an Annex B byte stream (aiortc's
depayloader writes a ``00 00 00 01`` start code before every NAL unit).
"""

from __future__ import annotations

from collections.abc import Iterator

VP8_START_CODE = b"\x9d\x01\x2a"
H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_NAL_PPS = 8


def vp8_is_keyframe(data: bytes) -> bool:
    """True if ``data`` is a VP8 key frame.

    The first bit of the 3-byte frame tag (RFC 6386 §9.1, the "VP8 payload header" of
    RFC 7741 §4.3) is the inverse key frame flag; a key frame then carries the start
    code ``9d 01 2a``. Checking both keeps a corrupt first byte from passing.
    """
    return len(data) >= 10 and not data[0] & 0x01 and data[3:6] == VP8_START_CODE


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a VP8 key frame, None for anything else."""
    if not vp8_is_keyframe(data):
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


def h264_nal_types(data: bytes) -> Iterator[int]:
    """The ``nal_unit_type`` of every NAL unit in an Annex B byte stream.

    ``00 00 01`` cannot occur inside a NAL unit (emulation prevention), so every
    occurrence is a start code, 3- or 4-byte alike.
    """
    pos = data.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(data):
        yield data[pos + 3] & 0x1F
        pos = data.find(b"\x00\x00\x01", pos + 4)


def h264_is_keyframe(data: bytes) -> bool:
    """True if the access unit holds an IDR slice (a decoder can start there)."""
    return any(t == H264_NAL_IDR for t in h264_nal_types(data))


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """Keyframe flag for an encoded frame of ``codec_name`` (RTP codec name, any case).

    Audio codecs have no inter-frame prediction a receiver must start from: every frame
    counts as a keyframe.
    """
    name = codec_name.upper()
    if name == "VP8":
        return vp8_is_keyframe(data)
    if name == "H264":
        return h264_is_keyframe(data)
    return True
