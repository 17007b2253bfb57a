"""Kiosk screen share against a real Xvfb: frames show the kiosk window where it is."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from av.video.frame import VideoFrame

from devices.errors import DeviceConfigError, DeviceError, DeviceNotFoundError, DeviceStateError
from devices.screen import ScreenCapture
from media.tracks import FrameSourceTrack
from tests.unit.devices.xvfb import BLUE, GREEN, RED, ProbeWindow, XServer, requires_xvfb, xvfb

pytestmark = requires_xvfb

BGR_RED, BGR_BLUE, BGR_GREEN = (0, 0, 255), (255, 0, 0), (0, 255, 0)


@pytest.fixture
def server() -> Iterator[XServer]:
    with xvfb(640, 480) as x:
        yield x


@pytest.fixture
def windows(server: XServer) -> Iterator[tuple[ProbeWindow, ProbeWindow]]:
    kiosk = ProbeWindow(server.display, 100, 50, 200, 150, colour=RED, name="kiosk",
                        wm_class=("vwindow-kiosk", "VWindowKiosk"))
    other = ProbeWindow(server.display, 300, 50, 200, 150, colour=BLUE, name="other")
    yield kiosk, other
    kiosk.close()
    other.close()


def colour_at(image: np.ndarray, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in image[y, x])


async def test_full_screen_frames_show_each_window_where_it_is(
    server: XServer, windows: tuple[ProbeWindow, ProbeWindow]
) -> None:
    async with ScreenCapture(display=server.display, max_size=(640, 480)) as screen:
        assert screen.size == (640, 480)
        image = await screen.bgr_frame()
        assert image.shape == (480, 640, 3)
        assert colour_at(image, 200, 125) == BGR_RED  # inside the kiosk window
        assert colour_at(image, 400, 125) == BGR_BLUE  # inside the other one
        assert colour_at(image, 50, 300) == (0, 0, 0)  # bare root window
        assert colour_at(image, 99, 125) == (0, 0, 0)  # one pixel left of the kiosk
        frame = await screen.frame()
        assert isinstance(frame, VideoFrame)
        assert (frame.width, frame.height, frame.format.name) == (640, 480, "yuv420p")


async def test_size_cap_scales_down_keeping_the_aspect_ratio(
    server: XServer, windows: tuple[ProbeWindow, ProbeWindow]
) -> None:
    async with ScreenCapture(display=server.display, max_size=(320, 320)) as screen:
        assert screen.size == (320, 240)
        image = await screen.bgr_frame()
        assert image.shape == (240, 320, 3)
        assert colour_at(image, 100, 62) == BGR_RED
        assert colour_at(image, 200, 62) == BGR_BLUE


async def test_window_capture_is_exactly_the_kiosk_window(
    server: XServer, windows: tuple[ProbeWindow, ProbeWindow]
) -> None:
    async with ScreenCapture(display=server.display, window_class="vwindow-kiosk") as screen:
        assert (screen.source_rect.x, screen.source_rect.y) == (100, 50)
        assert screen.size == (200, 150)
        image = await screen.bgr_frame()
        assert image.shape == (150, 200, 3)
        assert (image == np.array(BGR_RED, dtype=np.uint8)).all()


async def test_region_capture_and_the_screen_edge(
    server: XServer, windows: tuple[ProbeWindow, ProbeWindow]
) -> None:
    async with ScreenCapture(display=server.display, region=(300, 50, 200, 150)) as screen:
        image = await screen.bgr_frame()
        assert (image == np.array(BGR_BLUE, dtype=np.uint8)).all()
    # A region hanging off the right edge is cut to the screen, not refused.
    async with ScreenCapture(display=server.display, region=(600, 0, 100, 100)) as screen:
        assert screen.size == (40, 100)


async def test_each_frame_is_the_screen_now_not_a_backlog(
    server: XServer, windows: tuple[ProbeWindow, ProbeWindow]
) -> None:
    kiosk, _ = windows
    async with ScreenCapture(display=server.display, fps=50, window_name="kiosk") as screen:
        for _ in range(5):
            assert colour_at(await screen.bgr_frame(), 10, 10) == BGR_RED
        kiosk.paint(GREEN)
        await asyncio.sleep(0.05)  # more than 1/fps: the next call grabs again
        assert colour_at(await screen.bgr_frame(), 10, 10) == BGR_GREEN


async def test_frame_source_feeds_a_media_track(
    server: XServer, windows: tuple[ProbeWindow, ProbeWindow]
) -> None:
    async with ScreenCapture(display=server.display, fps=20, max_size=(320, 240)) as screen:
        track = FrameSourceTrack(screen.frame_source(), fps=screen.fps)
        try:
            first = await track.recv()
            second = await track.recv()
        finally:
            track.stop()
        assert (first.width, first.height) == (320, 240)
        assert second.pts is not None and first.pts is not None and second.pts > first.pts


async def test_missing_window_is_named(server: XServer) -> None:
    screen = ScreenCapture(display=server.display, window_name="no-such-kiosk")
    with pytest.raises(DeviceNotFoundError, match="no-such-kiosk"):
        await screen.start()
    assert not screen.started


async def test_missing_display_is_named() -> None:
    screen = ScreenCapture(display=":4093")
    with pytest.raises(DeviceError, match=":4093"):
        await screen.start()


async def test_region_off_the_screen_is_refused(server: XServer) -> None:
    screen = ScreenCapture(display=server.display, region=(700, 500, 100, 100))
    with pytest.raises(DeviceConfigError, match="off the 640x480 screen"):
        await screen.start()


async def test_frames_before_start_are_a_state_error() -> None:
    screen = ScreenCapture(display=":4093")
    with pytest.raises(DeviceStateError, match="'new'"):
        await screen.frame()


def test_bad_options_are_refused() -> None:
    with pytest.raises(DeviceConfigError, match="fps"):
        ScreenCapture(fps=0)
    with pytest.raises(DeviceConfigError, match="not both"):
        ScreenCapture(region=(0, 0, 10, 10), window_name="kiosk")
    with pytest.raises(DeviceConfigError, match="region"):
        ScreenCapture(region=(0, 0, 1, 10))
