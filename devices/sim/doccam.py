"""Simulated document camera: a rendered desk scene with an A4 form on it.

API
---
``SimulatedDocumentCamera(*, name=None, seed=0, blur=False, glare=False,
still_size=(2592, 1944), preview_size=(640, 480), jpeg_quality=90, clock=None,
qr_text=None)``
    a :class:`devices.doccam.DocumentCamera` ("doccam" / "sim" in the registry).
    ``qr_text`` prints a QR code with that text (UTF-8) in the page's bottom-left corner,
    like an e-licence or booking slip laid under the camera.
    ``capture_still()`` -> real JPEG (``cv2.imencode``) at ``still_size``; each still shows
    the next "Page N" and fresh sensor noise, so consecutive stills differ.
    ``preview_frame()`` -> BGR ``uint8`` at ``preview_size`` with a moving noise patch,
    a one-pixel jitter and a timestamp.
    ``pages_captured -> int``.

The scene -- desk background, a white A4 page warped in perspective with a title, text
lines, a table, a signature and a red round stamp, a soft shadow across one side, an
optional specular glare blob and an optional focus blur -- is rendered once in
``start()``. Stills redraw only the page label and re-warp the page; preview frames only
copy the prepared image and touch a small patch, so the preview costs well under a
millisecond per frame. ``seed`` makes the scene and the stills reproducible.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt
import segno

from devices.doccam import BgrImage, DocumentCamera, Size, Still
from devices.errors import DeviceConfigError, DeviceIOError

logger = logging.getLogger(__name__)

FloatImage = npt.NDArray[np.float32]

PAGE_SIZE: Final = Size(1240, 1754)  # A4 at 150 dpi
_FONT: Final = cv2.FONT_HERSHEY_SIMPLEX
_INK: Final = (38, 34, 30)
_STAMP_BGR: Final = (52, 40, 205)
_WORDS: Final = tuple(
    (
        "the applicant hereby declares that information provided in this form is true "
        "complete and correct township service hall county approval document number "
        "residence permit business licence material review date of birth address contact "
        "telephone household register agricultural subsidy pension medical insurance "
        "social security certificate attached copy original verified signature"
    ).split()
)


def _clock_utc() -> datetime:
    return datetime.now(UTC)


def _u8(image: object) -> BgrImage:
    """View an OpenCV result as a typed uint8 array (no copy when it already is one)."""
    return np.asarray(image, dtype=np.uint8)


def _f32(image: object) -> FloatImage:
    return np.asarray(image, dtype=np.float32)


class SimulatedDocumentCamera(DocumentCamera):
    """A document camera that needs no hardware; see the module docstring."""

    def __init__(
        self,
        *,
        name: str | None = None,
        seed: int = 0,
        blur: bool = False,
        glare: bool = False,
        still_size: tuple[int, int] = (2592, 1944),
        preview_size: tuple[int, int] = (640, 480),
        jpeg_quality: int = 90,
        clock: Callable[[], datetime] | None = None,
        qr_text: str | None = None,
    ) -> None:
        super().__init__(name=name)
        for label, (w, h) in (("still_size", still_size), ("preview_size", preview_size)):
            if w < 64 or h < 48:
                raise DeviceConfigError(f"{label} {w}x{h} is too small (minimum 64x48)")
        if not 1 <= jpeg_quality <= 100:
            raise DeviceConfigError(f"jpeg_quality {jpeg_quality} is not in 1..100")
        self._seed = seed
        self._blur = blur
        self._glare = glare
        self._qr_text = qr_text
        self._still_size = Size(*still_size)
        self._preview_size = Size(*preview_size)
        self._jpeg_quality = jpeg_quality
        self._clock = clock if clock is not None else _clock_utc
        self._scene: _Scene | None = None
        self._pages = 0
        self._frames = 0
        self._preview_rng = np.random.default_rng(seed)

    @property
    def still_size(self) -> Size:
        return self._still_size

    @property
    def preview_size(self) -> Size:
        return self._preview_size

    @property
    def pages_captured(self) -> int:
        return self._pages

    async def _start(self) -> None:
        self._scene = await asyncio.to_thread(
            _Scene, self._seed, self._still_size, self._preview_size, self._blur, self._glare,
            self._qr_text,
        )
        self._preview_rng = np.random.default_rng(self._seed)

    async def _stop(self) -> None:
        self._scene = None

    async def capture_still(self) -> Still:
        self.require_started("capture a still")
        scene = self._scene
        if scene is None:  # pragma: no cover - guarded by require_started
            raise DeviceIOError(f"doccam {self.name!r} has no scene")
        self._pages += 1
        page = self._pages
        captured_at = self._clock()
        jpeg = await asyncio.to_thread(scene.still_jpeg, page, self._jpeg_quality)
        logger.debug("doccam %s: still page %d, %d bytes", self.name, page, len(jpeg))
        return Still(jpeg, self._still_size.width, self._still_size.height, captured_at)

    async def preview_frame(self) -> BgrImage:
        self.require_started("read a preview frame")
        scene = self._scene
        if scene is None:  # pragma: no cover - guarded by require_started
            raise DeviceIOError(f"doccam {self.name!r} has no scene")
        self._frames += 1
        return scene.preview(self._preview_rng, self._clock(), self._frames)


class _Scene:
    """Everything rendered once per ``start()``; per-still and per-frame work is small."""

    def __init__(self, seed: int, still: Size, preview: Size, blur: bool, glare: bool,
                 qr_text: str | None = None) -> None:
        rng = np.random.default_rng(seed)
        self._seed = seed
        self._still = still
        self._blur = blur
        self.page = _render_page(rng)
        if qr_text:
            _print_qr(self.page, qr_text)
        self.matrix = _page_matrix(rng, still)
        self.background = _render_desk(rng, still)
        self.alpha = cv2.warpPerspective(
            np.full((PAGE_SIZE.height, PAGE_SIZE.width), 1.0, np.float32),
            self.matrix,
            still,
            flags=cv2.INTER_LINEAR,
        )
        self.shade = _shadow_map(rng, still)
        self.glare = _glare_map(rng, still, self.matrix) if glare else None
        first = self._compose(self.page)
        small = _u8(cv2.resize(first, preview, interpolation=cv2.INTER_AREA))
        if blur:
            small = _u8(cv2.GaussianBlur(small, (0, 0), 1.6))
        self.preview_base: BgrImage = small
        patch_w, patch_h = max(8, preview.width // 8), max(6, preview.height // 8)
        self._patch = (patch_w, patch_h)

    def _compose(self, page: BgrImage) -> BgrImage:
        warped = cv2.warpPerspective(page, self.matrix, self._still, flags=cv2.INTER_LINEAR)
        mixed = cv2.blendLinear(warped, self.background, self.alpha, 1.0 - self.alpha)
        lit = cv2.multiply(mixed, self.shade, dtype=cv2.CV_8U)
        if self.glare is not None:
            lit = cv2.add(lit, self.glare)
        if self._blur:
            lit = cv2.GaussianBlur(lit, (0, 0), 4.0)
        return _u8(lit)

    def still_jpeg(self, page_number: int, quality: int) -> bytes:
        page = self.page.copy()
        label = f"Page {page_number}"
        (tw, _), _ = cv2.getTextSize(label, _FONT, 1.0, 2)
        cv2.putText(
            page,
            label,
            ((PAGE_SIZE.width - tw) // 2, PAGE_SIZE.height - 50),
            _FONT,
            1.0,
            _INK,
            2,
            cv2.LINE_AA,
        )
        image = self._compose(page)
        rng = np.random.default_rng([self._seed, page_number])
        noise = rng.integers(0, 7, size=image.shape[:2], dtype=np.uint8)
        noise3 = cv2.merge([noise, noise, noise])
        image = _u8(cv2.subtract(cv2.add(image, noise3), np.full_like(image, 3)))
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise DeviceIOError("simulated doccam: JPEG encoding failed")
        return bytes(buf.tobytes())

    def preview(self, rng: np.random.Generator, now: datetime, frame_no: int) -> BgrImage:
        h, w = self.preview_base.shape[:2]
        dx, dy = (int(v) for v in rng.integers(-1, 2, size=2))
        frame = (
            np.roll(self.preview_base, (dy, dx), axis=(0, 1))
            if dx or dy
            else (self.preview_base.copy())
        )
        pw, ph = self._patch
        x = int(rng.integers(0, w - pw))
        y = int(rng.integers(0, h - ph))
        region = frame[y : y + ph, x : x + pw]
        jitter = rng.integers(0, 9, size=region.shape, dtype=np.uint8)
        cv2.subtract(cv2.add(region, jitter), np.full_like(region, 4), dst=region)
        stamp = f"{now:%H:%M:%S}.{now.microsecond // 1000:03d} #{frame_no}"
        scale = max(0.35, h / 1000)
        cv2.putText(frame, stamp, (8, h - 10), _FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(frame, stamp, (8, h - 10), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return frame


def _sentence(rng: np.random.Generator, max_width: int, scale: float) -> str:
    words: list[str] = []
    while True:
        word = _WORDS[int(rng.integers(0, len(_WORDS)))]
        candidate = " ".join([*words, word])
        if cv2.getTextSize(candidate, _FONT, scale, 2)[0][0] > max_width:
            break
        words.append(word)
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _render_page(rng: np.random.Generator) -> BgrImage:
    w, h = PAGE_SIZE
    page = np.full((h, w, 3), (246, 248, 250), np.uint8)
    # Paper is never perfectly flat white: a faint vertical gradient.
    ramp = np.linspace(0, 6, h, dtype=np.float32)[:, None, None]
    page = np.clip(page.astype(np.float32) - ramp, 0, 255).astype(np.uint8)
    margin = 100
    title = "APPLICATION FOR TOWNSHIP SERVICE"
    (tw, _), _ = cv2.getTextSize(title, _FONT, 1.5, 3)
    cv2.putText(page, title, ((w - tw) // 2, 150), _FONT, 1.5, _INK, 3, cv2.LINE_AA)
    form_no = f"Form No. VW-{int(rng.integers(1000, 9999))}"
    cv2.putText(page, form_no, (margin, 215), _FONT, 0.8, _INK, 2, cv2.LINE_AA)
    cv2.line(page, (margin, 235), (w - margin, 235), _INK, 2, cv2.LINE_AA)
    y = 295
    for i in range(9):
        width = (w - 2 * margin) if i % 4 != 3 else int((w - 2 * margin) * rng.uniform(0.4, 0.8))
        cv2.putText(
            page, _sentence(rng, width, 0.85), (margin, y), _FONT, 0.85, _INK, 2, cv2.LINE_AA
        )
        y += 44
    # A table: header plus five rows, three columns.
    top, row_h = y + 20, 62
    cols = (margin, margin + 420, margin + 700, w - margin)
    rows = 6
    for r in range(rows + 1):
        cv2.line(page, (cols[0], top + r * row_h), (cols[-1], top + r * row_h), _INK, 2)
    for c in cols:
        cv2.line(page, (c, top), (c, top + rows * row_h), _INK, 2)
    for c, head in enumerate(("Material", "Copies", "Remarks")):
        cv2.putText(page, head, (cols[c] + 14, top + 42), _FONT, 0.9, _INK, 2, cv2.LINE_AA)
    for r in range(1, rows):
        base = top + r * row_h + 42
        cv2.putText(
            page, _sentence(rng, 380, 0.75), (cols[0] + 14, base), _FONT, 0.75, _INK, 2, cv2.LINE_AA
        )
        cv2.putText(
            page,
            str(int(rng.integers(1, 4))),
            (cols[1] + 14, base),
            _FONT,
            0.75,
            _INK,
            2,
            cv2.LINE_AA,
        )
        cv2.putText(
            page, _sentence(rng, 300, 0.75), (cols[2] + 14, base), _FONT, 0.75, _INK, 2, cv2.LINE_AA
        )
    y = top + rows * row_h + 70
    for _ in range(6):
        cv2.putText(
            page,
            _sentence(rng, w - 2 * margin, 0.85),
            (margin, y),
            _FONT,
            0.85,
            _INK,
            2,
            cv2.LINE_AA,
        )
        y += 44
    sig_y = min(y + 80, h - 260)
    cv2.putText(page, "Signature:", (margin, sig_y), _FONT, 0.9, _INK, 2, cv2.LINE_AA)
    cv2.line(page, (margin + 190, sig_y + 8), (margin + 560, sig_y + 8), _INK, 1)
    xs = np.linspace(margin + 200, margin + 540, 60)
    ys = sig_y - 12 + 14 * np.sin(xs / 17.0 + rng.uniform(0, 6)) * np.cos(xs / 41.0)
    pts = np.stack([xs, ys], axis=1).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(page, [pts], False, (120, 60, 20), 2, cv2.LINE_AA)
    cv2.putText(page, "Date: 2024-05-20", (margin + 640, sig_y), _FONT, 0.9, _INK, 2, cv2.LINE_AA)
    _stamp(page, (w - margin - 220 + int(rng.integers(-30, 30)), sig_y - 30), rng)
    return _u8(page)


def _print_qr(page: BgrImage, text: str) -> None:
    """A QR code printed in the bottom-left corner (quiet zone included)."""
    # make_qr: a short text would otherwise become a Micro QR, which phones and most
    # scanners cannot read.
    qr = segno.make_qr(text, error="m", encoding="utf-8")
    modules = np.array(qr.matrix, dtype=np.uint8)  # 1 = dark
    side = 220
    scale = side // (modules.shape[0] + 8)
    image = np.where(np.kron(modules, np.ones((scale, scale), np.uint8)) > 0, 25, 248)
    border = 4 * scale
    image = np.pad(image.astype(np.uint8), border, constant_values=248)
    h = page.shape[0]
    y0, x0 = h - 20 - image.shape[0], 100  # below the signature line
    page[y0:y0 + image.shape[0], x0:x0 + image.shape[1]] = image[:, :, None]


def _stamp(page: BgrImage, center: tuple[int, int], rng: np.random.Generator) -> None:
    """A red official seal, multiplied onto the page like ink so text shows through."""
    mask = np.zeros(page.shape[:2], np.uint8)
    cx, cy = center
    radius = 120
    cv2.circle(mask, center, radius, 255, 9, cv2.LINE_AA)
    cv2.circle(mask, center, radius - 18, 255, 2, cv2.LINE_AA)
    angles = np.deg2rad(np.arange(5) * 144 - 90 + rng.uniform(-8, 8))
    star = np.stack([cx + 42 * np.cos(angles), cy - 10 + 42 * np.sin(angles)], axis=1)
    cv2.fillPoly(mask, [star.astype(np.int32)], 255, cv2.LINE_AA)
    for text, dy, scale in (("OFFICIAL SEAL", 60, 0.7), ("SERVICE HALL", -62, 0.6)):
        (tw, _), _ = cv2.getTextSize(text, _FONT, scale, 2)
        cv2.putText(mask, text, (cx - tw // 2, cy + dy), _FONT, scale, 255, 2, cv2.LINE_AA)
    # Only the seal's box is blended; the rest of the page is untouched.
    x0, y0 = max(cx - radius - 8, 0), max(cy - radius - 8, 0)
    x1, y1 = min(cx + radius + 8, page.shape[1]), min(cy + radius + 8, page.shape[0])
    box = page[y0:y1, x0:x1]
    # Uneven ink: thin the seal in random spots.
    speckle = rng.uniform(0.55, 1.0, size=(6, 6)).astype(np.float32)
    coverage = _f32(cv2.resize(speckle, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC))
    a = (mask[y0:y1, x0:x1].astype(np.float32) / 255.0 * np.clip(coverage, 0, 1))[:, :, None]
    ink = np.array(_STAMP_BGR, np.float32) / 255.0
    box[:] = np.clip(box.astype(np.float32) * (1.0 - a + a * ink), 0, 255).astype(np.uint8)


def _page_matrix(rng: np.random.Generator, still: Size) -> npt.NDArray[np.float64]:
    """Perspective from the flat page to where it lies in the photo, slightly askew."""
    pw, ph = PAGE_SIZE
    scale = 0.86 * still.height / ph
    w, h = pw * scale, ph * scale
    cx = still.width / 2 + rng.uniform(-0.05, 0.05) * still.width
    cy = still.height / 2 + rng.uniform(-0.02, 0.02) * still.height
    # The camera looks down at an angle: the far (top) edge is shorter.
    top_shrink = rng.uniform(0.04, 0.09) * w
    corners = np.array(
        [
            [cx - w / 2 + top_shrink, cy - h / 2],
            [cx + w / 2 - top_shrink, cy - h / 2],
            [cx + w / 2, cy + h / 2],
            [cx - w / 2, cy + h / 2],
        ]
    )
    theta = np.deg2rad(rng.uniform(-5, 5))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    corners = (corners - [cx, cy]) @ rot.T + [cx, cy]
    corners += rng.uniform(-0.01, 0.01, size=(4, 2)) * still.height
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    return np.asarray(
        cv2.getPerspectiveTransform(src, corners.astype(np.float32)), dtype=np.float64
    )


def _render_desk(rng: np.random.Generator, still: Size) -> BgrImage:
    w, h = still
    # Rendered at quarter area and scaled up: wood grain has no fine detail to lose.
    sw, sh = max(16, w // 2), max(12, h // 2)
    base = np.array([62, 104, 146], np.float32)  # warm wood, BGR
    low = rng.normal(0, 1, size=(9, 12)).astype(np.float32)
    low = _f32(cv2.resize(low, (sw, sh), interpolation=cv2.INTER_CUBIC))
    xs = np.arange(sw, dtype=np.float32)[None, :] * (w / sw)
    ys = np.arange(sh, dtype=np.float32)[:, None] * (h / sh)
    grain = np.sin(ys / 9.0 + 3.0 * np.sin(xs / 260.0) + low * 2.0).astype(np.float32)
    tone = 1.0 + 0.08 * low + 0.05 * grain
    desk = _u8(np.clip(base[None, None, :] * tone[:, :, None], 0, 255))
    return _u8(cv2.resize(desk, (w, h), interpolation=cv2.INTER_LINEAR))


def _shadow_map(rng: np.random.Generator, still: Size) -> FloatImage:
    """Soft shadow of the camera arm / a hand across one side of the photo."""
    w, h = still
    sw, sh = 160, 120
    small = np.zeros((sh, sw), np.float32)
    x0 = int(rng.uniform(0.05, 0.25) * sw)
    poly = np.array([[0, 0], [x0 + 45, 0], [x0 + 10, sh], [0, sh]], np.int32)
    cv2.fillPoly(small, [poly], 1.0)
    small = _f32(cv2.GaussianBlur(small, (0, 0), 9))
    strength = float(rng.uniform(0.3, 0.42))
    shade = 1.0 - strength * cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return _f32(cv2.merge([shade, shade, shade]))


def _glare_map(rng: np.random.Generator, still: Size, matrix: npt.NDArray[np.float64]) -> BgrImage:
    """A specular highlight on the glossy page: a bright blob that saturates."""
    w, h = still
    pw, ph = PAGE_SIZE
    spot = np.array([[[rng.uniform(0.3, 0.7) * pw, rng.uniform(0.25, 0.6) * ph]]], np.float32)
    gx, gy = cv2.perspectiveTransform(spot, matrix)[0, 0]
    sw, sh = 256, int(256 * h / w)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    cx, cy = gx * sw / w, gy * sh / h
    sigma = 0.06 * sw
    blob = np.exp(-(((xx - cx) / (1.6 * sigma)) ** 2 + ((yy - cy) / sigma) ** 2) / 2.0)
    blob = _f32(cv2.resize(blob * 255.0, (w, h), interpolation=cv2.INTER_CUBIC))
    g = np.clip(blob, 0, 255).astype(np.uint8)
    return _u8(cv2.merge([g, g, g]))
