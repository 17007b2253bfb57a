"""Fan-out of encoded packets: keyframe gating, bounds, stop and hand-over, PLI routing,
and the receive-path hook's worker, on real VP8 packets from libvpx."""

from __future__ import annotations

import asyncio
import fractions
import queue
import threading
from typing import Any

import aiortc.rtcrtpreceiver
import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av import VideoFrame
from av.packet import Packet
from av.video.frame import PictureType

from media.encoded_fanout import EncodedSource, ForwardingError, ForwardingTrack, WorkerStats
from media.encoded_frame import EncodedFrame
from media.forwarding import ForwardingHook, _InlineFeed, encoded_packet

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)


def vp8_frames(count: int, keyframes: set[int]) -> list[bytes]:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 48, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 15)
    encoder.gop_size = 1000
    encoder.options = {"deadline": "realtime", "lag-in-frames": "0"}
    out: list[bytes] = []
    for i in range(count):
        image = np.full((48, 64, 3), (i * 20) % 255, np.uint8)
        frame = VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        if i in keyframes:
            frame.pict_type = PictureType.I
        out += [bytes(p) for p in encoder.encode(frame)]
    return out


FRAMES = vp8_frames(12, keyframes={0, 6})  # K D D D D D K D D D D D
KEY, DELTA = FRAMES[0], FRAMES[1]


class PacketTrack(MediaStreamTrack):
    """A remote track as a forwarding receiver's looks: it yields av.Packet."""

    def __init__(self, kind: str = "video") -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[Packet[Any] | VideoFrame | None] = asyncio.Queue()
        self.pts = 0

    def push(self, data: bytes, *, clock: int = 90000, step: int = 6000) -> None:
        name = "VP8" if self.kind == "video" else "opus"
        self.queue.put_nowait(encoded_packet(name, clock, data, self.pts))
        self.pts += step

    async def recv(self) -> Packet[Any] | VideoFrame:
        item = await self.queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        return item


class Publisher:
    """Counts the keyframe requests that reach the publisher."""

    def __init__(self) -> None:
        self.requests = 0

    async def send(self) -> bool:
        self.requests += 1
        return True


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def make_source(kind: str = "video") -> tuple[EncodedSource, PacketTrack, Publisher]:
    track, publisher = PacketTrack(kind), Publisher()
    source = EncodedSource(track, request_keyframe=publisher.send, keyframe_interval=0.0,
                           label="unit")
    source.start()
    return source, track, publisher


async def test_late_subscriber_starts_at_the_next_keyframe() -> None:
    source, track, publisher = make_source()
    early = source.subscribe()
    track.push(KEY)
    track.push(DELTA)
    await settle()
    assert publisher.requests == 1  # on subscribe
    late = source.subscribe()
    await settle()
    assert publisher.requests == 2
    track.push(DELTA)
    track.push(KEY)
    track.push(DELTA)
    await settle()
    assert (early.depth, late.depth) == (5, 2)
    first = await late.recv()
    assert first.is_keyframe and bytes(first) == KEY
    assert late.dropped == 1
    await source.stop()


async def test_unread_video_track_stays_bounded_and_resumes_at_a_keyframe() -> None:
    source, track, publisher = make_source()
    sub = source.subscribe(max_queue=4)
    for data in FRAMES[:5]:  # K D D D | D overflows: dropped to wait for a keyframe
        track.push(data)
    await settle()
    assert sub.max_depth == 4 and sub.depth == 0
    assert sub.overflows == 1 and sub.dropped == 5 and sub.waiting_for_keyframe
    requests = publisher.requests
    for _ in range(20):
        track.push(DELTA)
    await settle()
    assert sub.depth == 0 and publisher.requests == requests  # a stalled reader is quiet

    reader = asyncio.ensure_future(sub.recv())
    await settle()
    assert publisher.requests == requests + 1  # the reader is back: ask for a keyframe
    track.push(KEY)
    packet = await asyncio.wait_for(reader, 1)
    assert packet.is_keyframe
    await source.stop()


async def test_keyframe_into_a_full_queue_replaces_it() -> None:
    source, track, _ = make_source()
    sub = source.subscribe(max_queue=3)
    for data in (KEY, DELTA, DELTA, KEY):
        track.push(data)
    await settle()
    assert sub.depth == 1 and not sub.waiting_for_keyframe
    assert (await sub.recv()).is_keyframe
    await source.stop()


async def test_unread_audio_track_drops_the_oldest() -> None:
    source, track, _ = make_source("audio")
    sub = source.subscribe(max_queue=3)
    for i in range(5):
        track.push(bytes([0xFC, i]), clock=48000, step=960)
    await settle()
    assert sub.depth == 3 and sub.dropped == 2
    assert [bytes(await sub.recv())[1] for _ in range(3)] == [2, 3, 4]
    await source.stop()


async def test_packets_carry_a_forward_pts_and_time_base() -> None:
    source, track, _ = make_source()
    sub = source.subscribe()
    track.pts = 777_000
    for data in FRAMES[:3]:
        track.push(data)
    await settle()
    packets = [await sub.recv() for _ in range(3)]
    assert [p.pts for p in packets] == [0, 6000, 12000]
    assert {p.time_base for p in packets} == {fractions.Fraction(1, 90000)}
    await source.stop()


async def test_stop_ends_subscribers() -> None:
    source, _, _ = make_source()
    sub = source.subscribe()
    await source.stop()
    with pytest.raises(MediaStreamError):
        await sub.recv()
    await source.stop()  # twice is fine
    with pytest.raises(ForwardingError, match="stopped"):
        source.subscribe()


async def test_parked_subscribers_move_to_a_new_source() -> None:
    old, old_track, _ = make_source()
    sub = old.subscribe()
    old_track.push(KEY)
    await settle()
    assert (await sub.recv()).pts == 0
    parked = await old.stop(keep_subscribers=True)
    assert parked == [sub] and sub.source is None and sub.readyState == "live"

    new, new_track, publisher = make_source()
    new.adopt(sub)
    await settle()
    assert publisher.requests == 1 and sub.waiting_for_keyframe
    new_track.push(DELTA)  # not decodable after a change of source
    new_track.push(KEY)
    await settle()
    packet = await sub.recv()
    assert packet.is_keyframe and packet.pts is not None and packet.pts > 0
    assert sub.timeline.rebased == 1
    await new.stop()


async def test_source_that_ends_by_itself_parks_its_subscribers() -> None:
    source, track, _ = make_source()
    sub = source.subscribe()
    track.queue.put_nowait(None)
    await settle()
    assert source.ended and sub.source is source and sub.readyState == "live"
    await source.stop()
    with pytest.raises(MediaStreamError):
        await sub.recv()


async def test_decoded_frames_are_not_forwarded() -> None:
    source, track, _ = make_source()
    sub = source.subscribe()
    track.queue.put_nowait(VideoFrame(64, 48))
    await settle()
    assert source.unexpected == 1 and sub.depth == 0
    await source.stop()


async def test_kind_mismatch_is_refused() -> None:
    source, _, _ = make_source("audio")
    with pytest.raises(ForwardingError, match="video track from a audio source"):
        source.adopt(ForwardingTrack("video"))
    await source.stop()


async def test_subscriber_pli_reaches_the_publisher_through_the_sender() -> None:
    source, _, publisher = make_source()
    sub = source.subscribe()
    await settle()
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver(sub, direction="sendonly").sender
        sub.bind_sender(sender)
        before = publisher.requests
        sender._send_keyframe()  # what RTCRtpSender does on PLI or FIR
        await settle()
        assert sub.subscriber_keyframe_requests == 1
        assert publisher.requests == before + 1
        sub.stop()
        assert "_send_keyframe" not in vars(sender)  # the class method is back
    finally:
        await pc.close()
        await source.stop()


class Sink:
    """A consumer that takes frames as they are offered (a FrameSink), and says when."""

    def __init__(self) -> None:
        self.open = True  # what accepts() answers
        self.congested = False  # take() drops the frame
        self.fail = False  # take() raises
        self.taken: list[EncodedFrame] = []

    def accepts(self, track: ForwardingTrack) -> bool:
        return self.open

    def take(self, track: ForwardingTrack, frame: EncodedFrame) -> bool:
        if self.fail:
            raise RuntimeError("the sink broke")
        if self.congested:
            return False
        self.taken.append(frame)
        return True


def sunk(kind: str = "video", *, max_queue: int | None = None
         ) -> tuple[EncodedSource, PacketTrack, Publisher, ForwardingTrack, Sink]:
    """A source with one subscriber whose frames go to a ``Sink``."""
    source, track, publisher = make_source(kind)
    sub = source.subscribe(max_queue=max_queue)
    sink = Sink()
    sub.set_sink(sink)
    return source, track, publisher, sub, sink


async def test_a_sink_takes_frames_as_offered_in_order() -> None:
    source, track, _, sub, sink = sunk(max_queue=4)
    track.pts = 777_000
    for data in FRAMES[:3]:
        track.push(data)
    await settle()
    assert [bytes(p) for p in sink.taken] == FRAMES[:3]
    assert [p.pts for p in sink.taken] == [0, 6000, 12000]  # the subscriber's timeline
    assert sink.taken[0].is_keyframe and sink.taken[0].time_base == fractions.Fraction(1, 90000)
    assert (sub.depth, sub.sent, sub.direct) == (0, 3, 3)

    sink.open = False  # not now: queued for the reader, and what follows stays behind it
    track.push(FRAMES[3])
    await settle()
    sink.open = True
    track.push(FRAMES[4])
    await settle()
    assert sub.depth == 2 and len(sink.taken) == 3
    assert [bytes(await sub.recv()) for _ in range(2)] == FRAMES[3:5]
    track.push(FRAMES[5])  # the queue is empty again: straight to the sink
    await settle()
    assert bytes(sink.taken[-1]) == FRAMES[5] and sub.depth == 0
    assert (sub.sent, sub.direct) == (6, 4)
    await source.stop()


async def test_a_congested_sink_sends_video_to_the_next_keyframe() -> None:
    source, track, publisher, sub, sink = sunk()
    reader = asyncio.ensure_future(sub.recv())  # a sender's loop waits in recv()
    track.push(KEY)
    await settle()
    requests = publisher.requests
    sink.congested = True
    track.push(FRAMES[1])
    await settle()
    assert sub.congested == 1 and sub.dropped == 1 and sub.waiting_for_keyframe
    assert publisher.requests == requests + 1  # the reader asked for a keyframe at once
    sink.congested = False
    for data in FRAMES[2:6]:  # delta frames: still waiting
        track.push(data)
    await settle()
    assert len(sink.taken) == 1 and sub.dropped == 5
    track.push(FRAMES[6])  # the keyframe
    track.push(FRAMES[7])
    await settle()
    assert [bytes(p) for p in sink.taken] == [KEY, FRAMES[6], FRAMES[7]]
    assert not reader.done() and sub.depth == 0  # nothing went through the queue
    reader.cancel()
    await source.stop()


async def test_a_congested_sink_drops_audio_frames_only() -> None:
    source, track, _, sub, sink = sunk("audio")
    for i in range(4):
        sink.congested = i == 1
        track.push(bytes([0xFC, i]), clock=48000, step=960)
        await settle()
    assert [bytes(p)[1] for p in sink.taken] == [0, 2, 3]
    assert sub.congested == 1 and sub.dropped == 1
    await source.stop()


async def test_a_failing_sink_is_left_and_the_reader_gets_the_frames(
        caplog: pytest.LogCaptureFixture) -> None:
    source, track, _, sub, sink = sunk()
    track.push(KEY)
    await settle()
    sink.fail = True
    track.push(FRAMES[1])  # lost with the failure
    await settle()
    assert "frame sink failed" in caplog.text
    assert sub.waiting_for_keyframe and (sub.dropped, sub.congested) == (1, 0)
    track.push(FRAMES[6])
    await settle()
    assert sub.depth == 1 and bytes(await sub.recv()) == FRAMES[6]
    assert len(sink.taken) == 1
    await source.stop()


async def test_a_stopped_track_leaves_its_sink() -> None:
    source, track, _, sub, sink = sunk()
    sub.stop()
    track.push(KEY)
    await settle()
    assert sink.taken == [] and sub not in source.subscribers
    await source.stop()


def run_worker(hook: ForwardingHook, output_q: asyncio.Queue[Any],
               frames: list[bytes]) -> threading.Thread:
    input_q: queue.Queue[Any] = queue.Queue()
    for i, data in enumerate(frames):
        input_q.put((VP8, JitterFrame(data=data, timestamp=i * 6000)))
    input_q.put(None)
    thread = threading.Thread(target=aiortc.rtcrtpreceiver.decoder_worker,
                              args=(asyncio.get_running_loop(), input_q, output_q,
                                    threading.Event()))
    thread.start()
    return thread


async def drain(output_q: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while (item := await asyncio.wait_for(output_q.get(), 5)) is not None:
        items.append(item)
    return items


async def test_hook_leaves_unregistered_receivers_decoding() -> None:
    original = aiortc.rtcrtpreceiver.decoder_worker
    hook = ForwardingHook()
    hook.start()
    try:
        assert aiortc.rtcrtpreceiver.decoder_worker is not original
        output_q: asyncio.Queue[Any] = asyncio.Queue()
        thread = run_worker(hook, output_q, FRAMES[:3])
        frames = await drain(output_q)
        thread.join()
        assert [type(f) for f in frames] == [VideoFrame] * 3
        assert hook.decoding_workers == 1 and hook.forwarding_workers == 0
    finally:
        hook.stop()
    assert aiortc.rtcrtpreceiver.decoder_worker is original
    hook.stop()  # twice is fine


async def test_forwarding_feed_fans_frames_out_on_the_loop() -> None:
    track = PacketTrack()
    stats = WorkerStats(label="unit")
    source = EncodedSource(track, label="unit", worker=stats)
    source.start()
    sub = source.subscribe(max_queue=len(FRAMES))
    ended: list[bool] = []
    feed = _InlineFeed(stats, source, track.queue, on_end=lambda: ended.append(True))
    input_q: queue.Queue[Any] = queue.Queue()
    frames = [(VP8, JitterFrame(data=data, timestamp=777_000 + i * 6000))
              for i, data in enumerate(FRAMES)]
    for task in frames[:3]:  # queued before the worker's hand-over reached the loop
        input_q.put(task)
    feed.install(input_q)
    assert sub.depth == 3 and input_q.empty()
    for task in frames[3:]:  # as the receiver does: straight to the source, in order
        input_q.put(task)
    assert input_q.empty() and sub.depth == len(FRAMES)
    packets = [await sub.recv() for _ in FRAMES]
    assert [bytes(p) for p in packets] == FRAMES
    assert [p.pts for p in packets] == [i * 6000 for i in range(len(FRAMES))]
    assert [i for i, p in enumerate(packets) if p.is_keyframe] == [0, 6]
    assert {p.time_base for p in packets} == {fractions.Fraction(1, 90000)}
    assert (stats.codec, stats.frames, stats.keyframes) == ("video/VP8", 12, 2)
    assert source.frames == 12 and source.keyframes == 2

    input_q.put(None)  # the receiver stopped: the track ends, like a decoder's
    await settle()
    assert ended == [True] and source.ended
    input_q.put(frames[0])
    assert source.frames == 12
    await source.stop()


async def test_forwarding_feed_ends_even_if_the_receiver_stopped_first() -> None:
    track = PacketTrack()
    stats = WorkerStats(label="unit")
    source = EncodedSource(track, label="unit", worker=stats)
    source.start()
    feed = _InlineFeed(stats, source, track.queue, on_end=lambda: None)
    input_q: queue.Queue[Any] = queue.Queue()
    input_q.put((VP8, JitterFrame(data=KEY, timestamp=0)))
    input_q.put(None)
    feed.install(input_q)
    await settle()
    assert source.frames == 1 and source.ended and feed.ended
    assert "put" not in vars(input_q)  # nothing more will come: the queue is left alone
    await source.stop()


async def test_forwarding_feed_survives_a_bad_frame() -> None:
    track = PacketTrack()
    stats = WorkerStats(label="unit")
    source = EncodedSource(track, label="unit", worker=stats)
    source.start()
    feed = _InlineFeed(stats, source, track.queue, on_end=lambda: None)
    input_q: queue.Queue[Any] = queue.Queue()
    feed.install(input_q)
    input_q.put("not a (codec, frame) pair")  # logged, not raised into aiortc's receiver
    input_q.put((VP8, JitterFrame(data=KEY, timestamp=0)))
    assert source.frames == 1
    await source.stop()


async def test_forwarding_feed_skips_padding_only_frames() -> None:
    """A browser's bandwidth probes are RTP packets with no payload; aiortc hands each on
    as an empty frame. Forwarded, it would take a VP8 picture id of its own that no real
    frame refers to, and Chromium would stash every later frame until the next keyframe."""
    track = PacketTrack()
    stats = WorkerStats(label="unit")
    source = EncodedSource(track, label="unit", worker=stats)
    source.start()
    sub = source.subscribe(max_queue=8)
    feed = _InlineFeed(stats, source, track.queue, on_end=lambda: None)
    input_q: queue.Queue[Any] = queue.Queue()
    feed.install(input_q)
    sent = [KEY, b"", FRAMES[1], b"", b"", FRAMES[2]]
    for i, data in enumerate(sent):
        input_q.put((VP8, JitterFrame(data=data, timestamp=1000 + i * 3000)))
    packets = [await sub.recv() for _ in range(3)]
    assert [bytes(p) for p in packets] == [KEY, FRAMES[1], FRAMES[2]]
    assert sub.depth == 0
    assert (stats.frames, stats.padding, source.frames) == (3, 3, 3)
    await source.stop()


def test_forward_needs_a_started_hook() -> None:
    with pytest.raises(ForwardingError, match="not started"):
        ForwardingHook().forward(None, label="x")  # type: ignore[arg-type]
