"""One forwarded frame as a subscriber's sink gets it (see ``media.encoded_fanout``)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from av.packet import Packet


@dataclass(slots=True)
class EncodedFrame:
    """One frame as a ``FrameSink`` gets it: what an ``av.Packet`` from ``recv()`` would
    carry (``bytes()`` of it is the frame), without making one for each subscriber."""

    data: bytes
    pts: int
    time_base: Fraction
    is_keyframe: bool

    def __bytes__(self) -> bytes:
        return self.data


def as_packet(frame: EncodedFrame) -> Packet[Any]:
    """The ``av.Packet`` ``recv()`` would have given for ``frame``."""
    packet = Packet(frame.data)
    packet.pts = frame.pts
    packet.dts = frame.pts
    packet.time_base = frame.time_base
    packet.is_keyframe = frame.is_keyframe
    return packet
