"""The hub's video jitter buffer gives a lost packet up after a bound (media.jitter),
where aiortc's waits until 512 packets have queued behind it."""

from __future__ import annotations

import itertools

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from media.jitter import KEYFRAME_RETRY_S, AudioForwardBuffer, BoundedWaitJitterBuffer

KEY = b"\x10\x02\x00\x9d\x01\x2a\x40\x01\xf0\x00"  # a VP8 key frame's first bytes
DELTA = b"\x11\x02\x00\x00\x00\x00\x00\x00\x00\x00"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def packet(seq: int, frame: int, data: bytes) -> RtpPacket:
    p = RtpPacket(payload_type=96, sequence_number=seq % 65536, timestamp=frame * 3000)
    p._data = data  # type: ignore[attr-defined]  # aiortc sets it after depayloading
    return p


def stream(frames: int, per_frame: int = 3, first: int = 0,
           key_every: int = 0) -> list[tuple[int, RtpPacket]]:
    """(frame number, packet) for ``frames`` frames of ``per_frame`` packets each."""
    out = []
    for f in range(frames):
        key = f == 0 or (key_every and f % key_every == 0)
        for i in range(per_frame):
            data = (KEY if key else DELTA) if i == 0 else bytes([i])
            out.append((f, packet(first + f * per_frame + i, f, data)))
    return out


def feed(buffer: JitterBuffer, packets: list[tuple[int, RtpPacket]], clock: Clock | None,
         step: float = 0.033) -> tuple[list[JitterFrame], int]:
    frames, plis = [], 0
    for _, p in packets:
        if clock is not None:
            clock.now += step
        pli, frame = buffer.add(p)
        plis += pli
        if frame is not None:
            frames.append(frame)
    return frames, plis


def test_without_loss_it_is_aiortcs_buffer() -> None:
    packets = stream(50)
    ours, plis = feed(BoundedWaitJitterBuffer(clock=Clock()), packets, None)
    theirs, _ = feed(JitterBuffer(capacity=512, is_video=True), packets, None)
    assert [(f.timestamp, f.data) for f in ours] == [(f.timestamp, f.data) for f in theirs]
    assert len(ours) == 49 and plis == 0  # the last frame waits for the next one


def test_a_retransmission_within_the_wait_fills_the_hole() -> None:
    clock = Clock()
    buffer = BoundedWaitJitterBuffer(max_wait_s=1.0, clock=clock)
    packets = stream(40)
    lost = packets.pop(31)  # frame 10's second packet
    frames, plis = feed(buffer, packets[:45], clock)
    assert len(frames) == 10  # frames 0-9; frame 10 waits for its packet
    late = buffer.add(lost[1])  # back ~0.5 s later, within the wait
    assert late[1] is not None and late[1].timestamp == 10 * 3000
    more, plis_after = feed(buffer, packets[45:], clock)
    assert buffer.skipped == 0 and plis + plis_after == 0
    assert len(frames) + 1 + len(more) == 39  # every frame but the last


def test_a_packet_that_never_comes_is_given_up_after_the_wait() -> None:
    clock = Clock()
    buffer = BoundedWaitJitterBuffer(max_wait_s=1.0, clock=clock)
    # 10 fps, 3 packets a frame, a key frame every 45 frames; frame 10 loses a packet.
    packets = [p for p in stream(100, key_every=45) if p[1].sequence_number != 31]
    frames: list[JitterFrame] = []
    plis = 0
    pli_at: list[float] = []
    for _, p in packets:
        clock.now += 0.033
        pli, frame = buffer.add(p)
        if pli:
            plis += 1
            pli_at.append(clock.now)
        if frame is not None:
            frames.append(frame)
    numbers = [f.timestamp // 3000 for f in frames]
    assert buffer.skipped == 1
    # Frames up to the hole, then nothing until the next key frame (30), then all on.
    assert numbers[:10] == list(range(10))
    assert numbers[10:] == list(range(45, 99))
    assert buffer.held_back > 0  # delta frames after the hole were not handed on
    # A keyframe was asked for when the hole was given up (about 1 s after it), and
    # again every KEYFRAME_RETRY_S until one came (frame 45, 3.5 s after the hole).
    stuck_at = 32 * 0.033  # the first packet behind the hole
    assert 1.0 <= pli_at[0] - stuck_at <= 1.1, pli_at
    assert all(b - a >= KEYFRAME_RETRY_S - 0.05 for a, b in itertools.pairwise(pli_at))
    assert plis == len(pli_at) == 3


def test_aiortcs_buffer_stalls_on_the_same_loss() -> None:
    packets = [p for p in stream(100, key_every=30) if p[1].sequence_number != 31]
    frames, _ = feed(JitterBuffer(capacity=512, is_video=True), packets, None)
    assert len(frames) == 10, "aiortc waits for 512 packets behind the hole"


def audio(seq: int) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq % 65536, timestamp=seq * 960)
    p._data = seq.to_bytes(4, "big")  # type: ignore[attr-defined]
    return p


def test_audio_is_handed_on_at_once_without_waiting_for_a_loss() -> None:
    buffer = AudioForwardBuffer()
    out = []
    for seq in [1, 2, 4, 5, 6, 3, 6, 7]:  # 3 is lost, then comes late; 6 twice
        _, frame = buffer.add(audio(seq))
        out.append(None if frame is None else int.from_bytes(frame.data, "big"))
    assert out == [1, 2, 4, 5, 6, None, None, 7]
    assert buffer.dropped == 2
    # A stream that starts again far back (a new sender) is taken, not dropped as late.
    _, frame = buffer.add(audio(2_000_000 - 65536 * 30))
    assert frame is not None


def test_aiortcs_audio_buffer_turns_5_percent_loss_into_much_more() -> None:
    sent = range(1, 2001)
    arrived = [audio(s) for s in sent if s % 20]  # every 20th packet lost: 5 %
    theirs, _ = feed(JitterBuffer(capacity=16, prefetch=4), [(0, p) for p in arrived], None)
    ours, _ = feed(AudioForwardBuffer(), [(0, p) for p in arrived], None)
    assert len(ours) == len(arrived) == 1900
    assert len(theirs) < 0.8 * len(sent), len(theirs)  # 1490 of 2000: 25 % lost


def marked(packets: list[tuple[int, RtpPacket]], per_frame: int = 3
           ) -> list[tuple[int, RtpPacket]]:
    """The same stream with the RTP marker on each frame's last packet, as senders set it."""
    for n, (_, p) in enumerate(packets):
        p.marker = int(n % per_frame == per_frame - 1)
    return packets


def test_a_frame_goes_on_at_its_last_packet_not_at_the_next_frames_first() -> None:
    packets = marked(stream(20))
    buffer = BoundedWaitJitterBuffer(clock=Clock())
    for n, (f, p) in enumerate(packets):
        _, frame = buffer.add(p)
        if n % 3 == 2:  # the marker packet completes frame f
            assert frame is not None and frame.timestamp == f * 3000
            assert frame.data == (KEY if f == 0 else DELTA) + b"\x01\x02"
        else:
            assert frame is None
    # aiortc's buffer gives the same frames, each one packet later, and not the last.
    theirs, _ = feed(JitterBuffer(capacity=512, is_video=True), packets, None)
    assert len(theirs) == 19


def test_a_marked_frame_with_a_hole_before_its_end_waits() -> None:
    clock = Clock()
    buffer = BoundedWaitJitterBuffer(max_wait_s=1.0, clock=clock)
    packets = marked(stream(4))
    lost = packets.pop(4)  # frame 1's middle packet
    frames, _ = feed(buffer, packets[:5], clock)  # frame 0, frame 1 without its middle
    assert [f.timestamp for f in frames] == [0]
    _, frame = buffer.add(lost[1])
    assert frame is not None and frame.timestamp == 3000 and frame.data == DELTA + b"\x01\x02"
