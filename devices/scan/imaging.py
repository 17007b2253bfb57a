"""Small image helpers shared by the scan modules: typed views and fast resizing.

API
---
``BgrImage``, ``GrayImage``, ``FloatImage``   array type aliases
``u8(image) -> uint8 array``, ``f32(image) -> float32 array``   typed views of cv2 results
``resize(image, size) -> image``   area-averaged shrink (or linear enlarge) to ``(w, h)``
``darkest_channel(image) -> GrayImage``   per-pixel minimum of B, G, R
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

BgrImage = npt.NDArray[np.uint8]
GrayImage = npt.NDArray[np.uint8]
FloatImage = npt.NDArray[np.float32]


def u8(image: object) -> npt.NDArray[np.uint8]:
    """View an OpenCV result as a typed ``uint8`` array (no copy when it already is one)."""
    return np.asarray(image, dtype=np.uint8)


def f32(image: object) -> FloatImage:
    return np.asarray(image, dtype=np.float32)


def resize(image: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Resize to ``size = (width, height)`` with anti-aliasing when shrinking.

    OpenCV's ``INTER_AREA`` is fast only for a factor of exactly 2 (several times slower
    for 4, 5 or anything fractional), so a large shrink is a series of halvings followed
    by a small linear step; the result differs from plain ``INTER_AREA`` by ~1.5 grey
    levels on average (more along sharp print edges). A shrink by less than 2 is one
    ``INTER_AREA`` step. Measurements and their calibrations go through this same path,
    so they stay comparable.
    """
    height, width = image.shape[:2]
    target_w, target_h = size
    if (target_w, target_h) == (width, height):
        return image
    if target_w >= width or target_h >= height:
        return u8(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))
    halved = False
    # The tolerance keeps a rounded target size (1131 -> 566) on the fast path.
    while min(width / target_w, height / target_h) >= 1.99:
        # Crop to even dimensions so the fast factor-2 path is taken.
        even = image[: height - height % 2, : width - width % 2]
        image = u8(cv2.resize(even, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
        height, width = image.shape[:2]
        halved = True
    if (width, height) == (target_w, target_h):
        return image
    return u8(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR if halved else cv2.INTER_AREA))


def darkest_channel(image: BgrImage) -> GrayImage:
    """Per-pixel ``min(B, G, R)``: paper is bright in all three, wood or skin is not."""
    blue, green, red = cv2.split(image)
    return u8(cv2.min(cv2.min(blue, green), red))
