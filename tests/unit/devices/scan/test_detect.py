"""Page detection: corners against ground truth, ordering, and stills with no page."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from devices.errors import DeviceError
from devices.scan import PageDetector, PageNotFoundError, RetakeReason, ScanConfigError
from devices.scan.detect import order_corners
from devices.scan.jpeg import decode_jpeg
from devices.scan.rectify import Rectifier
from tests.unit.devices.scan.conftest import SimStills
from tests.unit.devices.scan.scenes import a4_quad, desk, render_page, render_scene

STILL = (2592, 1944)


def corner_error(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(found - truth, axis=1).max())


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("typical", {"corners": a4_quad(STILL)}),
        ("turned 12 deg", {"corners": a4_quad(STILL, angle=12, fill=0.75)}),
        ("turned -8 deg", {"corners": a4_quad(STILL, angle=-8, fill=0.8, shift=(-0.1, 0))}),
        ("small and off-centre", {"corners": a4_quad(STILL, fill=0.45, shift=(0.2, 0.1))}),
        ("light grey desk", {"corners": a4_quad(STILL), "desk_color": (190, 195, 200)}),
        ("deep shadow", {"corners": a4_quad(STILL), "shadow": 0.55}),
        ("out of focus", {"corners": a4_quad(STILL), "blur": 4.0}),
        ("1080p camera", {"corners": a4_quad((1920, 1080), fill=0.9), "size": (1920, 1080)}),
        ("8 MP camera", {"corners": a4_quad((3264, 2448)), "size": (3264, 2448)}),
    ],
)
def test_corners_match_the_rendered_page(name: str, options: dict[str, object]) -> None:
    scene = render_scene(**options)  # type: ignore[arg-type]
    detection = PageDetector().detect(decode_jpeg(scene.jpeg))
    error = corner_error(detection.quad.as_array(), scene.corners)
    assert error < 2.5, f"{name}: corners off by {error:.2f} px"


def test_landscape_page_corners() -> None:
    corners = a4_quad(STILL, landscape=True, fill=0.7)
    page = np.ascontiguousarray(cv2.rotate(render_page(), cv2.ROTATE_90_CLOCKWISE))
    scene = render_scene(corners, page=page)
    quad = PageDetector().detect(scene.image).quad
    assert corner_error(quad.as_array(), corners) < 2.5


def test_simulator_pages_are_found_whole(sim_stills: SimStills) -> None:
    """The simulator keeps its corners private; check what a user would see instead:
    the rectified page shows paper right to its edges and no wooden desk."""
    detector, rectifier = PageDetector(), Rectifier(deskew=False)
    stills = [*sim_stills.sharp.values(), *sim_stills.blurred.values(), *sim_stills.glare.values()]
    for jpeg in stills:
        image = decode_jpeg(jpeg)
        detection = detector.detect(image)
        assert 0.25 < detection.area_fraction < 0.6
        page = rectifier.rectify(image, detection.quad).image
        hsv = cv2.cvtColor(page, cv2.COLOR_BGR2HSV)
        w = page.shape[1]
        band = max(3, w // 200)  # about 1 mm of paper on each side
        ring = np.concatenate(
            [
                hsv[:band].reshape(-1, 3),
                hsv[-band:].reshape(-1, 3),
                hsv[:, :band].reshape(-1, 3),
                hsv[:, -band:].reshape(-1, 3),
            ]
        )
        # The desk is a saturated brown (S ~ 150); paper, even in shadow, is not.
        assert float(np.percentile(ring[:, 1], 95)) < 60, "desk visible at the page edge"


def test_simulator_page_is_upright(sim_stills: SimStills) -> None:
    image = decode_jpeg(sim_stills.sharp[0])
    page = Rectifier().rectify(image, PageDetector().detect(image).quad).image
    gray = cv2.cvtColor(page, cv2.COLOR_BGR2GRAY)
    h = gray.shape[0]
    title_band = gray[int(0.06 * h) : int(0.1 * h)]  # the form's title sits here
    top_margin = gray[int(0.01 * h) : int(0.04 * h)]
    assert (title_band < 100).mean() > 0.02
    assert (top_margin < 100).mean() < 0.002


NO_PAGE = {
    "bare desk": lambda: desk(STILL),
    "coarse grain desk": lambda: desk(STILL, seed=5, grain=0.15),
    "light desk": lambda: desk(STILL, color=(200, 200, 205)),
    "sensor noise": lambda: np.random.default_rng(0).integers(0, 256, (1944, 2592, 3), np.uint8),
    "grey card": lambda: np.full((1944, 2592, 3), 128, np.uint8),
    "white wall": lambda: np.full((1944, 2592, 3), 250, np.uint8),
    "page bigger than the frame": lambda: render_scene(a4_quad(STILL, fill=1.1)).image,
    "page cut by the right edge": lambda: render_scene(a4_quad(STILL, shift=(0.4, 0))).image,
    "page too far away": lambda: render_scene(a4_quad(STILL, fill=0.2)).image,
}


@pytest.mark.parametrize("name", sorted(NO_PAGE))
def test_no_page_raises_page_not_found(name: str) -> None:
    image = NO_PAGE[name]()
    with pytest.raises(PageNotFoundError, match=r"no page found in the \d+x\d+ still") as info:
        PageDetector().detect(image)
    assert isinstance(info.value, DeviceError)
    assert info.value.retake_reason is RetakeReason.NO_PAGE
    assert info.value.code == "scan_page_not_found"


def test_order_corners_from_any_permutation() -> None:
    truth = a4_quad(STILL, angle=25)
    for perm in itertools.permutations(range(4)):
        quad = order_corners(truth[list(perm)])
        assert np.allclose(quad.as_array(), truth, atol=1e-3), perm


def test_order_corners_is_clockwise_from_top_left() -> None:
    quad = order_corners([(100, 900), (900, 100), (100, 100), (900, 900)])
    assert list(quad) == [(100, 100), (900, 100), (900, 900), (100, 900)]
    assert quad.area == pytest.approx(800 * 800)
    assert quad.scaled(0.5).top_right == (450, 50)


def test_order_corners_needs_four_points() -> None:
    with pytest.raises(ScanConfigError, match="4 corners, got 3"):
        order_corners([(0, 0), (1, 0), (1, 1)])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"work_size": 100}, "work_size 100"),
        ({"min_area_fraction": 0.5, "max_area_fraction": 0.4}, "area fractions 0.5..0.4"),
    ],
)
def test_bad_detector_options_are_named(options: dict[str, float], match: str) -> None:
    with pytest.raises(ScanConfigError, match=match):
        PageDetector(**options)  # type: ignore[arg-type]
