"""Codes printed on a scanned page, found quickly: QR codes by their finder patterns.

ZBar scans every line of an image through every decoder, about 50 ns a pixel: 40 ms
for an 800-px page preview, as much as the rest of the scan pipeline's work after the
JPEG decode. A page is mostly print, and its codes are small, so this module looks first:

* **QR codes** have three finder patterns (a dark square, a light ring, a dark 3x3
  core). Binarising the page and walking the contour tree finds them as a dark outline
  with a hole holding a solid dark core of about 3/7 of its width -- characters such
  as 回 nest squares too, but their core is a ring, not solid. Finders of similar size
  near one another are grouped into a code; each group's box (with a quiet-zone
  margin) is cut from the most detailed image at hand and only that crop is decoded.
* **1-D barcodes** are read by ZBar with QR disabled, every ``LINEAR_DENSITY``-th line
  and column of the preview: bars are tall, so a few scan lines cross them.
* When finders were seen but no crop decoded (a code cut by the crop, a damaged
  finder), the whole preview is decoded as before, so a findable code is never lost
  to the shortcut.

API
---
``find_qr_regions(gray) -> list[Box]``   ``Box = (x, y, w, h)`` in ``gray``'s pixels
``read_page_codes(reader, preview, detail=None) -> list[DecodedCode]``
    ``preview``: the page small (BGR or grey); ``detail``: the same page larger (any
    scale, same framing), where the QR crops are taken from when given.
"""

from __future__ import annotations

import logging
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from devices.qr import CodeReader, DecodedCode, as_gray, decode_with_opencv, zbar_scan

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
LINEAR_DENSITY: Final = 8
_MIN_FINDER_PX: Final = 7  # a finder is 7 modules: at least a pixel a module
_GROUP_REACH: Final = 9.0  # finder widths between finders of one code (version <= ~12)
_MARGIN: Final = 0.8  # finder widths of quiet zone kept around a group's box


def find_qr_regions(gray: npt.NDArray[np.uint8]) -> list[Box]:
    """Boxes around groups of QR finder patterns in a grey page image."""
    block = max(15, (gray.shape[1] // 40) | 1)
    dark = cv2.adaptiveThreshold(
        gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 10
    )
    contours, hierarchy = cv2.findContours(dark, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    links = np.asarray(hierarchy[0], dtype=np.int64)  # next, previous, first child, parent
    # Vectorised first (a page has thousands of contours): an outline with a hole that
    # holds exactly one core, which has no hole of its own.
    first_child = links[:, 2]
    outer = np.nonzero(first_child >= 0)[0]
    core = first_child[first_child[outer]]
    keep = core >= 0
    outer, core = outer[keep], core[keep]
    keep = (first_child[core] < 0) & (links[core, 0] < 0)
    finders: list[tuple[float, float, float]] = []  # centre x, centre y, width
    for index, inner in zip(outer[keep].tolist(), core[keep].tolist(), strict=True):
        if not _is_dark_outline(links, index):
            continue  # a hole in print (its "core" is print inside the hole)
        x, y, w, h = cv2.boundingRect(contours[index])
        if min(w, h) < _MIN_FINDER_PX or abs(w - h) > 0.25 * max(w, h):
            continue
        _, _, cw, ch = cv2.boundingRect(contours[inner])
        if not 0.25 <= max(cw, ch) / max(w, h) <= 0.6:
            continue  # the core is 3/7 of the finder
        finders.append((x + w / 2.0, y + h / 2.0, (w + h) / 2.0))
    return _group(finders, gray.shape[1], gray.shape[0])


def _is_dark_outline(links: npt.NDArray[np.int64], index: int) -> bool:
    """An outer outline of dark print (even depth in the tree), not a hole in it."""
    depth = 0
    while (index := int(links[index][3])) >= 0:
        depth += 1
    return depth % 2 == 0


def _group(finders: list[tuple[float, float, float]], width: int, height: int) -> list[Box]:
    groups: list[list[tuple[float, float, float]]] = []
    for finder in sorted(finders, key=lambda f: -f[2]):
        for group in groups:
            size = group[0][2]
            near = any(
                abs(finder[0] - g[0]) + abs(finder[1] - g[1]) <= _GROUP_REACH * size * 1.5
                for g in group
            )
            if near and 0.6 <= finder[2] / size <= 1.6:
                group.append(finder)
                break
        else:
            groups.append([finder])
    boxes = []
    for group in groups:
        size = max(f[2] for f in group)
        reach = size / 2.0 + _MARGIN * size
        if len(group) < 3:
            reach += _GROUP_REACH * size  # the other finders were missed: look around
        x0 = max(0, int(min(f[0] for f in group) - reach))
        y0 = max(0, int(min(f[1] for f in group) - reach))
        x1 = min(width, int(max(f[0] for f in group) + reach) + 1)
        y1 = min(height, int(max(f[1] for f in group) + reach) + 1)
        boxes.append((x0, y0, x1 - x0, y1 - y0))
    return boxes


def read_page_codes(
    reader: CodeReader,
    preview: npt.NDArray[np.uint8],
    detail: npt.NDArray[np.uint8] | None = None,
) -> list[DecodedCode]:
    """Every QR code and barcode on a page; see the module docstring."""
    small = as_gray(preview)
    zbar = reader.zbar()
    if zbar is None:
        return decode_with_opencv(small)
    found = zbar_scan(zbar, small, LINEAR_DENSITY, symbols="linear")
    regions = find_qr_regions(small)
    if not regions:
        return found
    source = small if detail is None else as_gray(detail)
    scale = source.shape[1] / small.shape[1]
    decoded: list[DecodedCode] = []
    for x, y, w, h in regions:
        x0, y0 = int(x * scale), int(y * scale)
        crop = np.ascontiguousarray(source[y0 : y0 + int(h * scale), x0 : x0 + int(w * scale)])
        if crop.shape[0] < 8 or crop.shape[1] < 8:
            continue
        for code in zbar_scan(zbar, crop, 1, symbols="qr"):
            polygon = tuple(
                (round((px + x0) / scale), round((py + y0) / scale)) for px, py in code.polygon
            )
            decoded.append(
                DecodedCode(
                    code.text, code.raw, code.symbology, code.encoding, polygon, code.decoder
                )
            )
    if not decoded:
        logger.debug(
            "page codes: %d finder groups, none decoded; scanning the whole page", len(regions)
        )
        return found + zbar_scan(zbar, small, 2, symbols="qr")
    return found + decoded
