"""Perspective correction: from the page's four corners to an upright, deskewed page.

API
---
``A4_ASPECT = sqrt(2)``   height / width of ISO A-series paper
``Rectified`` frozen dataclass ``(image, matrix, aspect, snapped_to_a4, skew_degrees,
preview)``; ``matrix`` maps still pixels to page pixels (3x3, deskew included);
    ``preview`` is the page shrunk to ``PREVIEW_WIDTH`` (800) pixels wide, for the
    quality gates and the code reader.
``preview_of(page, width=PREVIEW_WIDTH) -> BgrImage``
``Rectifier(*, dpi=200, upscale=False, a4_tolerance=0.06, deskew=True,
max_skew_degrees=5.0, trim=0.004)``
    ``rectify(image: BgrImage, quad: Quad) -> Rectified``
    ``output_size(quad, image_size) -> tuple[int, int, float, bool]``  ``(w, h, aspect, a4)``
``estimate_aspect(quad, image_size) -> float``   best height / width of the real page
``aspect_estimates(quad, image_size) -> tuple[float, ...]``   every estimator's figure
``estimate_skew(gray) -> float | None``   text-line angle in degrees (positive: lines fall
    to the right, i.e. clockwise on screen), ``None`` when there is too little text

The page's real aspect ratio is recovered from the perspective (Zhang & He, "Whiteboard
scanning and image enhancement", 2007: the focal length follows from the vanishing
geometry, the principal point is assumed at the image centre); when the view is too
close to straight-down for that to be stable, the mean side lengths are used. When any
estimate (perspective, mean sides, longest sides) is within ``a4_tolerance`` of sqrt(2)
(either orientation) the page is taken as A4 -- the common case -- and comes
out at ``dpi`` (200 dpi -> 1654 x 2339); other pages keep their ratio at the same long
side. ``dpi`` is a ceiling: when the camera saw the page's long side at fewer pixels
than that, the page comes out at the camera's own resolution (same shape), because
upscaling adds time and bytes but no detail (a 4K document camera sees an A4 page at
about 160 dpi); ``upscale=True`` always gives the ``dpi`` size. The PDF places every
page on A4 whatever its pixel count. ``trim`` shaves a sliver off each edge so a corner
a pixel off shows no desk.

Residual rotation (a page printed askew, corners a little off) is measured from the
text lines of a small (400 px wide) preview warp: print is binarised, smeared along
the lines, and
the ``minAreaRect`` angles of the long blobs are combined by a length-weighted median.
The correction is folded into the perspective matrix so the still is resampled once.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from devices.scan.detect import Quad
from devices.scan.errors import ScanConfigError
from devices.scan.imaging import BgrImage, GrayImage, resize, u8

logger = logging.getLogger(__name__)

Matrix = npt.NDArray[np.float64]

A4_ASPECT: Final = math.sqrt(2.0)
_A4_MM: Final = (210.0, 297.0)
PREVIEW_WIDTH: Final = 800  # the small page the quality gates and the code reader use
_SKEW_WIDTH: Final = 400  # width of the warp the skew is measured on
_MIN_LINES: Final = 4


@dataclass(frozen=True, slots=True)
class Rectified:
    image: BgrImage
    matrix: Matrix
    aspect: float
    snapped_to_a4: bool
    skew_degrees: float
    preview: BgrImage

    def __repr__(self) -> str:
        h, w = self.image.shape[:2]
        return (
            f"Rectified({w}x{h}, aspect={self.aspect:.3f}, a4={self.snapped_to_a4}, "
            f"skew={self.skew_degrees:.2f})"
        )


def _perspective_aspect(quad: Quad, image_size: tuple[int, int]) -> float | None:
    """Zhang & He's metric-rectification ratio, or ``None`` when it is not observable."""
    u0, v0 = image_size[0] / 2.0, image_size[1] / 2.0
    tl, tr, br, bl = (np.array([x, y, 1.0]) for x, y in quad)
    denom2 = float(np.dot(np.cross(tr, br), bl))
    denom3 = float(np.dot(np.cross(bl, br), tr))
    if abs(denom2) < 1e-9 or abs(denom3) < 1e-9:
        return None
    k2 = float(np.dot(np.cross(tl, br), bl)) / denom2
    k3 = float(np.dot(np.cross(tl, br), tr)) / denom3
    n2, n3 = k2 * tr - tl, k3 * bl - tl
    if abs(n2[2] * n3[2]) < 1e-6 or abs(k2 - 1) < 0.01 or abs(k3 - 1) < 0.01:
        return None  # nearly affine: the focal length is not observable
    f2 = -(
        (n2[0] * n3[0] - (n2[0] * n3[2] + n2[2] * n3[0]) * u0 + n2[2] * n3[2] * u0 * u0)
        + (n2[1] * n3[1] - (n2[1] * n3[2] + n2[2] * n3[1]) * v0 + n2[2] * n3[2] * v0 * v0)
    ) / (n2[2] * n3[2])
    diagonal = math.hypot(*image_size)
    if not 0.25 * diagonal**2 <= f2 <= 25.0 * diagonal**2:
        return None  # an implausible lens: the corners are noisier than the perspective
    focal = math.sqrt(f2)
    a_inv = np.linalg.inv(np.array([[focal, 0, u0], [0, focal, v0], [0, 0, 1]]))
    metric = a_inv.T @ a_inv
    width2 = float(n2 @ metric @ n2)
    height2 = float(n3 @ metric @ n3)
    if width2 <= 0 or height2 <= 0:
        return None
    return math.sqrt(height2 / width2)


def aspect_estimates(quad: Quad, image_size: tuple[int, int]) -> tuple[float, ...]:
    """Height / width of the page by each estimator, the most trustworthy first.

    The perspective estimate (when observable), the ratio of mean side lengths and the
    ratio of the longest sides (the near edges, least foreshortened). For a camera
    looking nearly straight down they agree; their spread is the uncertainty.
    """
    c = quad.as_array().astype(np.float64)
    top, bottom = float(np.linalg.norm(c[1] - c[0])), float(np.linalg.norm(c[2] - c[3]))
    left, right = float(np.linalg.norm(c[3] - c[0])), float(np.linalg.norm(c[2] - c[1]))
    mean_sides = (left + right) / max(top + bottom, 1e-9)
    long_sides = max(left, right) / max(top, bottom, 1e-9)
    perspective = _perspective_aspect(quad, image_size)
    if perspective is None:
        return mean_sides, long_sides
    return perspective, mean_sides, long_sides


def _longest_side(quad: Quad) -> float:
    """The page's longest side in still pixels: how much detail the camera has of it."""
    c = quad.as_array().astype(np.float64)
    return max(float(np.linalg.norm(c[(i + 1) % 4] - c[i])) for i in range(4))


def estimate_aspect(quad: Quad, image_size: tuple[int, int]) -> float:
    """Best estimate of the height / width of the page seen as ``quad`` in ``(w, h)``."""
    return aspect_estimates(quad, image_size)[0]


def estimate_skew(gray: GrayImage) -> float | None:
    """Angle of the text lines in degrees, positive when they run clockwise on screen."""
    w = gray.shape[1]
    ink = cv2.adaptiveThreshold(
        gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 25, 15
    )
    # Join letters into line blobs, without bridging the gap between lines.
    smear = max(9, w // 60) | 1
    blobs = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((1, smear), np.uint8))
    blobs = cv2.morphologyEx(blobs, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(blobs, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    angles: list[float] = []
    weights: list[float] = []
    for contour in contours:
        (_, _), (rw, rh), angle = cv2.minAreaRect(contour)
        length, thickness = max(rw, rh), min(rw, rh)
        if length < w / 10 or thickness < 2 or length < 6 * thickness:
            continue
        # minAreaRect's angle convention depends on which side it calls the width.
        line_angle = angle if rw >= rh else angle - 90.0
        line_angle = (line_angle + 90.0) % 180.0 - 90.0
        if abs(line_angle) > 20.0:
            continue
        angles.append(line_angle)
        weights.append(length)
    if len(angles) < _MIN_LINES:
        return None
    order = np.argsort(angles)
    cumulative = np.cumsum(np.asarray(weights)[order])
    median = float(np.asarray(angles)[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
    logger.debug("skew %.2f deg from %d text lines", median, len(angles))
    return median


class Rectifier:
    """Warps a still's page quad to an upright page; see the module docstring."""

    def __init__(
        self,
        *,
        dpi: int = 200,
        upscale: bool = False,
        a4_tolerance: float = 0.06,
        deskew: bool = True,
        max_skew_degrees: float = 5.0,
        trim: float = 0.004,
    ) -> None:
        if not 50 <= dpi <= 600:
            raise ScanConfigError(f"dpi {dpi} is not in 50..600", field="dpi")
        if not 0.0 <= a4_tolerance < 0.3:
            raise ScanConfigError(
                f"a4_tolerance {a4_tolerance} is not in 0..0.3", field="a4_tolerance"
            )
        if not 0.0 <= trim < 0.05:
            raise ScanConfigError(f"trim {trim} is not in 0..0.05", field="trim")
        self.dpi = dpi
        self.upscale = upscale
        self.a4_tolerance = a4_tolerance
        self.deskew = deskew
        self.max_skew_degrees = max_skew_degrees
        self.trim = trim

    @property
    def a4_size(self) -> tuple[int, int]:
        return (round(_A4_MM[0] / 25.4 * self.dpi), round(_A4_MM[1] / 25.4 * self.dpi))

    def output_size(self, quad: Quad, image_size: tuple[int, int]) -> tuple[int, int, float, bool]:
        """``(width, height, aspect, snapped_to_a4)`` of the upright page."""
        estimates = aspect_estimates(quad, image_size)
        aspect = estimates[0]
        short, long = self.a4_size
        landscape = aspect < 1.0
        ratio = 1.0 / aspect if landscape else aspect
        # A4 is the strong prior: snap when any estimate is close to it.
        a4 = any(
            abs((1.0 / e if landscape else e) / A4_ASPECT - 1.0) <= self.a4_tolerance
            for e in estimates
        )
        if not a4:
            short = max(1, round(long / ratio))
        seen = _longest_side(quad)
        if not self.upscale and seen < long:
            short, long = max(1, round(short * seen / long)), max(1, round(seen))
        width, height = (long, short) if landscape else (short, long)
        return width, height, (height / width if a4 else aspect), a4

    def rectify(self, image: BgrImage, quad: Quad) -> Rectified:
        height_px, width_px = image.shape[:2]
        width, height, aspect, a4 = self.output_size(quad, (width_px, height_px))
        dx, dy = self.trim * width, self.trim * height
        target = np.array(
            [
                [-dx, -dy],
                [width - 1 + dx, -dy],
                [width - 1 + dx, height - 1 + dy],
                [-dx, height - 1 + dy],
            ],
            dtype=np.float32,
        )
        matrix = np.asarray(cv2.getPerspectiveTransform(quad.as_array(), target), np.float64)
        skew = self._measure_skew(image, matrix, (width, height)) if self.deskew else 0.0
        if abs(skew) >= 0.1:
            rotation = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), skew, 1.0)
            matrix = np.vstack([rotation, [0.0, 0.0, 1.0]]) @ matrix
        page = u8(
            cv2.warpPerspective(
                image,
                matrix,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
        )
        return Rectified(page, matrix, aspect, a4, skew, preview_of(page))

    def _measure_skew(self, image: BgrImage, matrix: Matrix, size: tuple[int, int]) -> float:
        scale = min(1.0, _SKEW_WIDTH / size[0])
        small_size = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        shrink = np.diag([scale, scale, 1.0])
        preview = cv2.warpPerspective(
            image,
            shrink @ matrix,
            small_size,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        skew = estimate_skew(u8(cv2.cvtColor(preview, cv2.COLOR_BGR2GRAY)))
        if skew is None or abs(skew) > self.max_skew_degrees:
            return 0.0
        return skew


def preview_of(page: BgrImage, width: int = PREVIEW_WIDTH) -> BgrImage:
    """The page at ``width`` pixels wide, never enlarged.

    Linear for a shrink of up to 4 (the common case: 4x faster than ``INTER_AREA``'s
    fractional path, and one resampling path for every camera so blur calibrations stay
    comparable), halvings first beyond that.
    """
    h, w = page.shape[:2]
    if w <= width:
        return page
    size = (width, max(1, round(h * width / w)))
    if w < 4 * width:
        return u8(cv2.resize(page, size, interpolation=cv2.INTER_LINEAR))
    return resize(page, size)
