"""Synthetic desk scenes with a page at a known quadrilateral, for ground truth.

The simulator does not say where it put the page, so tests that measure corner or
angle errors render their own scene: a printed page (text lines, a table, a red seal)
warped with ``cv2.warpPerspective`` onto a textured desk, with a soft shadow and
sensor noise, then JPEG-encoded like a camera still.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Corners = npt.NDArray[np.float64]

PAGE = (1240, 1754)  # A4 at 150 dpi
INK = (40, 36, 32)
SEAL = (52, 40, 205)


@dataclass(frozen=True)
class Scene:
    image: Image
    corners: Corners  # TL, TR, BR, BL of the page's outer edge, in image pixels

    @property
    def jpeg(self) -> bytes:
        return encode(self.image)


def encode(image: Image, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(buf.tobytes())


def render_page(size: tuple[int, int] = PAGE, *, seed: int = 0, skew_degrees: float = 0.0) -> Image:
    """A white form with ``skew_degrees`` of print rotation (clockwise on screen)."""
    w, h = size
    rng = np.random.default_rng(seed)
    page = np.full((h, w, 3), 247, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = w / 1240
    margin = int(100 * scale)
    cv2.putText(
        page,
        "TOWNSHIP SERVICE FORM",
        (margin, int(160 * scale)),
        font,
        1.5 * scale,
        INK,
        max(1, int(3 * scale)),
        cv2.LINE_AA,
    )
    y = int(260 * scale)
    thickness = max(1, int(2 * scale))
    while y < h * 0.55:
        length = int((w - 2 * margin) * rng.uniform(0.5, 1.0))
        text = ""
        while True:
            word = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(2, 9)))
            candidate = f"{text} {word}".strip()
            if cv2.getTextSize(candidate, font, 0.8 * scale, thickness)[0][0] > length:
                break
            text = candidate
        cv2.putText(page, text, (margin, y), font, 0.8 * scale, INK, thickness, cv2.LINE_AA)
        y += int(46 * scale)
    top = y
    for r in range(6):
        cv2.line(
            page,
            (margin, top + r * int(60 * scale)),
            (w - margin, top + r * int(60 * scale)),
            INK,
            max(1, int(2 * scale)),
        )
    for x in (margin, w // 2, w - margin):
        cv2.line(page, (x, top), (x, top + 5 * int(60 * scale)), INK, max(1, int(2 * scale)))
    center = (int(w * 0.7), int(h * 0.82))
    radius = int(110 * scale)
    cv2.circle(page, center, radius, SEAL, max(2, int(9 * scale)), cv2.LINE_AA)
    angles = np.deg2rad(np.arange(5) * 144 - 90)
    star = np.stack(
        [center[0] + 40 * scale * np.cos(angles), center[1] + 40 * scale * np.sin(angles)], axis=1
    )
    cv2.fillPoly(page, [star.astype(np.int32)], SEAL, cv2.LINE_AA)
    if skew_degrees:
        rotation = cv2.getRotationMatrix2D((w / 2, h / 2), -skew_degrees, 1.0)
        page = cv2.warpAffine(
            page, rotation, (w, h), flags=cv2.INTER_LINEAR, borderValue=(247, 247, 247)
        )
    return page


def desk(
    size: tuple[int, int],
    *,
    seed: int = 0,
    color: tuple[int, int, int] = (62, 104, 146),
    grain: float = 0.06,
) -> Image:
    """Wood-like texture; rendered at half size and scaled up (grain has no fine detail)."""
    w, h = size
    sw, sh = max(16, w // 2), max(12, h // 2)
    rng = np.random.default_rng(seed + 1000)
    low = cv2.resize(
        rng.normal(0, 1, (9, 12)).astype(np.float32), (sw, sh), interpolation=cv2.INTER_CUBIC
    )
    ys = np.arange(sh, dtype=np.float32)[:, None] * (h / sh)
    xs = np.arange(sw, dtype=np.float32)[None, :] * (w / sw)
    stripes = np.sin(ys / 7.0 + 3.0 * np.sin(xs / 230.0) + 2.0 * low)
    tone = (1.0 + 0.08 * low + grain * stripes).astype(np.float32)
    small = cv2.merge([np.clip(c * tone, 0, 255).astype(np.uint8) for c in color])
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.uint8)


def a4_quad(
    size: tuple[int, int],
    *,
    fill: float = 0.85,
    angle: float = 3.0,
    shrink: float = 0.05,
    shift: tuple[float, float] = (0.0, 0.0),
    landscape: bool = False,
) -> Corners:
    """A perspective A4 outline centred in an image of ``size = (w, h)``."""
    w, h = size
    ph = fill * h
    pw = ph / math.sqrt(2.0)
    if landscape:
        pw, ph = fill * h * math.sqrt(2.0) * 0.9, fill * h * 0.9
    cx, cy = w / 2 + shift[0] * w, h / 2 + shift[1] * h
    s = shrink * pw
    corners = np.array(
        [
            [cx - pw / 2 + s, cy - ph / 2],
            [cx + pw / 2 - s, cy - ph / 2],
            [cx + pw / 2, cy + ph / 2],
            [cx - pw / 2, cy + ph / 2],
        ]
    )
    t = math.radians(angle)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return np.asarray((corners - [cx, cy]) @ rot.T + [cx, cy], dtype=np.float64)


def render_scene(
    corners: Corners,
    size: tuple[int, int] = (2592, 1944),
    *,
    page: Image | None = None,
    seed: int = 0,
    desk_color: tuple[int, int, int] = (62, 104, 146),
    shadow: float = 0.35,
    blur: float = 0.0,
    noise: int = 3,
) -> Scene:
    """``page`` warped so its outer edge lands exactly on ``corners``."""
    w, h = size
    page = render_page(seed=seed) if page is None else page
    ph, pw = page.shape[:2]
    # Pixel centres sit at integer coordinates: the outer edge is half a pixel out.
    src = np.array(
        [[-0.5, -0.5], [pw - 0.5, -0.5], [pw - 0.5, ph - 0.5], [-0.5, ph - 0.5]], np.float32
    )
    matrix = cv2.getPerspectiveTransform(src, corners.astype(np.float32))
    warped = cv2.warpPerspective(page, matrix, (w, h), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpPerspective(
        np.ones((ph, pw), np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR
    )
    alpha = np.clip(alpha, 0, 1)
    background = desk((w, h), seed=seed, color=desk_color)
    image = cv2.blendLinear(warped, background, alpha, 1.0 - alpha)
    if shadow:
        ramp = np.clip(1.0 - np.arange(w, dtype=np.float32) / (0.35 * w), 0, 1)
        shade = 1.0 - shadow * cv2.GaussianBlur(ramp[None, :].repeat(8, 0), (0, 0), 3)[0]
        shade_map = cv2.merge([np.repeat(shade[None, :], h, axis=0)] * 3)
        image = cv2.multiply(image, shade_map, dtype=cv2.CV_8U)
    if blur:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    if noise:
        rng = np.random.default_rng(seed)
        grain_map = rng.integers(0, 2 * noise + 1, size=(h, w), dtype=np.uint8)
        image = cv2.subtract(cv2.add(image, cv2.merge([grain_map] * 3)), np.full_like(image, noise))
    return Scene(np.asarray(image, np.uint8), corners)
