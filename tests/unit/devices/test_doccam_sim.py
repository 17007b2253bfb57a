"""Simulated document camera: real JPEG stills, cheap preview frames, options."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from devices.doccam import Size, Still
from devices.errors import DeviceConfigError
from devices.qr import decode_codes
from devices.sim.doccam import SimulatedDocumentCamera


def decode(still: Still) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(still.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "still is not a decodable JPEG"
    return image


def sharpness(still: Still) -> float:
    """Laplacian variance at a fixed scale, as the scan pipeline measures it."""
    gray = cv2.cvtColor(decode(still), cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, (1024, 768), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


@pytest.fixture
async def camera() -> AsyncIterator[SimulatedDocumentCamera]:
    cam = SimulatedDocumentCamera(seed=11)
    await cam.start()
    yield cam
    await cam.stop()


async def test_still_is_full_resolution_jpeg(camera: SimulatedDocumentCamera) -> None:
    still = await camera.capture_still()
    assert still.jpeg[:2] == b"\xff\xd8"
    assert (still.width, still.height) == (2592, 1944) == camera.still_size
    image = decode(still)
    assert image.shape == (1944, 2592, 3)
    assert still.captured_at.tzinfo is not None
    assert "bytes" in repr(still) and str(len(still.jpeg)) in repr(still)


async def test_consecutive_stills_differ(camera: SimulatedDocumentCamera) -> None:
    first = await camera.capture_still()
    second = await camera.capture_still()
    assert first.jpeg != second.jpeg
    diff = cv2.absdiff(decode(first), decode(second))
    assert float(diff.mean()) > 0.5
    assert camera.pages_captured == 2


async def test_preview_frame_shape_and_dtype(camera: SimulatedDocumentCamera) -> None:
    frame = await camera.preview_frame()
    assert camera.preview_size == Size(640, 480)
    assert frame.shape == (480, 640, 3)
    assert frame.dtype == np.uint8
    # The page is in view: a bright region in the middle, darker desk at the edges.
    assert frame[200:280, 280:360].mean() > frame[:, :20].mean() + 40


async def test_preview_frames_change_and_are_cheap(camera: SimulatedDocumentCamera) -> None:
    frames = [await camera.preview_frame() for _ in range(5)]
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])
    start = time.perf_counter()
    for _ in range(50):
        await camera.preview_frame()
    per_frame = (time.perf_counter() - start) / 50
    assert per_frame < 0.01, f"preview frame took {per_frame * 1000:.1f} ms"


async def test_preview_frame_is_a_fresh_array(camera: SimulatedDocumentCamera) -> None:
    frame = await camera.preview_frame()
    frame[:] = 0
    assert (await camera.preview_frame()).mean() > 10


async def test_blur_lowers_laplacian_variance() -> None:
    sharp = SimulatedDocumentCamera(seed=5)
    blurred = SimulatedDocumentCamera(seed=5, blur=True)
    async with sharp, blurred:
        sharp_var = sharpness(await sharp.capture_still())
        blurred_var = sharpness(await blurred.capture_still())
    assert blurred_var < sharp_var / 4, (sharp_var, blurred_var)


async def test_glare_adds_saturated_highlight() -> None:
    plain = SimulatedDocumentCamera(seed=5)
    glare = SimulatedDocumentCamera(seed=5, glare=True)
    async with plain, glare:
        plain_img = decode(await plain.capture_still())
        glare_img = decode(await glare.capture_still())
    saturated = (cv2.cvtColor(glare_img, cv2.COLOR_BGR2GRAY) >= 250).mean()
    plain_saturated = (cv2.cvtColor(plain_img, cv2.COLOR_BGR2GRAY) >= 250).mean()
    assert saturated > plain_saturated + 0.005


async def test_same_seed_same_scene_other_seed_other_scene() -> None:
    small = {"still_size": (640, 480), "preview_size": (320, 240)}
    a = SimulatedDocumentCamera(seed=1, **small)
    b = SimulatedDocumentCamera(seed=1, **small)
    c = SimulatedDocumentCamera(seed=2, **small)
    async with a, b, c:
        sa, sb, sc = (await a.capture_still(), await b.capture_still(), await c.capture_still())
    assert sa.jpeg == sb.jpeg
    assert sa.jpeg != sc.jpeg


async def test_clock_sets_captured_at() -> None:
    moment = datetime(2024, 5, 20, 8, 30, tzinfo=UTC)
    cam = SimulatedDocumentCamera(still_size=(320, 240), clock=lambda: moment)
    async with cam:
        still = await cam.capture_still()
    assert still.captured_at == moment


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"still_size": (10, 10)}, "still_size 10x10"),
        ({"preview_size": (0, 480)}, "preview_size 0x480"),
        ({"jpeg_quality": 0}, "jpeg_quality 0"),
    ],
)
def test_bad_options_are_named(options: dict[str, object], match: str) -> None:
    with pytest.raises(DeviceConfigError, match=match):
        SimulatedDocumentCamera(**options)  # type: ignore[arg-type]


async def test_printed_qr_code_reads_back_from_a_still() -> None:
    camera = SimulatedDocumentCamera(seed=2, qr_text="91340100MA2N123456")
    async with camera:
        still = await camera.capture_still()
    image = cv2.imdecode(np.frombuffer(still.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert [c.text for c in decode_codes(image)] == ["91340100MA2N123456"]
