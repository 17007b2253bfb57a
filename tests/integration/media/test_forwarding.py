"""Encoded-frame forwarding through a middle peer, with real aiortc peers in one process.

publisher --(VP8/H264 + Opus)--> middle (forwarding, no codec) --> subscribers (decode)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamTrack

from media.forwarding import EncodedSource, ForwardingError, ForwardingHook
from tests.integration.media.peers import (
    Middle,
    Publisher,
    Subscriber,
    ToneTrack,
    moving_pattern,
    negotiate,
)

logger = logging.getLogger(__name__)


def assert_middle_did_not_transcode(middle: Middle) -> None:
    for source in middle.sources:
        assert source.worker is not None
        assert source.worker.mode == "forward", source.label
        assert source.worker.frames > 0, source.label
        assert source.unexpected == 0, f"{source.label} saw decoded frames"
    encoders = middle.encoders()
    assert encoders and all(e is not None for e in encoders)
    for encoder in encoders:
        if isinstance(encoder, (Vp8Encoder, H264Encoder)):
            assert encoder.codec is None, "the middle opened a video encoder"
        else:
            assert isinstance(encoder, OpusEncoder)
            assert not encoder.codec.is_open, "the middle opened an Opus encoder"
    for track, _ in middle.subscriptions:
        assert track.sent > 0


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_two_subscribers_decode_forwarded_video_and_audio(
        hook: ForwardingHook, codec: str) -> None:
    if codec == "H264" and "libx264" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx264 encoder")
    publisher = Publisher({"video": moving_pattern(320, 240, 15), "audio": ToneTrack()},
                          codec=codec)
    middle = Middle(hook, codec=codec)
    subscribers = [Subscriber(), Subscriber()]
    try:
        sources = await middle.accept(publisher)
        for sub in subscribers:
            await middle.serve(sub, sources)
        for sub in subscribers:
            await sub.first_video(timeout=10)
        await asyncio.sleep(2.0)

        for sub in subscribers:
            assert len(sub.video) >= 15, len(sub.video)
            assert {(w, h) for _, w, h, _ in sub.video} == {(320, 240)}
            assert len(sub.audio) >= 50, len(sub.audio)
            assert {rate for _, rate, _ in sub.audio} == {48000}
        assert_middle_did_not_transcode(middle)
        assert hook.forwarding_workers == 2
        worker = sources["video"].worker
        assert worker is not None and worker.codec == f"video/{codec}"
        assert worker.keyframes >= 1
    finally:
        for sub in subscribers:
            await sub.close()
        await middle.close()
        await publisher.close()


async def test_late_subscriber_gets_a_frame_within_a_second(hook: ForwardingHook) -> None:
    publisher = Publisher({"video": moving_pattern(320, 240, 15)})
    middle = Middle(hook)
    early, late = Subscriber(), Subscriber()
    try:
        sources = await middle.accept(publisher)
        await middle.serve(early, sources)
        await early.first_video()
        await asyncio.sleep(5.0)  # well past the publisher's first (and only) keyframe

        started = time.monotonic()
        tracks = await middle.serve(late, sources)
        first = await late.first_video(timeout=10)
        delay = first - started
        logger.info("late subscriber: first decoded frame %.3f s after subscribing", delay)
        print(f"late subscriber: first decoded frame {delay:.3f} s after subscribing")
        assert delay < 2.0
        # It was the forwarded keyframe request that did it: aiortc's VP8 encoder
        # otherwise makes a keyframe only every 3000 frames.
        requester = sources["video"].keyframe_requester
        assert requester is not None and requester.sent >= 1
        assert not tracks["video"].waiting_for_keyframe
        assert_middle_did_not_transcode(middle)
    finally:
        for sub in (early, late):
            await sub.close()
        await middle.close()
        await publisher.close()


async def test_slow_subscriber_stays_bounded_and_resumes_at_a_keyframe(
        hook: ForwardingHook) -> None:
    publisher = Publisher({"video": moving_pattern(320, 240, 15)})
    middle = Middle(hook)
    sources = await middle.accept(publisher)
    track = sources["video"].subscribe()  # nobody reads it for a while
    requester = sources["video"].keyframe_requester
    assert requester is not None
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert track.depth <= track.max_queue
            await asyncio.sleep(0.02)
        assert track.max_depth <= track.max_queue
        assert track.overflows >= 1 and track.dropped > track.max_queue
        # A stalled reader does not keep the publisher busy making keyframes.
        assert requester.sent <= 1
        overflows = track.overflows

        decoder = av.CodecContext.create("libvpx", "r")
        first = await asyncio.wait_for(track.recv(), 3.0)
        assert first.is_keyframe
        frames = list(decoder.decode(first))
        for _ in range(20):
            frames += decoder.decode(await asyncio.wait_for(track.recv(), 2.0))
        assert len(frames) >= 20
        assert {(f.width, f.height) for f in frames} == {(320, 240)}
        assert track.overflows == overflows  # a reader that keeps up loses nothing
    finally:
        track.stop()
        await middle.close()
        await publisher.close()


async def test_republished_source_keeps_subscriber_timestamps_moving_forward(
        hook: ForwardingHook) -> None:
    first_pub = Publisher({"video": moving_pattern(320, 240, 15)})
    middle = Middle(hook)
    sub = Subscriber()
    second_pub: Publisher | None = None
    try:
        old = await middle.accept(first_pub)
        tracks = await middle.serve(sub, old)
        await sub.first_video()
        await asyncio.sleep(2.0)

        # The publisher rejoins with a new peer connection: its RTP timestamps restart.
        parked = await old["video"].stop(keep_subscribers=True)
        assert parked == [tracks["video"]]
        await first_pub.close()
        await asyncio.sleep(0.5)
        second_pub = Publisher({"video": moving_pattern(320, 240, 15, hue=200)})
        new = await middle.accept(second_pub)
        for track in parked:
            new["video"].adopt(track)
        await sub.wait_video(len(sub.video) + 15)

        assert tracks["video"].timeline.rebased >= 1
        pts = [p for *_, p in sub.video]
        steps = [b - a for a, b in itertools.pairwise(pts)]
        # Forward only and never a leap: a backwards RTP timestamp would show here as
        # a 2**32 jump (the subscriber's aiortc receiver takes it for a wrap).
        assert all(0 < step <= 5 * 90000 for step in steps), steps
        assert_middle_did_not_transcode(middle)
    finally:
        await sub.close()
        await middle.close()
        await first_pub.close()
        if second_pub is not None:
            await second_pub.close()


async def test_subscriber_pli_brings_a_keyframe_from_the_publisher(
        hook: ForwardingHook) -> None:
    publisher = Publisher({"video": moving_pattern(320, 240, 15)})
    middle = Middle(hook)
    sub = Subscriber()
    try:
        sources = await middle.accept(publisher)
        tracks = await middle.serve(sub, sources)
        await sub.first_video()
        await asyncio.sleep(1.0)
        source = sources["video"]
        requester = source.keyframe_requester
        assert requester is not None
        keyframes, sent = source.keyframes, requester.sent

        # What a subscriber's decoder does when it loses the picture, ten times over.
        receiver = next(t.receiver for t in sub.pc.getTransceivers() if t.kind == "video")
        ssrc = receiver.getSynchronizationSources()[0].source
        for _ in range(10):
            await receiver._send_rtcp_pli(ssrc)
            await asyncio.sleep(0.01)
        for _ in range(50):  # 1 s
            if source.keyframes > keyframes:
                break
            await asyncio.sleep(0.02)
        assert source.keyframes > keyframes, "no keyframe within 1 s of the PLIs"
        await asyncio.sleep(1.0)

        assert tracks["video"].subscriber_keyframe_requests == 10
        # Throttled: ten PLIs in 0.1 s reach the publisher once or twice, not ten times.
        assert 1 <= requester.sent - sent <= 2
        assert source.keyframes - keyframes <= 2
    finally:
        await sub.close()
        await middle.close()
        await publisher.close()


async def test_forwarding_and_decoding_receivers_side_by_side(hook: ForwardingHook) -> None:
    publisher = Publisher({"video": moving_pattern(320, 240, 15), "audio": ToneTrack()})
    pc = RTCPeerConnection()
    found: dict[str, tuple[RTCRtpReceiver, MediaStreamTrack]] = {}
    sources: list[EncodedSource] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
        found[track.kind] = (receiver, track)
        if track.kind == "video":  # audio stays on aiortc's decoder
            sources.append(hook.forward(receiver, label="side-by-side video"))

    try:
        await negotiate(publisher.pc, pc)
        audio_receiver, audio = found["audio"]
        frames = [await asyncio.wait_for(audio.recv(), 10) for _ in range(10)]
        assert all(isinstance(f, av.AudioFrame) for f in frames)
        await asyncio.sleep(0.5)
        (video,) = sources
        assert video.frames > 0 and video.unexpected == 0
        assert video.worker is not None and video.worker.mode == "forward"
        assert hook.decoding_workers == 1 and hook.forwarding_workers == 1

        # Too late for the audio receiver: its thread already decodes. Said, not ignored.
        with pytest.raises(ForwardingError, match="already decodes"):
            hook.forward(audio_receiver, label="late audio")
    finally:
        for source in sources:
            await source.stop()
        await pc.close()
        await publisher.close()
