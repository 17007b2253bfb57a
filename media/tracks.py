"""Local tracks made from a frame source (the kiosk's document camera preview)."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Awaitable, Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

VIDEO_CLOCK = 90000

FrameSource = Callable[[], Awaitable[np.ndarray]]
"""Returns the next BGR frame (height × width × 3, uint8)."""


class FrameSourceTrack(MediaStreamTrack):
    """A video track pacing frames from ``source`` at ``fps``."""

    kind = "video"

    def __init__(self, source: FrameSource, fps: float = 10.0) -> None:
        super().__init__()
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self._source = source
        self._period = 1.0 / fps
        self._start: float | None = None
        self._next = 0.0
        self.frames = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
            self._next = now
        else:
            self._next += self._period
            if self._next > now:
                await asyncio.sleep(self._next - now)
            else:
                self._next = now  # fell behind: don't burst to catch up
        image = await self._source()
        frame = VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = int((time.monotonic() - self._start) * VIDEO_CLOCK)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.frames += 1
        return frame
