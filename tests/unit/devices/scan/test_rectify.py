"""Perspective correction: page size and aspect, A4 snapping, deskew."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from devices.scan import PageDetector, ScanConfigError
from devices.scan.detect import Quad, order_corners
from devices.scan.jpeg import decode_jpeg
from devices.scan.rectify import A4_ASPECT, Rectifier, estimate_aspect, estimate_skew
from tests.unit.devices.scan.conftest import SimStills
from tests.unit.devices.scan.scenes import a4_quad, render_page, render_scene

STILL = (2592, 1944)


def skew_of(page: np.ndarray) -> float | None:
    gray = cv2.cvtColor(page, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    return estimate_skew(cv2.resize(gray, (800, round(800 * h / w)), interpolation=cv2.INTER_AREA))


def rotated(corners: np.ndarray, degrees: float) -> np.ndarray:
    center = corners.mean(axis=0)
    t = math.radians(degrees)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return np.asarray((corners - center) @ rot.T + center)


def pinhole_view(tilt: float, yaw: float, ratio: float = A4_ASPECT) -> Quad:
    """Corners of a ``1 x ratio`` page photographed by a 2592x1944 pinhole camera."""
    w, h = 0.21, 0.21 * ratio
    page = np.array(
        [[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0], [w / 2, h / 2, 0], [-w / 2, h / 2, 0]]
    )
    t, y = math.radians(tilt), math.radians(yaw)
    rx = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    points = (rx @ rz @ page.T).T + np.array([0.01, 0.0, 0.55])
    return order_corners(points[:, :2] / points[:, 2:] * 2200 + [1296, 972])


def test_simulator_pages_come_out_a4_at_200_dpi(sim_stills: SimStills) -> None:
    detector, rectifier = PageDetector(), Rectifier(upscale=True)
    for jpeg in sim_stills.sharp.values():
        image = decode_jpeg(jpeg)
        result = rectifier.rectify(image, detector.detect(image).quad)
        h, w = result.image.shape[:2]
        assert (w, h) == (1654, 2339)
        assert h / w == pytest.approx(A4_ASPECT, rel=0.002)
        assert result.snapped_to_a4
        assert result.preview.shape[1] == 800
        assert result.preview.shape[0] == pytest.approx(800 * A4_ASPECT, abs=1)


def test_pages_are_not_upscaled_past_what_the_camera_saw(sim_stills: SimStills) -> None:
    detector, rectifier = PageDetector(), Rectifier()
    for jpeg in sim_stills.sharp.values():
        image = decode_jpeg(jpeg)
        quad = detector.detect(image).quad
        result = rectifier.rectify(image, quad)
        h, w = result.image.shape[:2]
        sides = np.linalg.norm(np.roll(quad.as_array(), -1, axis=0) - quad.as_array(), axis=1)
        assert h == round(float(sides.max())) < 2339  # the long side as the camera saw it
        assert h / w == pytest.approx(A4_ASPECT, rel=0.002)
        assert result.snapped_to_a4
    # A page seen at more than 200 dpi comes out at 200 dpi.
    big = order_corners([(100, 100), (1800, 100), (1800, 2504), (100, 2504)])
    assert Rectifier().output_size(big, (4000, 3000))[:2] == (1654, 2339)


def test_landscape_page_comes_out_landscape() -> None:
    corners = a4_quad(STILL, landscape=True, fill=0.7)
    page = np.ascontiguousarray(cv2.rotate(render_page(), cv2.ROTATE_90_CLOCKWISE))
    scene = render_scene(corners, page=page)
    result = Rectifier(upscale=True).rectify(scene.image, order_corners(corners))
    assert result.image.shape[:2] == (1654, 2339)
    assert result.snapped_to_a4


def test_other_paper_keeps_its_own_aspect() -> None:
    # An ID-card-sized document (85.6 x 54 mm) seen straight down is not A4.
    ratio = 85.6 / 54.0
    quad = order_corners(
        [(1000, 500), (1400, 500), (1400, 500 + 400 * ratio), (1000, 500 + 400 * ratio)]
    )
    width, height, aspect, a4 = Rectifier(upscale=True).output_size(quad, STILL)
    assert not a4
    assert aspect == pytest.approx(ratio, rel=0.01)
    assert height == 2339 and width == round(2339 / ratio)
    # Without upscaling it keeps the camera's 634 px of long side, at the same ratio.
    assert Rectifier().output_size(quad, STILL)[:2] == (400, 634)


@pytest.mark.parametrize(("tilt", "yaw"), [(15, 20), (25, 4), (35, 20), (20, -12)])
def test_perspective_aspect_is_recovered(tilt: float, yaw: float) -> None:
    quad = pinhole_view(tilt, yaw)
    assert estimate_aspect(quad, STILL) == pytest.approx(A4_ASPECT, rel=0.01)
    # The naive ratio of the side lengths would be far off at these angles.
    c = quad.as_array()
    naive = (np.linalg.norm(c[3] - c[0]) + np.linalg.norm(c[2] - c[1])) / (
        np.linalg.norm(c[1] - c[0]) + np.linalg.norm(c[2] - c[3])
    )
    assert abs(naive / A4_ASPECT - 1) > 0.02 or tilt < 20


def test_letter_paper_in_perspective_is_not_taken_for_a4() -> None:
    quad = pinhole_view(25, 15, ratio=11 / 8.5)
    _, _, aspect, a4 = Rectifier().output_size(quad, STILL)
    assert not a4
    assert aspect == pytest.approx(11 / 8.5, rel=0.015)


@pytest.mark.parametrize("skew", [2.5, -1.5])
def test_print_askew_on_the_page_is_straightened(skew: float) -> None:
    corners = a4_quad(STILL, angle=2.0)
    scene = render_scene(corners, page=render_page(skew_degrees=skew))
    result = Rectifier().rectify(scene.image, order_corners(corners))
    assert result.skew_degrees == pytest.approx(skew, abs=0.3)
    residual = skew_of(result.image)
    assert residual is not None and abs(residual) < 0.3


def test_corners_a_little_off_are_straightened_by_deskew() -> None:
    corners = a4_quad(STILL, angle=-3.0)
    scene = render_scene(corners)
    wrong = order_corners(rotated(corners, 1.5))
    result = Rectifier().rectify(scene.image, wrong)
    assert abs(result.skew_degrees) == pytest.approx(1.5, abs=0.3)
    residual = skew_of(result.image)
    assert residual is not None and abs(residual) < 0.3
    # Without deskew the same corners leave the print visibly rotated.
    plain = Rectifier(deskew=False).rectify(scene.image, wrong)
    assert plain.skew_degrees == 0.0
    left_over = skew_of(plain.image)
    assert left_over is not None and abs(left_over) > 1.0


def test_blank_page_has_no_measurable_skew() -> None:
    assert estimate_skew(np.full((1131, 800), 245, np.uint8)) is None


def test_output_size_follows_dpi() -> None:
    quad = order_corners([(500, 100), (1700, 100), (1700, 1800), (500, 1800)])
    assert Rectifier(dpi=300, upscale=True).output_size(quad, STILL)[:2] == (2480, 3508)
    assert Rectifier(dpi=150, upscale=True).output_size(quad, STILL)[:2] == (1240, 1754)
    # The camera saw 1700 px of long side: that, not 300 dpi's 3508.
    assert Rectifier(dpi=300).output_size(quad, STILL)[:2] == (1202, 1700)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"dpi": 20}, "dpi 20 is not in 50..600"),
        ({"a4_tolerance": 0.5}, "a4_tolerance 0.5"),
        ({"trim": 0.2}, "trim 0.2"),
    ],
)
def test_bad_rectifier_options_are_named(options: dict[str, float], match: str) -> None:
    with pytest.raises(ScanConfigError, match=match):
        Rectifier(**options)  # type: ignore[arg-type]
