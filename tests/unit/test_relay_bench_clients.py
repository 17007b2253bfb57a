"""The relay bench's cheap clients (``tests.bench.relay_wire``, ``relay_media.Pacer``):
frames counted from RTP headers alone, and frames paced to a sender's sink.

The loss the bench reports is only as good as this counting: a frame with a packet
missing must not count, a whole one must count once.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc.mediastreams import MediaStreamError

from media.encoded_frame import EncodedFrame
from tests.bench.relay_media import MAX_LAG, EncodedLoop, Pacer, PacketLoopTrack, StreamCount
from tests.bench.relay_wire import FrameTally, vp8_frame_start


def video_tally() -> tuple[FrameTally, StreamCount]:
    stream = StreamCount()
    return FrameTally(stream, video=True, payload_type=96), stream


def feed(tally: FrameTally, packets: list[tuple[int, int, bool]]) -> None:
    for sequence, timestamp, marker in packets:
        tally.packet(sequence, timestamp, marker)


def test_whole_video_frames_count_once_each_at_their_last_packet() -> None:
    tally, stream = video_tally()
    feed(tally, [(9, 0, True)])  # the stream's first packet: nothing known before it
    feed(tally, [(10, 3000, False), (11, 3000, False)])
    assert stream.timestamps == []  # not complete before the marked packet
    feed(tally, [(12, 3000, True), (13, 6000, True), (14, 9000, False), (15, 9000, True)])
    assert stream.timestamps == [3000, 6000, 9000]
    assert len(stream.arrivals) == 3
    assert stream.arrivals == sorted(stream.arrivals)


def test_a_frame_missing_a_packet_does_not_count() -> None:
    tally, stream = video_tally()
    feed(tally, [(1, 0, True)])
    feed(tally, [(2, 3000, False), (4, 3000, True)])  # 3 lost in the middle
    feed(tally, [(5, 6000, False), (6, 6000, True)])
    assert stream.timestamps == [6000]


def test_a_frame_whose_first_packet_is_lost_does_not_count() -> None:
    tally, stream = video_tally()
    feed(tally, [(1, 0, True)])
    feed(tally, [(3, 3000, False), (4, 3000, True)])  # 2, its first, lost
    assert stream.timestamps == []


def test_without_the_codec_a_frame_after_a_lost_last_packet_cannot_be_told_whole() -> None:
    tally, stream = video_tally()
    feed(tally, [(1, 0, True)])
    feed(tally, [(2, 3000, False)])  # 3 (3000's last, marked) lost
    feed(tally, [(4, 6000, False), (5, 6000, True)])  # starts after a gap: which was lost?
    feed(tally, [(6, 9000, False), (7, 9000, True)])
    assert stream.timestamps == [9000]


def rtp(sequence: int, timestamp: int, marker: bool, *, start: bool, csrcs: int = 0,
        extension: bytes = b"", padding: int = 0) -> bytes:
    """A VP8 RTP packet in the clear: header, CSRCs, one-byte-header extension, payload
    descriptor (S and partition 0 when ``start``), payload, padding."""
    first = 0x80 | csrcs | (0x10 if extension else 0) | (0x20 if padding else 0)
    header = bytes([first, (0x80 if marker else 0) | 96]) + sequence.to_bytes(2, "big")
    header += timestamp.to_bytes(4, "big") + (1234).to_bytes(4, "big")
    header += b"\x00\x00\x00\x07" * csrcs
    if extension:
        words = (len(extension) + 3) // 4
        header += b"\xbe\xde" + words.to_bytes(2, "big") + extension.ljust(4 * words, b"\0")
    descriptor = bytes([0x90 if start else 0x80, 0x80 | 0x12, 0x34])  # X, with a picture id
    tail = bytes(padding - 1) + bytes([padding]) if padding else b""
    return header + descriptor + b"payload" + tail


def vp8_tally() -> tuple[FrameTally, StreamCount]:
    stream = StreamCount()
    return FrameTally(stream, video=True, payload_type=96, starts=vp8_frame_start), stream


def feed_vp8(tally: FrameTally, packets: list[tuple[int, int, bool, bool]]) -> None:
    for sequence, timestamp, marker, start in packets:
        tally.packet(sequence, timestamp, marker,
                     rtp(sequence, timestamp, marker, start=start))


def test_vp8_a_lost_last_packet_loses_that_frame_only() -> None:
    tally, stream = vp8_tally()
    feed_vp8(tally, [(1, 0, False, True), (2, 0, True, False)])  # the first frame counts
    feed_vp8(tally, [(3, 3000, False, True)])  # 4 (3000's last, marked) lost
    feed_vp8(tally, [(5, 6000, False, True), (6, 6000, True, False)])
    assert stream.timestamps == [0, 6000]


def test_vp8_a_lost_first_packet_loses_the_frame() -> None:
    tally, stream = vp8_tally()
    feed_vp8(tally, [(1, 0, True, True)])
    feed_vp8(tally, [(3, 3000, False, False), (4, 3000, True, False)])  # 2 lost: its start
    feed_vp8(tally, [(5, 6000, False, True), (7, 6000, True, False)])  # 6 lost: its middle
    feed_vp8(tally, [(8, 9000, True, True)])
    assert stream.timestamps == [0, 9000]


def test_vp8_frame_start_reads_past_csrcs_extensions_and_padding() -> None:
    ext = b"\x10\x01\x02\x03"  # one one-byte element (abs-send-time style)
    for start in (True, False):
        assert vp8_frame_start(rtp(1, 0, True, start=start)) is start
        assert vp8_frame_start(rtp(1, 0, True, start=start, csrcs=2)) is start
        assert vp8_frame_start(rtp(1, 0, True, start=start, extension=ext * 3)) is start
        assert vp8_frame_start(rtp(1, 0, True, start=start, extension=ext,
                                   padding=5)) is start
    partition_1 = bytearray(rtp(1, 0, True, start=True))
    partition_1[12] |= 0x01  # S set, but partition 1: not a frame's first packet
    assert vp8_frame_start(bytes(partition_1)) is False
    header_only = rtp(1, 0, True, start=True)[:12]
    assert vp8_frame_start(header_only) is None
    cut_extension = rtp(1, 0, True, start=True, extension=ext)[:14]
    assert vp8_frame_start(cut_extension) is None


def test_a_repeated_marked_packet_does_not_count_the_frame_twice() -> None:
    tally, stream = video_tally()
    feed(tally, [(1, 0, True), (2, 3000, True), (2, 3000, True)])
    assert stream.timestamps == [3000]


def test_sequence_numbers_wrap() -> None:
    tally, stream = video_tally()
    feed(tally, [(65534, 0, True), (65535, 3000, False), (0, 3000, False), (1, 3000, True)])
    assert stream.timestamps == [3000]


def test_audio_counts_each_new_timestamp() -> None:
    stream = StreamCount()
    tally = FrameTally(stream, video=False, payload_type=111)
    feed(tally, [(1, 960, False), (2, 1920, False), (2, 1920, False), (4, 3840, False)])
    assert stream.timestamps == [960, 1920, 3840]


class Sink:
    """Takes frames while ``open``; records them."""

    def __init__(self, *, open_: bool = True) -> None:
        self.open = open_
        self.frames: list[EncodedFrame] = []

    def accepts(self, track: object) -> bool:
        return self.open

    def take(self, track: object, frame: EncodedFrame) -> bool:
        self.frames.append(frame)
        return True


def loop_of(frames: int, period: float) -> EncodedLoop:
    return EncodedLoop("video", [bytes([i]) * 10 for i in range(frames)],
                       [bytes([100 + i]) * 10 for i in range(frames)], tick=3000,
                       clock=90000, period=period)


def test_send_due_hands_every_due_frame_in_order_with_pts_and_keyframes() -> None:
    track = PacketLoopTrack(loop_of(3, 0.05))
    sink = Sink()
    track.sink = sink  # type: ignore[assignment]
    start = track.due()
    next_due = track.send_due(start + 0.12)  # frames 0, 1, 2 are due
    assert [f.pts for f in sink.frames] == [0, 3000, 6000]
    assert [f.is_keyframe for f in sink.frames] == [True, False, False]
    assert sink.frames[1].data == bytes([1]) * 10
    assert next_due == pytest.approx(start + 0.15)
    assert track.indices == [0, 1, 2]
    track.request_keyframe()
    track.send_due(start + 0.21)  # frame 3 is slot 0 (a keyframe anyway), frame 4 too
    assert [f.is_keyframe for f in sink.frames[3:]] == [True, False]
    track.request_keyframe()  # too soon after the last request: throttled
    track.send_due(start + 0.26)  # frame 5, slot 2: the regular frame
    assert sink.frames[-1].data == bytes([2]) * 10 and not sink.frames[-1].is_keyframe
    track.send_due(start + 0.31)  # frame 6, slot 0 again
    track._last_keyframe = time.monotonic() - 10
    track.request_keyframe()
    track.send_due(start + 0.36)  # frame 7, slot 1: its intra copy
    assert sink.frames[-1].data == bytes([101]) * 10 and sink.frames[-1].is_keyframe
    assert track.keyframes_sent == 1


def test_frames_due_while_the_sink_refuses_are_not_sent_nor_logged() -> None:
    track = PacketLoopTrack(loop_of(5, 0.05))
    sink = Sink(open_=False)
    track.sink = sink  # type: ignore[assignment]
    start = track.due()
    track.send_due(start + 0.11)  # 0, 1, 2 due, not connected yet
    sink.open = True
    track.send_due(start + 0.16)  # 3
    assert [f.pts for f in sink.frames] == [9000]
    assert track.indices == [3]
    assert len(track.sent) == len(track.late) == 1


def test_a_sender_far_behind_skips_instead_of_bursting() -> None:
    track = PacketLoopTrack(loop_of(50, 0.02))
    sink = Sink()
    track.sink = sink  # type: ignore[assignment]
    start = track.due()
    track.send_due(start + MAX_LAG + 0.5)
    assert len(sink.frames) < 5
    assert track.late[0] > MAX_LAG  # logged as late as the frame it replaced
    assert track.skipped > 40
    assert abs(track.indices[-1] - (MAX_LAG + 0.5) / 0.02) <= 1


async def test_the_pacer_sends_in_real_time_and_recv_gives_nothing_once_paced() -> None:
    track = PacketLoopTrack(loop_of(10, 0.02))
    sink = Sink()
    pacer = Pacer()
    pacer.pace(track, sink)  # type: ignore[arg-type]
    reading = asyncio.create_task(track.recv())
    await asyncio.sleep(0.3)
    await pacer.stop()
    assert 10 <= len(sink.frames) <= 17  # 0.3 s at 50 fps, give or take a slow tick
    assert [f.pts for f in sink.frames] == [3000 * i for i in range(len(sink.frames))]
    assert not reading.done()
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(reading, 1)


class BrokenSink(Sink):
    def take(self, track: object, frame: EncodedFrame) -> bool:
        raise ConnectionError("the connection went away")


async def test_a_sender_that_fails_stops_alone() -> None:
    good, bad = PacketLoopTrack(loop_of(10, 0.02)), PacketLoopTrack(loop_of(10, 0.02))
    sink = Sink()
    pacer = Pacer()
    pacer.pace(bad, BrokenSink())  # type: ignore[arg-type]
    pacer.pace(good, sink)  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    await pacer.stop()
    assert bad.readyState == "ended"
    assert good.readyState == "live"
    assert len(sink.frames) >= 5
