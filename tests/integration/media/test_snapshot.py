"""Snapshots of a live forwarded track, with real aiortc peers: the hub decodes exactly
one keyframe, requested from the publisher, and hands back a JPEG."""

from __future__ import annotations

import time

import av
import cv2
import numpy as np
import pytest

from media.forwarding import ForwardingHook
from media.recording_errors import SnapshotError
from media.snapshot import take_snapshot
from tests.integration.media.peers import Middle, Publisher, ToneTrack, moving_pattern
from tests.integration.media.test_recording import flowing


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_snapshot_of_a_live_camera_is_a_jpeg_of_its_picture(
        hook: ForwardingHook, codec: str) -> None:
    if codec == "H264" and "libx264" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx264 encoder")
    publisher = Publisher({"video": moving_pattern(320, 240, 15), "audio": ToneTrack()},
                          codec=codec)
    middle = Middle(hook, codec=codec)
    try:
        sources = await middle.accept(publisher)
        video = sources["video"]
        await flowing({"video": video}, frames=30)  # well past the first keyframe
        keyframes = video.keyframes

        started = time.monotonic()
        snapshot = await take_snapshot(video, name="camera")
        elapsed = time.monotonic() - started

        assert elapsed < 1.0, elapsed
        assert video.keyframes > keyframes  # it asked the publisher for a fresh one
        assert (snapshot.width, snapshot.height) == (320, 240)
        assert snapshot.jpeg.startswith(b"\xff\xd8")
        image = decode_jpeg(snapshot.jpeg)
        assert image.shape == (240, 320, 3)
        # The publisher's gradient: dark on the left, bright on the right.
        assert image[:, :40, 0].mean() + 100 < image[:, -40:, 0].mean()
        assert video.subscribers == ()  # unsubscribed

        smaller = await take_snapshot(video, jpeg_quality=20)
        assert len(smaller.jpeg) < len(snapshot.jpeg)
    finally:
        await middle.close()
        await publisher.close()


async def test_snapshot_of_audio_or_an_ended_source_says_why(hook: ForwardingHook) -> None:
    publisher = Publisher({"video": moving_pattern(320, 240, 15), "audio": ToneTrack()})
    middle = Middle(hook)
    try:
        sources = await middle.accept(publisher)
        with pytest.raises(SnapshotError, match="mic is audio, not video"):
            await take_snapshot(sources["audio"], name="mic")
        await sources["video"].stop()
        with pytest.raises(SnapshotError, match="camera has ended"):
            await take_snapshot(sources["video"], name="camera")
    finally:
        await middle.close()
        await publisher.close()
