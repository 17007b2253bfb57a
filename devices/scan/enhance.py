"""Making a rectified page look scanned: even white paper, crisp print.

API
---
``ScanMode``  ``StrEnum``: ``COLOR = "color"``, ``BW = "bw"``
``estimate_background(image) -> image``   the paper without its print, same shape
``remove_shadows(image) -> image``        divide by the background: paper -> white
``enhance_color(page, *, sharpen=0.6) -> BgrImage``
``enhance_bw(page, *, block_fraction=0.02, offset=18) -> GrayImage``   values 0 and 255
``enhance(page, mode) -> BgrImage | GrayImage``

Colour mode divides each channel by its own background estimate. That removes the
shadow of the camera arm and the colour cast of the lamp in one step (the paper
becomes neutral white wherever it shows) while a red seal stays red: it is darker than
the paper only in green and blue, and is divided by the paper, not by itself. A mild
unsharp mask follows.

The background is the page with its print closed away (grey-level closing with a
kernel wider than any stroke, a seal's star included), estimated at 200 px wide,
median-smoothed and scaled back up: cheap, and smooth across shadow edges. It is
never allowed below ``_MIN_BACKGROUND`` of the paper level, so a large dark block (a
photo, a filled box) is lightened a little rather than turned into paper.

B/W mode flattens the grey page the same way, then thresholds it adaptively
(local mean minus ``offset``) and also marks as black whatever is
clearly dark on its own, so big solid areas do not come out hollow.
"""

from __future__ import annotations

import enum
import logging
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from devices.scan.errors import ScanConfigError
from devices.scan.imaging import BgrImage, GrayImage, resize, u8

logger = logging.getLogger(__name__)

_BACKGROUND_WIDTH: Final = 200  # ~1 mm per pixel on A4: shadows are smoother than that
_CLOSING: Final = 17  # px at _BACKGROUND_WIDTH: wider than a seal's filled star
_MIN_BACKGROUND: Final = 0.45
_SOLID_BLACK: Final = 110  # flattened grey level that is black whatever the neighbours
_WHITE_POINT: Final = 240.0  # flattened level that becomes pure white: paper grain goes


class ScanMode(enum.StrEnum):
    COLOR = "color"
    BW = "bw"


def estimate_background(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The paper without its print: same shape and channels as ``image``."""
    h, w = image.shape[:2]
    scale = min(1.0, _BACKGROUND_WIDTH / w)
    small = resize(image, (max(1, round(w * scale)), max(1, round(h * scale))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_CLOSING, _CLOSING))
    closed = u8(cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel))
    smooth = u8(cv2.medianBlur(closed, 5))
    # A block of print wider than the kernel survives the closing; do not let it pass
    # for paper (that would wash it out to white).
    channels = 1 if smooth.ndim == 2 else smooth.shape[2]
    paper = np.percentile(smooth.reshape(-1, channels), 95, axis=0)
    floor = np.maximum(_MIN_BACKGROUND * paper, 1.0).astype(np.uint8)
    smooth = np.maximum(smooth, floor.reshape(smooth.shape[2:] or ()))
    smooth = u8(cv2.GaussianBlur(smooth, (0, 0), 1.0))
    return u8(cv2.resize(smooth, (w, h), interpolation=cv2.INTER_LINEAR))


def remove_shadows(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """``image / background``, scaled so paper becomes 255 in every channel.

    Anything within 6% of the paper level is pushed to pure white, so the grain of the
    paper and the sensor noise do not print as a grey haze (and cost JPEG bytes).
    """
    # estimate_background never goes below 1 (its floor), so there is no division by 0.
    background = estimate_background(image)
    return u8(cv2.divide(image, background, scale=255.0 * 255.0 / _WHITE_POINT))


def enhance_color(page: BgrImage, *, sharpen: float = 0.6) -> BgrImage:
    """Shadow-free, white-balanced colour page with a mild unsharp mask."""
    flat = remove_shadows(page)
    if sharpen <= 0:
        return flat
    # Unsharp mask against the 4-neighbour mean, in one 3x3 pass (a Gaussian blur of a
    # full page costs several times more for no visible difference at 200 dpi).
    a = sharpen / 4.0
    kernel = np.array([[0, -a, 0], [-a, 1 + 4 * a, -a], [0, -a, 0]], dtype=np.float32)
    return u8(cv2.filter2D(flat, -1, kernel))


def enhance_bw(page: BgrImage, *, block_fraction: float = 0.02, offset: int = 18) -> GrayImage:
    """Black print on white: 0 and 255 only, single channel."""
    gray = page if page.ndim == 2 else u8(cv2.cvtColor(page, cv2.COLOR_BGR2GRAY))
    flat = remove_shadows(gray)
    block = max(3, round(block_fraction * gray.shape[1])) | 1
    local = cv2.adaptiveThreshold(
        flat, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, offset
    )
    solid = flat < _SOLID_BLACK
    return u8(np.where(solid, 0, local))


def enhance(page: BgrImage, mode: ScanMode | str) -> BgrImage | GrayImage:
    try:
        chosen = ScanMode(mode)
    except ValueError:
        raise ScanConfigError(
            f"scan mode {mode!r} is not one of 'color', 'bw'", field="mode"
        ) from None
    if chosen is ScanMode.BW:
        return enhance_bw(page)
    return enhance_color(page)
