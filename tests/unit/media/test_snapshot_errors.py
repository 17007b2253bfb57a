"""Snapshots from fake receivers: the picture of one keyframe, and every way of not
getting one said plainly."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from media.recording_errors import SnapshotError
from media.snapshot import take_snapshot
from tests.unit.media.test_recording_recorder import VIDEO, Publisher, vp8_frames


async def test_snapshot_decodes_the_next_keyframe_only() -> None:
    camera = Publisher("video")
    task = asyncio.create_task(take_snapshot(camera.source, name="doccam"))
    await asyncio.sleep(0.01)
    assert len(camera.source.subscribers) == 1 and camera.requests >= 1  # asked for one
    big = vp8_frames(1, {0}, size=(160, 96))
    camera.receiver.push(VIDEO[1], 0)  # a delta frame: not a picture on its own
    camera.receiver.push(big[0], 6000)
    snapshot = await asyncio.wait_for(task, 2)

    assert (snapshot.width, snapshot.height) == (160, 96)
    image = cv2.imdecode(np.frombuffer(snapshot.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (96, 160, 3)
    assert camera.source.subscribers == ()
    await camera.source.stop()


async def test_no_keyframe_in_time_is_an_error_naming_the_source() -> None:
    camera = Publisher("video")
    task = asyncio.create_task(take_snapshot(camera.source, name="doccam", timeout=0.3))
    await asyncio.sleep(0.01)
    for i in range(1, 5):
        camera.receiver.push(VIDEO[i], i * 6000)
    with pytest.raises(SnapshotError, match=r"no picture from doccam within 0\.3 s"):
        await task
    assert camera.source.subscribers == ()
    await camera.source.stop()


async def test_a_source_ending_while_waiting_is_an_error() -> None:
    camera = Publisher("video")
    task = asyncio.create_task(take_snapshot(camera.source))
    await asyncio.sleep(0.01)
    await camera.source.stop()
    with pytest.raises(SnapshotError, match="fake video ended before a picture came"):
        await task


async def test_snapshot_arguments_are_checked() -> None:
    camera = Publisher("video")
    with pytest.raises(ValueError, match=r"jpeg_quality must be 1\.\.100, got 0"):
        await take_snapshot(camera.source, jpeg_quality=0)
    with pytest.raises(ValueError, match="timeout must be positive"):
        await take_snapshot(camera.source, timeout=0)
    await camera.source.stop()
