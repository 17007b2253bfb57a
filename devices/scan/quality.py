"""Quality gates on a rectified page: is it sharp, is it free of glare?

API
---
``RetakeReason``   re-exported from :mod:`devices.scan.reasons` (``.zh``, ``.en``, ``.message``)
``measure_sharpness(page, *, width=800) -> Sharpness``   ``(score, laplacian_variance)``
``measure_glare(page, *, level=250, max_saturation=40, min_blob_fraction=0.002)
-> float``   fraction of the page under glare blobs
``QualityReport`` frozen dataclass: ``sharpness``, ``laplacian_variance``,
    ``blur_threshold``, ``glare_fraction``, ``max_glare_fraction``,
    ``reasons: tuple[RetakeReason, ...]``; ``needs_retake``, ``messages``
``QualityGate(*, blur_threshold=DEFAULT_BLUR_THRESHOLD, max_glare_fraction=0.01,
glare_level=250)``   ``assess(page: BgrImage) -> QualityReport``
``BlurCalibration`` frozen dataclass ``(threshold, median, minimum, maximum, samples)``
``calibrate(sharp_samples: Iterable[float], *, fraction=0.25) -> BlurCalibration``
    threshold = ``fraction`` x the median sharpness of known-good stills (measure them
    with ``ScanPipeline.measure`` or :func:`measure_sharpness`); 0.25 fails about
    1.2 px (sigma) of blur in a 5 MP still, which starts to soften small print

Blur: the page is resized to a fixed width (800 px) before anything is measured, so
the figure does not depend on the camera's resolution or how much of the frame the page
fills; lighting is divided out (shadowed print is not blurred print); then the variance
of the Laplacian is taken per 100-px tile and the score is the mean over the most
detailed quarter of the tiles, so a page with a few lines of print scores like a full
form (``laplacian_variance`` is the plain whole-page figure, for reference). A page
with no print at all scores near zero and is reported as blurred: there is nothing to
judge focus by. Focus depends on the lens and sensor, hence per-device calibration.

Glare: a specular highlight clips all three channels, so it is bright (HSV V >= level)
and colourless (S <= max_saturation) -- white paper is never quite that. Isolated
clipped pixels (noise, a white margin) are dropped by an opening and by keeping only
connected blobs of at least ``min_blob_fraction`` of the page; what remains is the
glare fraction. Both are measured on the rectified page, so only the page counts.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np

from devices.scan.errors import ScanConfigError
from devices.scan.imaging import BgrImage, GrayImage, resize, u8
from devices.scan.reasons import RetakeReason

__all__ = [
    "DEFAULT_BLUR_THRESHOLD",
    "BlurCalibration",
    "QualityGate",
    "QualityReport",
    "RetakeReason",
    "Sharpness",
    "calibrate",
    "measure_glare",
    "measure_sharpness",
]

logger = logging.getLogger(__name__)

# For a device nobody has calibrated: only grossly blurred pages fail. On the simulator
# sharp pages score ~3,800-4,000 and its blurred ones (Gaussian sigma 4 px) ~20; on a
# rendered form, sigma 1 / 1.5 / 2 / 3 px of blur give ~900 / 320 / 120 / 30.
DEFAULT_BLUR_THRESHOLD: Final = 100.0
MEASURE_WIDTH: Final = 800
_TILE: Final = 100
_GLARE_WIDTH: Final = 400
_MARGIN: Final = 0.03  # of the width; a trimmed edge may still show a line of desk


@dataclass(frozen=True, slots=True)
class Sharpness:
    score: float
    laplacian_variance: float


@dataclass(frozen=True, slots=True)
class QualityReport:
    sharpness: float
    laplacian_variance: float
    blur_threshold: float
    glare_fraction: float
    max_glare_fraction: float
    reasons: tuple[RetakeReason, ...]

    @property
    def needs_retake(self) -> bool:
        return bool(self.reasons)

    @property
    def messages(self) -> tuple[str, ...]:
        """``"中文 / English"`` for each reason, ready for the kiosk screen."""
        return tuple(reason.message for reason in self.reasons)


@dataclass(frozen=True, slots=True)
class BlurCalibration:
    threshold: float
    median: float
    minimum: float
    maximum: float
    samples: int


def _flatten_lighting(gray: GrayImage) -> GrayImage:
    """Divide by a print-free background so shadows and vignetting do not count."""
    h, w = gray.shape[:2]
    small = resize(gray, (max(1, w // 4), max(1, h // 4)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    background = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel)
    background = cv2.resize(background, (w, h), interpolation=cv2.INTER_LINEAR)
    background = np.maximum(u8(background), 1)
    return u8(cv2.divide(gray, background, scale=255))


def measure_sharpness(page: BgrImage, *, width: int = MEASURE_WIDTH) -> Sharpness:
    """Focus of a rectified page at a fixed scale; higher is sharper."""
    gray = page if page.ndim == 2 else u8(cv2.cvtColor(page, cv2.COLOR_BGR2GRAY))
    h, w = gray.shape[:2]
    gray = resize(gray, (width, max(1, round(width * h / w))))
    m = round(_MARGIN * width)
    gray = _flatten_lighting(gray[m:-m, m:-m])
    laplacian = np.asarray(cv2.Laplacian(gray, cv2.CV_32F), dtype=np.float32)
    _, deviation = cv2.meanStdDev(laplacian)
    variance = float(deviation[0, 0]) ** 2
    rows, cols = laplacian.shape[0] // _TILE, laplacian.shape[1] // _TILE
    if rows == 0 or cols == 0:
        return Sharpness(variance, variance)
    # Per-tile variance as E[x^2] - E[x]^2 from two area shrinks (one pass each).
    tiles = laplacian[: rows * _TILE, : cols * _TILE]
    mean = np.asarray(cv2.resize(tiles, (cols, rows), interpolation=cv2.INTER_AREA), np.float64)
    squares = cv2.resize(cv2.multiply(tiles, tiles), (cols, rows), interpolation=cv2.INTER_AREA)
    per_tile = np.sort((np.asarray(squares, np.float64) - mean * mean).ravel())
    top = per_tile[-max(1, len(per_tile) // 4) :]
    return Sharpness(float(top.mean()), variance)


def measure_glare(
    page: BgrImage,
    *,
    level: int = 250,
    max_saturation: int = 40,
    min_blob_fraction: float = 0.002,
) -> float:
    """Fraction of the page covered by blobs of clipped, colourless pixels."""
    h, w = page.shape[:2]
    small = resize(page, (_GLARE_WIDTH, max(1, round(_GLARE_WIDTH * h / w))))
    m = round(0.02 * _GLARE_WIDTH)
    small = small[m:-m, m:-m]
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    value, saturation = hsv[:, :, 2], hsv[:, :, 1]
    mask = u8(((value >= level) & (saturation <= max_saturation)).astype(np.uint8) * 255)
    mask = u8(cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)))
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    area = float(mask.shape[0] * mask.shape[1])
    blob_areas = np.asarray(stats, dtype=np.int64)[1:count, cv2.CC_STAT_AREA]
    glare = blob_areas[blob_areas >= min_blob_fraction * area]
    return float(glare.sum()) / area


class QualityGate:
    """Blur and glare checks with the thresholds of one device; see the module docstring."""

    def __init__(
        self,
        *,
        blur_threshold: float = DEFAULT_BLUR_THRESHOLD,
        max_glare_fraction: float = 0.01,
        glare_level: int = 250,
    ) -> None:
        if not blur_threshold >= 0.0:  # also refuses NaN
            raise ScanConfigError(
                f"blur_threshold {blur_threshold} must be >= 0", field="blur_threshold"
            )
        if not 0.0 <= max_glare_fraction <= 1.0:
            raise ScanConfigError(
                f"max_glare_fraction {max_glare_fraction} is not in 0..1",
                field="max_glare_fraction",
            )
        if not 128 <= glare_level <= 255:
            raise ScanConfigError(
                f"glare_level {glare_level} is not in 128..255", field="glare_level"
            )
        self.blur_threshold = float(blur_threshold)
        self.max_glare_fraction = float(max_glare_fraction)
        self.glare_level = glare_level

    def assess(self, page: BgrImage) -> QualityReport:
        h, w = page.shape[:2]
        # Shrink once; both measures take it from here (integer-factor steps are fast).
        small = resize(page, (MEASURE_WIDTH, max(1, round(MEASURE_WIDTH * h / w))))
        sharpness = measure_sharpness(small)
        glare = measure_glare(small, level=self.glare_level)
        reasons: list[RetakeReason] = []
        if sharpness.score < self.blur_threshold:
            reasons.append(RetakeReason.BLUR)
        if glare > self.max_glare_fraction:
            reasons.append(RetakeReason.GLARE)
        return QualityReport(
            sharpness=sharpness.score,
            laplacian_variance=sharpness.laplacian_variance,
            blur_threshold=self.blur_threshold,
            glare_fraction=glare,
            max_glare_fraction=self.max_glare_fraction,
            reasons=tuple(reasons),
        )


def calibrate(sharp_samples: Iterable[float], *, fraction: float = 0.25) -> BlurCalibration:
    """Blur threshold for one device from the sharpness of stills known to be good.

    The median, not the minimum, anchors it: one slightly soft "good" sample must not
    drag the threshold down. Three or more samples of ordinary forms are advised.
    """
    if not 0.0 < fraction < 1.0:
        raise ScanConfigError(f"fraction {fraction} is not in (0, 1)", field="fraction")
    scores = [float(s) for s in sharp_samples]
    if not scores:
        raise ScanConfigError("calibration needs at least one sharp sample, got none")
    bad = [s for s in scores if not s > 0.0]
    if bad:
        raise ScanConfigError(
            f"calibration samples must be positive sharpness figures, got {bad[0]!r}",
            field="sharp_samples",
        )
    median = statistics.median(scores)
    calibration = BlurCalibration(
        threshold=fraction * median,
        median=median,
        minimum=min(scores),
        maximum=max(scores),
        samples=len(scores),
    )
    if calibration.minimum < calibration.threshold:
        logger.warning(
            "blur calibration: a 'sharp' sample scores %.1f, below the threshold %.1f "
            "(median %.1f of %d); check the samples",
            calibration.minimum,
            calibration.threshold,
            median,
            len(scores),
        )
    return calibration
