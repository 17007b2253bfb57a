"""Finding the page in a document-camera still: its four corners, in still pixels.

API
---
``Quad`` frozen dataclass of four ``(x, y)`` float corners, ordered
    ``top_left, top_right, bottom_right, bottom_left`` (clockwise on screen);
    ``as_array() -> (4, 2) float32``, ``area``, ``scaled(factor)``, iterable.
``order_corners(points) -> Quad``   any four points -> clockwise from the top-left
``PageDetection`` frozen dataclass ``(quad, area_fraction, edge_support, method)``
``PageDetector(*, work_size=768, min_area_fraction=0.05, max_area_fraction=0.98)``
    ``detect(image: BgrImage) -> PageDetection``; raises :class:`PageNotFoundError`
    with the best candidate's figures in the message when nothing page-like is found.

How: the still is shrunk to ``work_size`` on its long side. Dark print is closed away
(morphological closing), then two masks propose outlines -- Otsu on the darkest channel
(paper is bright in all three channels, wood and skin are not) and dilated Canny edges.
Each outline's convex hull is reduced to four corners with ``approxPolyDP`` and scored:
it must be a convex quadrilateral of sensible size and angles that fills its outline,
and each of its four sides must show a brightness step between inside and outside
(a shadow or desk grain does not). The winner's sides are then re-fitted on a
half-resolution gradient (sub-pixel edge search along each side's normal, Huber line
fit) and intersected, so the corners are accurate to about a pixel of the full still.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from devices.scan.errors import PageNotFoundError, ScanConfigError
from devices.scan.imaging import BgrImage, GrayImage, darkest_channel, resize, u8

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
Point = tuple[float, float]

_MIN_STEP: Final = 14.0  # grey levels between inside and outside that count as an edge
_MIN_SIDE_SUPPORT: Final = 0.6  # fraction of a side's samples that must show the step
_MIN_FILL: Final = 0.9  # outline area / quad area
_ANGLE_RANGE: Final = (40.0, 140.0)  # interior angles of a page seen from above


@dataclass(frozen=True, slots=True)
class Quad:
    """Four page corners in image pixels, clockwise from the top-left."""

    top_left: Point
    top_right: Point
    bottom_right: Point
    bottom_left: Point

    def __iter__(self) -> Iterator[Point]:
        return iter((self.top_left, self.top_right, self.bottom_right, self.bottom_left))

    def as_array(self) -> FloatArray:
        return np.array(list(self), dtype=np.float32)

    @property
    def area(self) -> float:
        return abs(float(cv2.contourArea(self.as_array())))

    def scaled(self, factor: float) -> Quad:
        return Quad(*((x * factor, y * factor) for x, y in self))

    def __repr__(self) -> str:
        return "Quad(" + ", ".join(f"({x:.1f}, {y:.1f})" for x, y in self) + ")"


@dataclass(frozen=True, slots=True)
class PageDetection:
    quad: Quad
    area_fraction: float
    edge_support: float
    method: str


def order_corners(points: npt.ArrayLike) -> Quad:
    """Order four points clockwise on screen, starting with the one nearest the top-left.

    Sorting by angle around the centroid keeps opposite corners apart even when the page
    is turned by tens of degrees (the x+y / x-y trick breaks near 45 degrees).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if pts.shape != (4, 2):
        raise ScanConfigError(f"a page has 4 corners, got {pts.shape[0]} points")
    center = pts.mean(axis=0)
    angles = np.arctan2(pts[:, 1] - center[1], pts[:, 0] - center[0])
    clockwise = pts[np.argsort(angles)]  # y grows downwards: increasing angle = clockwise
    start = int(np.argmin(clockwise.sum(axis=1)))
    ordered = np.roll(clockwise, -start, axis=0)
    return Quad(*((float(x), float(y)) for x, y in ordered))


class PageDetector:
    """Finds the page quadrilateral in a BGR still; see the module docstring."""

    def __init__(
        self,
        *,
        work_size: int = 768,
        min_area_fraction: float = 0.05,
        max_area_fraction: float = 0.98,
    ) -> None:
        if not 256 <= work_size <= 2048:
            raise ScanConfigError(f"work_size {work_size} is not in 256..2048", field="work_size")
        if not 0.0 < min_area_fraction < max_area_fraction <= 1.0:
            raise ScanConfigError(
                f"area fractions {min_area_fraction}..{max_area_fraction} are not "
                "0 < min < max <= 1",
                field="min_area_fraction",
            )
        self.work_size = work_size
        self.min_area_fraction = min_area_fraction
        self.max_area_fraction = max_area_fraction

    def detect(self, image: BgrImage) -> PageDetection:
        height, width = image.shape[:2]
        scale = self.work_size / max(height, width)
        # Point-like sampling is enough to find the outline (print is closed away next)
        # and 5x cheaper than an anti-aliased shrink; the sides are refined at full detail.
        small = u8(
            cv2.resize(
                image,
                (max(1, round(width * scale)), max(1, round(height * scale))),
                interpolation=cv2.INTER_LINEAR,
            )
        )
        gray = u8(cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (3, 3), 0))
        best: tuple[float, PageDetection] | None = None
        rejected: list[str] = []
        for method, mask in _candidate_masks(small):
            for contour in _largest_contours(mask, 3):
                verdict = self._score(contour, gray, method)
                if isinstance(verdict, str):
                    rejected.append(verdict)
                    continue
                if best is None or verdict[0] > best[0]:
                    best = verdict
        if best is None:
            reason = rejected[0] if rejected else "there is no outline at all"
            raise PageNotFoundError(
                f"no page found in the {width}x{height} still: {reason} "
                f"({len(rejected)} outlines checked)"
            )
        found = best[1]
        refined = _refine(image, found.quad.scaled(1.0 / scale))
        detection = PageDetection(
            quad=refined,
            area_fraction=refined.area / float(width * height),
            edge_support=found.edge_support,
            method=found.method,
        )
        logger.debug(
            "page found by %s: %.0f%% of the still, edge support %.2f",
            detection.method,
            100 * detection.area_fraction,
            detection.edge_support,
        )
        return detection

    def _score(
        self, contour: npt.NDArray[np.int32], gray: GrayImage, method: str
    ) -> tuple[float, PageDetection] | str:
        """``(score, detection)`` for a page-like outline, else why it is not one."""
        h, w = gray.shape[:2]
        hull = np.asarray(cv2.convexHull(contour), dtype=np.int32)
        hull_area = float(cv2.contourArea(hull))
        fraction = hull_area / float(w * h)
        if fraction < self.min_area_fraction:
            return f"outline covers {100 * fraction:.0f}% of the frame"
        if fraction > self.max_area_fraction:
            return f"outline is the whole frame ({100 * fraction:.0f}%)"
        approx = _four_corners(hull)
        if approx is None:
            return "outline has no four clear corners"
        quad = order_corners(approx)
        corners = quad.as_array()
        if not cv2.isContourConvex(corners):
            return "outline is not convex"
        angles = _interior_angles(corners)
        if min(angles) < _ANGLE_RANGE[0] or max(angles) > _ANGLE_RANGE[1]:
            return f"outline corner angles {min(angles):.0f}..{max(angles):.0f} deg"
        fill = float(cv2.contourArea(contour)) / max(quad.area, 1.0)
        if fill < _MIN_FILL:
            return f"outline fills {100 * fill:.0f}% of its quadrilateral"
        support = min(_side_support(gray, corners, i) for i in range(4))
        if support < _MIN_SIDE_SUPPORT:
            return f"a side of the outline shows no edge ({100 * support:.0f}% support)"
        detection = PageDetection(quad, quad.area / float(w * h), support, method)
        return fraction * support * min(fill, 1.0), detection


def _candidate_masks(small: BgrImage) -> Iterator[tuple[str, GrayImage]]:
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
    darkest = darkest_channel(small)
    closed_min = u8(cv2.GaussianBlur(cv2.morphologyEx(darkest, cv2.MORPH_CLOSE, kernel), (5, 5), 0))
    _, bright = cv2.threshold(closed_min, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    yield "brightness", u8(cv2.morphologyEx(bright, cv2.MORPH_OPEN, kernel))
    gray = u8(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
    closed = u8(cv2.GaussianBlur(cv2.morphologyEx(gray, cv2.MORPH_CLOSE, kernel), (5, 5), 0))
    edges = cv2.Canny(closed, 30, 90)
    edges = cv2.dilate(edges, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
    yield "edges", u8(edges)


def _largest_contours(mask: GrayImage, count: int) -> list[npt.NDArray[np.int32]]:
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    ranked = sorted(contours, key=lambda c: float(cv2.contourArea(c)), reverse=True)
    return [np.asarray(c, dtype=np.int32) for c in ranked[:count]]


def _four_corners(hull: npt.NDArray[np.int32]) -> FloatArray | None:
    perimeter = float(cv2.arcLength(hull, True))
    for fraction in (0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.07):
        approx = cv2.approxPolyDP(hull, fraction * perimeter, True)
        if len(approx) == 4:
            return np.asarray(approx, dtype=np.float32).reshape(4, 2)
        if len(approx) < 4:
            return None
    return None


def _interior_angles(corners: FloatArray) -> list[float]:
    angles = []
    for i in range(4):
        prev_pt, pt, next_pt = corners[i - 1], corners[i], corners[(i + 1) % 4]
        a, b = prev_pt - pt, next_pt - pt
        cos = float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-9))
        angles.append(math.degrees(math.acos(max(-1.0, min(1.0, cos)))))
    return angles


def _side_support(gray: GrayImage, corners: FloatArray, side: int, offset: float = 4.0) -> float:
    """Fraction of points along one side with a brightness step across it.

    Points whose outside sample falls off the image count as unsupported: a page cut by
    the frame edge is not a whole page.
    """
    h, w = gray.shape[:2]
    start, end = corners[side].astype(np.float64), corners[(side + 1) % 4].astype(np.float64)
    direction = end - start
    length = float(np.linalg.norm(direction))
    if length < 8:
        return 0.0
    center = corners.mean(axis=0)
    normal = np.array([-direction[1], direction[0]]) / length
    if np.dot(center - (start + end) / 2, normal) < 0:
        normal = -normal  # make it point into the page
    ts = np.linspace(0.1, 0.9, 24)[:, None]
    points = start + ts * direction
    inside = np.rint(points + offset * normal).astype(int)
    outside = np.rint(points - offset * normal).astype(int)
    within = (outside[:, 0] >= 0) & (outside[:, 0] < w) & (outside[:, 1] >= 0) & (outside[:, 1] < h)
    inside = np.clip(inside, 0, [w - 1, h - 1])
    outside = np.clip(outside, 0, [w - 1, h - 1])
    step = np.abs(
        gray[inside[:, 1], inside[:, 0]].astype(np.float32)
        - gray[outside[:, 1], outside[:, 0]].astype(np.float32)
    )
    return float(np.mean((step >= _MIN_STEP) & within))


def _refine(image: BgrImage, quad: Quad, reach: int = 8) -> Quad:
    """Sub-pixel sides: edge search along each side's normal at half resolution.

    Only a band around each side is shrunk and smoothed (a few percent of the still),
    not the whole still.
    """
    height, width = image.shape[:2]
    corners = quad.as_array() * 0.5
    margin = 2 * (reach + 6)  # full-resolution pixels: the search reach plus the blur's
    lines = []
    for side in range(4):
        ends = quad.as_array()[[side, (side + 1) % 4]]
        x0, y0 = (max(0, int(v) - margin) & ~1 for v in ends.min(axis=0))
        x1 = min(width, int(ends[:, 0].max()) + margin + 2)
        y1 = min(height, int(ends[:, 1].max()) + margin + 2)
        band = image[y0:y1, x0:x1]
        gray = cv2.cvtColor(
            resize(band, (band.shape[1] // 2, band.shape[0] // 2)), cv2.COLOR_BGR2GRAY
        )
        half = u8(cv2.GaussianBlur(gray, (0, 0), 1.2))
        origin = np.array([x0 / 2.0, y0 / 2.0], dtype=np.float32)
        line = _fit_side(half, corners - origin, side, reach)
        if line is None:
            logger.debug("corner refinement: side %d shows no edge, keeping coarse corners", side)
            return quad  # keep the coarse corners rather than guess
        lines.append((line[0] + origin, line[1]))
    refined = []
    for i in range(4):
        point = _intersect(lines[i - 1], lines[i])
        if point is None or float(np.linalg.norm(point - corners[i])) > 12.0:
            logger.debug("corner refinement: corner %d moved too far, keeping coarse corners", i)
            return quad
        refined.append(point * 2.0)
    return order_corners(np.array(refined))


def _fit_side(
    gray: GrayImage, corners: FloatArray, side: int, reach: int = 8
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """``(point, direction)`` of the strongest edge near one side, or ``None``."""
    start, end = corners[side].astype(np.float64), corners[(side + 1) % 4].astype(np.float64)
    direction = end - start
    length = float(np.linalg.norm(direction))
    if length < 16:
        return None
    unit = direction / length
    normal = np.array([-unit[1], unit[0]])
    ts = np.linspace(0.06, 0.94, max(16, int(length / 6)))
    offsets = np.arange(-reach, reach + 1, dtype=np.float64)
    base = start[None, :] + ts[:, None] * direction[None, :]
    grid = base[:, None, :] + offsets[None, :, None] * normal[None, None, :]
    map_x = grid[..., 0].astype(np.float32)
    map_y = grid[..., 1].astype(np.float32)
    profiles = np.asarray(
        cv2.remap(gray, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
        dtype=np.float64,
    )
    grad = np.abs(np.diff(profiles, axis=1))
    peak = np.argmax(grad, axis=1)
    strength = grad[np.arange(len(peak)), peak]
    keep = (strength >= 3.0) & (peak > 0) & (peak < grad.shape[1] - 1)
    if int(keep.sum()) < 8:
        return None
    rows = np.nonzero(keep)[0]
    p = peak[rows]
    left, mid, right = grad[rows, p - 1], grad[rows, p], grad[rows, p + 1]
    denom = left - 2 * mid + right
    shift = np.where(np.abs(denom) > 1e-9, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0)
    # diff index k sits between offsets k and k+1
    position = offsets[p] + 0.5 + np.clip(shift, -0.5, 0.5)
    points = base[rows] + position[:, None] * normal[None, :]
    fitted = cv2.fitLine(points.astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01)
    vx, vy, x0, y0 = (float(v) for v in np.asarray(fitted).ravel())
    return np.array([x0, y0]), np.array([vx, vy])


def _intersect(
    a: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    b: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
) -> FloatArray | None:
    (pa, da), (pb, db) = a, b
    matrix = np.array([[da[0], -db[0]], [da[1], -db[1]]])
    if abs(float(np.linalg.det(matrix))) < 1e-6:
        return None
    t = np.linalg.solve(matrix, pb - pa)[0]
    return np.asarray(pa + t * da, dtype=np.float32)
