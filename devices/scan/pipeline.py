"""The scan pipeline applied to each document-camera still: JPEG in, scanned page out.

API
---
``ScanPipeline(*, mode="color", blur_threshold=DEFAULT_BLUR_THRESHOLD,
max_glare_fraction=0.01, glare_level=250, dpi=200, jpeg_quality=85, deskew=True,
detector=None, rectifier=None)``   (a ``rectifier`` given brings its own dpi and deskew)
    ``process(jpeg: bytes, *, label="") -> ScanResult``           CPU-bound, blocking
    ``async process_async(jpeg: bytes, *, label="") -> ScanResult`` same, in a worker thread
    ``measure(jpeg: bytes) -> QualityReport``   detection + rectification + gates only
    ``calibrate(sharp_stills: Iterable[bytes], *, fraction=0.25) -> BlurCalibration``
    ``async calibrate_async(...)``   the same in a worker thread
``ScanResult`` frozen dataclass:
    ``jpeg`` (processed page), ``original`` (the input bytes, untouched), ``corners``
    (:class:`Quad` in still pixels), ``width``/``height`` of the page, ``mode``,
    ``quality`` (:class:`QualityReport`), ``aspect``, ``snapped_to_a4``,
    ``skew_degrees``, ``preview`` (the page 800 px wide before enhancement: read the
    page's codes from it with :func:`devices.qr_page.read_page_codes`), ``timings``
    (seconds per stage);
    ``needs_retake``, ``reasons``, ``messages`` from the quality report.

Stages: decode (:mod:`.jpeg`) -> find the page (:mod:`.detect`) -> perspective and
deskew (:mod:`.rectify`) -> blur and glare gates (:mod:`.quality`) on
the rectifier's 800-px preview of the page (before enhancement, so sharpening cannot
fake focus) -> colour or B/W enhancement (:mod:`.enhance`) of the full page -> JPEG.
A page that fails a gate is still processed: the kiosk shows it with the reason and
lets the citizen retake, an agent may accept it anyway. Errors:
:class:`InvalidImageError` for bytes that are not a usable JPEG,
:class:`PageNotFoundError` when there is no page, both :class:`ScanError`.

A pipeline holds only its settings, so one instance may serve concurrent calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from devices.scan.detect import PageDetector, Quad
from devices.scan.enhance import ScanMode, enhance
from devices.scan.errors import ScanConfigError
from devices.scan.imaging import BgrImage
from devices.scan.jpeg import decode_jpeg, encode_jpeg
from devices.scan.quality import (
    DEFAULT_BLUR_THRESHOLD,
    BlurCalibration,
    QualityGate,
    QualityReport,
    RetakeReason,
    calibrate,
)
from devices.scan.rectify import Rectified, Rectifier

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScanResult:
    jpeg: bytes
    original: bytes
    corners: Quad
    width: int
    height: int
    mode: ScanMode
    quality: QualityReport
    aspect: float
    snapped_to_a4: bool
    skew_degrees: float
    preview: BgrImage
    timings: Mapping[str, float]

    @property
    def needs_retake(self) -> bool:
        return self.quality.needs_retake

    @property
    def reasons(self) -> tuple[RetakeReason, ...]:
        return self.quality.reasons

    @property
    def messages(self) -> tuple[str, ...]:
        return self.quality.messages

    def __repr__(self) -> str:
        # The page may be a citizen's document: sizes and verdicts only.
        reasons = ",".join(r.value for r in self.reasons) or "none"
        return (
            f"ScanResult({self.mode.value} {self.width}x{self.height}, {len(self.jpeg)} bytes "
            f"from {len(self.original)}, retake={reasons})"
        )


class ScanPipeline:
    """Detect, rectify, check and enhance one still; see the module docstring."""

    def __init__(
        self,
        *,
        mode: ScanMode | str = ScanMode.COLOR,
        blur_threshold: float = DEFAULT_BLUR_THRESHOLD,
        max_glare_fraction: float = 0.01,
        glare_level: int = 250,
        dpi: int = 200,
        jpeg_quality: int = 85,
        deskew: bool = True,
        detector: PageDetector | None = None,
        rectifier: Rectifier | None = None,
    ) -> None:
        try:
            self.mode = ScanMode(mode)
        except ValueError:
            raise ScanConfigError(
                f"scan mode {mode!r} is not one of 'color', 'bw'", field="mode"
            ) from None
        if not 1 <= jpeg_quality <= 100:
            raise ScanConfigError(
                f"jpeg_quality {jpeg_quality} is not in 1..100", field="jpeg_quality"
            )
        self.jpeg_quality = jpeg_quality
        self.gate = QualityGate(
            blur_threshold=blur_threshold,
            max_glare_fraction=max_glare_fraction,
            glare_level=glare_level,
        )
        self.detector = detector if detector is not None else PageDetector()
        self.rectifier = rectifier if rectifier is not None else Rectifier(dpi=dpi, deskew=deskew)

    def __repr__(self) -> str:
        return (
            f"<ScanPipeline mode={self.mode.value!r} "
            f"blur_threshold={self.gate.blur_threshold:.1f} dpi={self.rectifier.dpi}>"
        )

    def _page(self, jpeg: bytes, timings: dict[str, float]) -> tuple[Quad, Rectified]:
        started = time.perf_counter()
        still = decode_jpeg(jpeg)
        timings["decode"] = time.perf_counter() - started
        started = time.perf_counter()
        quad = self.detector.detect(still).quad
        timings["detect"] = time.perf_counter() - started
        started = time.perf_counter()
        rectified = self.rectifier.rectify(still, quad)
        timings["rectify"] = time.perf_counter() - started
        return quad, rectified

    def process(self, jpeg: bytes, *, label: str = "") -> ScanResult:
        """Run every stage on one still (blocking; see :meth:`process_async`)."""
        timings: dict[str, float] = {}
        begun = time.perf_counter()
        quad, rectified = self._page(jpeg, timings)
        started = time.perf_counter()
        report = self.gate.assess(rectified.preview)
        timings["quality"] = time.perf_counter() - started
        started = time.perf_counter()
        page = enhance(rectified.image, self.mode)
        timings["enhance"] = time.perf_counter() - started
        started = time.perf_counter()
        out = encode_jpeg(page, quality=self.jpeg_quality)
        timings["encode"] = time.perf_counter() - started
        timings["total"] = time.perf_counter() - begun
        height, width = page.shape[:2]
        logger.info(
            "scan %s: %s page %dx%d, sharpness %.0f (threshold %.0f), glare %.2f%%, "
            "skew %.2f deg, retake [%s], %.0f ms",
            label or "-",
            self.mode.value,
            width,
            height,
            report.sharpness,
            report.blur_threshold,
            100 * report.glare_fraction,
            rectified.skew_degrees,
            ",".join(r.value for r in report.reasons),
            1000 * timings["total"],
        )
        return ScanResult(
            jpeg=out,
            original=jpeg,
            corners=quad,
            width=width,
            height=height,
            mode=self.mode,
            quality=report,
            aspect=rectified.aspect,
            snapped_to_a4=rectified.snapped_to_a4,
            skew_degrees=rectified.skew_degrees,
            preview=rectified.preview,
            timings=MappingProxyType(timings),
        )

    async def process_async(self, jpeg: bytes, *, label: str = "") -> ScanResult:
        """:meth:`process` in a worker thread, so the event loop keeps serving video."""
        return await asyncio.to_thread(self.process, jpeg, label=label)

    def measure(self, jpeg: bytes) -> QualityReport:
        """The quality gates' verdict on one still, without enhancing or encoding it."""
        _, rectified = self._page(jpeg, {})
        return self.gate.assess(rectified.preview)

    def calibrate(
        self, sharp_stills: Iterable[bytes], *, fraction: float = 0.25
    ) -> BlurCalibration:
        """Blur threshold for this device from stills known to be sharp.

        Use the result for the device's configuration:
        ``ScanPipeline(blur_threshold=calibration.threshold, ...)``.
        """
        scores = [self.measure(still).sharpness for still in sharp_stills]
        result = calibrate(scores, fraction=fraction)
        logger.info(
            "blur calibration: threshold %.1f from %d stills (median %.1f, range %.1f..%.1f)",
            result.threshold,
            result.samples,
            result.median,
            result.minimum,
            result.maximum,
        )
        return result

    async def calibrate_async(
        self, sharp_stills: Iterable[bytes], *, fraction: float = 0.25
    ) -> BlurCalibration:
        stills = list(sharp_stills)
        return await asyncio.to_thread(self.calibrate, stills, fraction=fraction)
