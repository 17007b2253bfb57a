"""Kiosk screen share: an X display (or one window, or a region of it) as video frames.

API
---
``ScreenCapture(*, name=None, display=":0", fps=10.0, max_size=(1280, 720),
region=None, window_id=None, window_name=None, window_class=None, draw_mouse=True)``
    a :class:`devices.base.Device` of kind ``"screen"``.
    ``region=(x, y, width, height)`` captures that rectangle; ``window_*`` capture the
    kiosk window's rectangle as it is at ``start()`` (see :class:`devices.x11.WindowSpec`);
    neither captures the whole screen. The capture is cut to the screen's edges.
    ``max_size`` caps the output: frames are scaled down (never up) keeping the aspect
    ratio, to even sizes (encoders want them).
    ``start()`` raises ``DeviceNotFoundError`` (no such display or window),
    ``DeviceConfigError`` (region off the screen) or ``DeviceIOError`` (cannot grab).
``source_rect: Rect``, ``size: tuple[int, int]`` (output width, height; after start)
``async frame() -> av.VideoFrame``       yuv420p, the output size, ``pts`` unset
``async bgr_frame() -> np.ndarray``      height x width x 3 BGR (uint8)
``frame_source() -> Callable[[], Awaitable[np.ndarray]]``
    for ``media.tracks.FrameSourceTrack(screen.frame_source(), fps=screen.fps)``
    (``devices`` may not import ``media``, so the caller wraps it).

How it works: FFmpeg's ``x11grab`` input through PyAV, read on demand. It is asked for a
very high frame rate so it never sleeps to pace itself; pacing is the track's job, and
each read grabs the screen as it is now, so a slow consumer gets the latest picture and
never a backlog. Calls closer together than ``1/fps`` get the last frame again instead
of another grab, which bounds the CPU cost on the kiosk PC whoever calls. Grabs and
scaling run in a worker thread, one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.container import InputContainer
from av.video.frame import VideoFrame

from devices.base import Device
from devices.errors import DeviceConfigError, DeviceIOError
from devices.x11 import Rect, WindowSpec, find_window, open_display, screen_rect, window_rect

logger = logging.getLogger(__name__)

BgrImage = npt.NDArray[np.uint8]
# x11grab sleeps to hold its frame rate; a rate no caller reaches means it never does.
_GRAB_RATE = "1000"


def _fit(width: int, height: int, cap: tuple[int, int]) -> tuple[int, int]:
    """Scale (width, height) down to fit ``cap``, keeping the aspect ratio, even sizes."""
    scale = min(1.0, cap[0] / width, cap[1] / height)
    out_w = max(2, int(width * scale) // 2 * 2)
    out_h = max(2, int(height * scale) // 2 * 2)
    return out_w, out_h


class ScreenCapture(Device):
    """The kiosk's screen (or its window) as frames; see the module docstring."""

    kind = "screen"

    def __init__(
        self,
        *,
        name: str | None = None,
        display: str = ":0",
        fps: float = 10.0,
        max_size: tuple[int, int] = (1280, 720),
        region: tuple[int, int, int, int] | None = None,
        window_id: int | None = None,
        window_name: str | None = None,
        window_class: str | None = None,
        draw_mouse: bool = True,
    ) -> None:
        super().__init__(name=name)
        if not fps > 0:
            raise DeviceConfigError(f"fps {fps!r} must be positive", field="fps")
        if len(max_size) != 2 or min(max_size) < 2:
            raise DeviceConfigError(f"max_size {max_size!r} must be (width, height) >= 2",
                                    field="max_size")
        self._window: WindowSpec | None = None
        if window_id is not None or window_name is not None or window_class is not None:
            if region is not None:
                raise DeviceConfigError("give a region or a window, not both", field="region")
            self._window = WindowSpec(window_id, window_name, window_class)
        if region is not None and (len(region) != 4 or region[2] < 2 or region[3] < 2):
            raise DeviceConfigError(
                f"region {region!r} must be (x, y, width, height) of at least 2x2",
                field="region",
            )
        self._display = display
        self._fps = float(fps)
        self._max_size = (int(max_size[0]), int(max_size[1]))
        self._region = Rect(*region) if region is not None else None
        self._draw_mouse = draw_mouse
        self._container: InputContainer | None = None
        self._source: Rect | None = None
        self._size: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._grabbed: VideoFrame | None = None
        self._grabbed_at = 0.0
        self._converted: dict[str, VideoFrame] = {}

    @property
    def display(self) -> str:
        return self._display

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def source_rect(self) -> Rect:
        self.require_started("read the capture rectangle")
        if self._source is None:  # pragma: no cover - set by start
            raise DeviceIOError("screen capture has no source")
        return self._source

    @property
    def size(self) -> tuple[int, int]:
        """Output (width, height)."""
        self.require_started("read the frame size")
        if self._size is None:  # pragma: no cover - set by start
            raise DeviceIOError("screen capture has no size")
        return self._size

    async def _start(self) -> None:
        await asyncio.to_thread(self._open)

    def _resolve_rect(self) -> Rect:
        display = open_display(self._display)
        try:
            screen = screen_rect(display)
            if self._window is not None:
                wanted = window_rect(display, find_window(display, self._window))
                what = f"window ({self._window.describe()})"
            elif self._region is not None:
                wanted, what = self._region, f"region {self._region}"
            else:
                return screen
        finally:
            display.close()
        rect = wanted.intersect(screen)
        if rect is None or rect.width < 2 or rect.height < 2:
            raise DeviceConfigError(
                f"{what} at {wanted.x},{wanted.y} {wanted.width}x{wanted.height} is off the "
                f"{screen.width}x{screen.height} screen of {self._display!r}"
            )
        return rect

    def _open(self) -> None:
        rect = self._resolve_rect()
        options = {
            "framerate": _GRAB_RATE,
            "video_size": f"{rect.width}x{rect.height}",
            "grab_x": str(rect.x),
            "grab_y": str(rect.y),
            "draw_mouse": "1" if self._draw_mouse else "0",
            # Stream probing keeps the frames it read and would hand them out first:
            # stale pictures. Don't buffer them; one packet is enough to probe raw video.
            "fflags": "nobuffer",
            "probesize": "32",
            "analyzeduration": "0",
        }
        try:
            container = av.open(self._display, format="x11grab", options=options)
        except (av.error.FFmpegError, OSError) as err:
            raise DeviceIOError(f"cannot grab X display {self._display!r}: {err}") from err
        self._container = container
        self._source = rect
        self._size = _fit(rect.width, rect.height, self._max_size)
        self._grabbed = None
        self._converted = {}
        logger.info(
            "screen %s: grabbing %dx%d at %d,%d of %s, sending %dx%d",
            self.name, rect.width, rect.height, rect.x, rect.y, self._display, *self._size,
        )

    async def _stop(self) -> None:
        def close() -> None:
            with self._lock:
                container, self._container = self._container, None
                self._grabbed = None
                self._converted = {}
                if container is not None:
                    container.close()

        await asyncio.to_thread(close)

    def _grab(self, pix_fmt: str) -> VideoFrame:
        with self._lock:
            container = self._container
            if container is None:
                raise DeviceIOError(f"screen {self.name!r} was stopped")
            now = time.monotonic()
            if self._grabbed is None or now - self._grabbed_at >= 1.0 / self._fps:
                self._grabbed = self._read(container)
                self._grabbed_at = now
                self._converted = {}
            frame = self._converted.get(pix_fmt)
            if frame is None:
                width, height = self._size or (self._grabbed.width, self._grabbed.height)
                frame = self._grabbed.reformat(width=width, height=height, format=pix_fmt)
                self._converted[pix_fmt] = frame
            return frame

    def _read(self, container: InputContainer) -> VideoFrame:
        try:
            for packet in container.demux(video=0):
                for frame in packet.decode():
                    if isinstance(frame, VideoFrame):
                        return frame
        except (av.error.FFmpegError, OSError) as err:
            raise DeviceIOError(f"grabbing X display {self._display!r} failed: {err}") from err
        raise DeviceIOError(f"X display {self._display!r} stopped sending frames")

    async def frame(self) -> VideoFrame:
        """The screen now (or as of less than ``1/fps`` ago), yuv420p at the output size."""
        self.require_started("grab a frame")
        return await asyncio.to_thread(self._grab, "yuv420p")

    async def bgr_frame(self) -> BgrImage:
        """The screen now as a BGR array (for ``FrameSourceTrack``)."""
        self.require_started("grab a frame")
        frame = await asyncio.to_thread(self._grab, "bgr24")
        return np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)

    def frame_source(self) -> Callable[[], Awaitable[BgrImage]]:
        """The function a ``FrameSourceTrack`` pulls frames from."""
        return self.bgr_frame
