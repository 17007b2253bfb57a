"""The whole pipeline on simulator stills: results, modes, errors, speed, the event loop."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import pytest

from devices.errors import DeviceConfigError, DeviceError
from devices.scan import (
    InvalidImageError,
    PageNotFoundError,
    RetakeReason,
    ScanConfigError,
    ScanError,
    ScanMode,
    ScanPipeline,
)
from devices.scan.jpeg import read_jpeg_info
from tests.unit.devices.scan.conftest import SimStills, capture
from tests.unit.devices.scan.scenes import desk, encode


def decode(jpeg: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags)
    assert image is not None
    return image


def test_colour_scan_of_a_sharp_still(sim_stills: SimStills, blur_threshold: float) -> None:
    still = sim_stills.sharp[3]
    result = ScanPipeline(blur_threshold=blur_threshold).process(still, label="case 1 page 1")
    assert result.original is still
    assert result.mode is ScanMode.COLOR
    # A4 at the camera's own resolution (it sees the page at fewer than 200 dpi).
    assert result.snapped_to_a4
    assert result.height / result.width == pytest.approx(2**0.5, rel=0.002)
    assert 1100 < result.width < 1654
    page = decode(result.jpeg)
    assert page.shape == (result.height, result.width, 3)
    assert not result.needs_retake and result.reasons == () and result.messages == ()
    # Corners are in still pixels, clockwise from the top-left, around the centre.
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = result.corners
    assert x0 < x1 and x3 < x2 and y0 < y3 and y1 < y2
    assert 0 <= min(x0, x3) and max(x1, x2) <= 2592 and 0 <= min(y0, y1) and max(y2, y3) <= 1944
    assert set(result.timings) >= {"decode", "detect", "rectify", "quality", "enhance", "total"}
    # Paper comes out white and the repr shows no content.
    assert float(np.median(page)) >= 250
    assert "bytes" in repr(result) and "retake=none" in repr(result)


def test_black_and_white_scan_is_binary(sim_stills: SimStills) -> None:
    result = ScanPipeline(mode="bw").process(sim_stills.sharp[0])
    assert result.mode is ScanMode.BW
    assert read_jpeg_info(result.jpeg).components == 1  # a grey JPEG, not colour
    page = decode(result.jpeg)
    assert page.shape == (result.height, result.width)
    # JPEG rounds the edges a little; otherwise every pixel is black or white.
    extreme = (page <= 40) | (page >= 215)
    assert extreme.mean() > 0.98
    assert 0.01 < (page <= 40).mean() < 0.25


def test_blurred_and_glare_stills_ask_for_a_retake(
    sim_stills: SimStills, blur_threshold: float
) -> None:
    pipeline = ScanPipeline(blur_threshold=blur_threshold)
    blurred = pipeline.process(sim_stills.blurred[4])
    assert blurred.reasons == (RetakeReason.BLUR,)
    assert blurred.messages[0].startswith("画面模糊")
    glare = pipeline.process(sim_stills.glare[4])
    assert glare.reasons == (RetakeReason.GLARE,)
    assert "反光" in glare.messages[0]
    # The page is still processed, so the kiosk can show what went wrong.
    assert decode(glare.jpeg).shape == (glare.height, glare.width, 3)


async def test_process_async_leaves_the_event_loop_free(sim_stills: SimStills) -> None:
    pipeline = ScanPipeline()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        result = await pipeline.process_async(sim_stills.sharp[1], label="case 7")
    finally:
        task.cancel()
    assert result.snapped_to_a4
    # Blocking the loop for the whole still would leave the ticker at 0 or 1.
    assert ticks >= 3, ticks


async def test_concurrent_stills_on_one_pipeline(sim_stills: SimStills) -> None:
    pipeline = ScanPipeline(mode="bw")
    stills = [sim_stills.sharp[0], sim_stills.sharp[1]]
    results = await asyncio.gather(*(pipeline.process_async(s) for s in stills))
    assert [r.original for r in results] == stills
    assert results[0].jpeg != results[1].jpeg


async def test_calibrate_async_and_fresh_camera_stills() -> None:
    stills = [await capture(seed) for seed in (7, 8)]
    calibration = await ScanPipeline().calibrate_async(stills)
    assert calibration.samples == 2 and calibration.threshold > 0


def test_cpu_time_per_still_is_well_under_a_second(sim_stills: SimStills) -> None:
    """CPU seconds, not wall time: the figure must not depend on other load on the box."""
    pipeline = ScanPipeline()
    pipeline.process(sim_stills.sharp[0])  # warm up OpenCV's thread pool and caches
    runs = []
    for jpeg in (sim_stills.sharp[1], sim_stills.sharp[2], sim_stills.glare[1]):
        started = time.process_time()
        pipeline.process(jpeg)
        runs.append(time.process_time() - started)
    assert sorted(runs)[1] < 0.8, runs


def test_no_page_in_the_still_raises_page_not_found() -> None:
    with pytest.raises(PageNotFoundError, match="no page found in the 2592x1944 still"):
        ScanPipeline().process(encode(desk((2592, 1944))))


def test_corrupt_jpeg_raises_a_named_scan_error(sim_stills: SimStills) -> None:
    good = sim_stills.sharp[0]
    cases = {
        b"": "image is empty",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 64: "it is a PNG image",
        b"hello world": "it starts with 68 65 6c 6c",
        good[: len(good) // 2]: "JPEG is truncated",
        good[:40]: "JPEG is truncated",
        b"\xff\xd8\xff\xda" + b"\0" * 32: "before any frame header",
    }
    for data, message in cases.items():
        with pytest.raises(InvalidImageError, match=message) as info:
            ScanPipeline().process(data)
        assert isinstance(info.value, ScanError) and isinstance(info.value, DeviceError)
        assert info.value.code == "scan_invalid_image"


def test_scrambled_scan_data_never_passes_for_a_page(sim_stills: SimStills) -> None:
    good = bytearray(sim_stills.sharp[0])
    # Keep the headers, replace the entropy-coded data with noise. libjpeg decodes it
    # anyway (it only warns on stderr), so what stops it is that no page is in it.
    start = bytes(good).index(b"\xff\xda")
    noise = np.random.default_rng(1).integers(0, 255, len(good) - start - 100, np.uint8)
    good[start + 20 : start + 20 + len(noise)] = noise.tobytes().replace(b"\xff", b"\xfe")
    with pytest.raises((PageNotFoundError, InvalidImageError)):
        ScanPipeline().process(bytes(good))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mode": "sepia"}, "scan mode 'sepia' is not one of 'color', 'bw'"),
        ({"jpeg_quality": 0}, "jpeg_quality 0"),
        ({"blur_threshold": -5.0}, "blur_threshold -5.0"),
        ({"dpi": 10}, "dpi 10"),
    ],
)
def test_bad_pipeline_options_are_named(options: dict[str, object], match: str) -> None:
    with pytest.raises(ScanConfigError, match=match) as info:
        ScanPipeline(**options)  # type: ignore[arg-type]
    assert isinstance(info.value, DeviceConfigError)
