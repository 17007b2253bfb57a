"""Jitter buffers for forwarded tracks: video that stops waiting for a lost packet after a
bound, audio that does not wait at all.

aiortc's ``JitterBuffer`` hands a frame on only when every packet from its origin up to
the next frame is there. A packet that never comes (lost, and its retransmission lost
or never sent) blocks the stream until 512 packets have queued behind it: on a phone's
thin uplink (~25 video packets a second) that is 20 s without a picture, and from then
on every frame 20 s late. aiortc re-sends a NACK only when a new gap appears, so such
packets are common at a few per cent loss (seen: a phone at 5 % loss whose picture
reached the hub 30 s after it joined).

``BoundedWaitJitterBuffer`` is aiortc's buffer plus one rule: when the head has not
moved for ``max_wait_s`` while packets wait behind a hole, the hole is given up — every
packet up to the first frame wholly after it is dropped — and frames are held back until
the next keyframe, asked for at once and again every ``KEYFRAME_RETRY_S`` (the receiver
sends a PLI for ``pli_flag``): the hub forwards with sequence numbers of its own, so a
subscriber could not tell that a reference frame is missing and would decode garbage.
Subscribers see a short freeze instead of a stall.

Audio is worse off: aiortc waits for a missing audio packet until 16 have queued behind
it (320 ms, and nothing ever resends audio), and meanwhile its prefetch of 4 holds the
packets just before the hole, which the overflow then throws away: 5 % loss on a phone's
link became ~24 % at the agent, the voice first to suffer. The hub does not decode what
it forwards, and every subscriber's own jitter buffer (NetEq in a browser) deals with
jitter and loss, so ``AudioForwardBuffer`` hands every packet on at once, in order,
dropping only late and duplicate ones.

``ForwardingHook.forward`` installs them on every forwarded receiver
(``media.private_hooks`` lists the names).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint16_gt

from media.bitstream import h264_is_keyframe, vp8_is_keyframe

logger = logging.getLogger(__name__)

VIDEO_CAPACITY = 512  # aiortc's, for video
MAX_WAIT_S = 1.0
"""A retransmission asked for at once comes back after one round trip (0.3 s on a weak
mobile link); a second try needs another gap to trigger its NACK. Past this, give up."""
KEYFRAME_RETRY_S = 1.0


def _is_keyframe(data: bytes) -> bool:
    # The buffer does not know the codec; an H.264 access unit starts with a start code.
    if data.startswith(b"\x00\x00"):
        return h264_is_keyframe(data)
    return vp8_is_keyframe(data)


class BoundedWaitJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer that gives up a hole older than ``max_wait_s`` and
    hands a frame on as soon as its last packet is in."""

    def __init__(self, *, capacity: int = VIDEO_CAPACITY, max_wait_s: float = MAX_WAIT_S,
                 label: str = "video", clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity=capacity, is_video=True)
        if max_wait_s <= 0:
            raise ValueError(f"max_wait_s must be positive, got {max_wait_s}")
        self.max_wait_s = max_wait_s
        self.label = label
        self.skipped = 0  # holes given up
        self.held_back = 0  # frames dropped while waiting for a keyframe
        self._clock = clock
        self._max_seq: int | None = None
        self._waiting_since: float | None = None  # when the head stopped behind a hole
        self._keyframe_asked: float | None = None  # set while frames are held back

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        origin = self._origin
        pli_flag, frame = super().add(packet)
        seq = packet.sequence_number
        if self._max_seq is None or uint16_gt(seq, self._max_seq):
            self._max_seq = seq
        now = self._clock()
        if frame is not None or self._origin != origin or not self._behind_hole():
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = now
        elif now - self._waiting_since >= self.max_wait_s and self._skip_hole():
            self._waiting_since = None
            self.skipped += 1
            self._keyframe_asked = now
            pli_flag = True
            logger.debug("%s: gave up a lost packet after %.1f s; keyframe requested",
                         self.label, self.max_wait_s)
            frame = self._remove_frame(seq)
        if self._keyframe_asked is None:
            return pli_flag, frame
        if frame is not None and _is_keyframe(frame.data):
            self._keyframe_asked = None
            return pli_flag, frame
        if frame is not None:
            self.held_back += 1
        if now - self._keyframe_asked >= KEYFRAME_RETRY_S:
            self._keyframe_asked = now
            pli_flag = True
        return pli_flag, None

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        """The frame at the head, once complete: aiortc's rule (the next frame has begun,
        every packet up to it is there), or as soon as its last packet (RTP marker bit)
        is in with every packet before it. aiortc's rule alone holds every frame back
        until the next one starts, a frame interval (67 ms at 15 fps) on each frame."""
        if self._origin is None:
            return None
        packets: list[RtpPacket] = []
        timestamp: int | None = None
        for count in range(self._capacity):
            packet = self._slot(count)
            if packet is None:
                return None
            if timestamp is not None and packet.timestamp != timestamp:
                return self._take(packets, count)
            timestamp = packet.timestamp
            packets.append(packet)
            if packet.marker:
                return self._take(packets, count + 1)
        return None

    def _take(self, packets: list[RtpPacket], count: int) -> JitterFrame:
        frame = JitterFrame(data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
                            timestamp=packets[0].timestamp)
        self.remove(count)
        return frame

    def _slot(self, offset: int) -> RtpPacket | None:
        origin = self._origin or 0
        return self._packets[(origin + offset) % self._capacity]

    def _behind_hole(self) -> bool:
        """Packets wait beyond the head, which cannot move on."""
        if self._origin is None or self._max_seq is None:
            return False
        return uint16_gt(self._max_seq, self._origin)

    def _skip_hole(self) -> bool:
        """Drop from the origin through the first hole and the frame right after it (it
        may have lost its start there), so that the origin is the first packet of a later
        frame. False (nothing dropped) while no such frame has begun to arrive."""
        first_hole = next((i for i in range(self._capacity) if self._slot(i) is None), None)
        if first_hole is None:
            return False
        after = next((i for i in range(first_hole + 1, self._capacity)
                      if self._slot(i) is not None), None)
        torn = self._slot(after) if after is not None else None
        if after is None or torn is None:
            return False
        start = next((i for i in range(after + 1, self._capacity)
                      if (p := self._slot(i)) is not None and p.timestamp != torn.timestamp),
                     None)
        if start is None:
            return False
        self.remove(start)
        return True


AUDIO_RESTART = 100
"""A sequence number this far behind the last one is a restarted stream, not a late
packet (aiortc's MAX_MISORDER)."""


class AudioForwardBuffer(JitterBuffer):
    """Every audio packet is a frame: handed on at once, in order (see the module)."""

    def __init__(self, *, capacity: int = 16) -> None:
        super().__init__(capacity=capacity)
        self._last: int | None = None
        self.dropped = 0  # late or duplicate

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        last = self._last
        if (last is not None and not uint16_gt(seq, last)
                and uint16_add(last, -seq) < AUDIO_RESTART):
            self.dropped += 1
            return False, None
        self._last = seq
        data: bytes = packet._data  # type: ignore[attr-defined]  # set by the receiver
        return False, JitterFrame(data=data, timestamp=packet.timestamp)
