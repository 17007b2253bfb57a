"""The scan pipeline for document-camera stills: page -> upright, clean, checked JPEG.

Modules: ``detect`` (page quadrilateral), ``rectify`` (perspective, aspect, deskew),
``enhance`` (colour / black-and-white), ``quality`` (blur and glare gates, blur
calibration), ``reasons`` (retake messages in Chinese and English), ``jpeg`` (checked
decode / encode), ``pipeline`` (``ScanPipeline``, ``ScanResult``), ``pdf`` (img2pdf
assembly) and ``errors``. Everything here is CPU work on bytes and arrays: no device,
no I/O; the async wrappers run it in worker threads.
"""

from __future__ import annotations

from devices.scan.detect import PageDetector, Quad
from devices.scan.enhance import ScanMode
from devices.scan.errors import (
    InvalidImageError,
    PageNotFoundError,
    PdfAssemblyError,
    ScanConfigError,
    ScanError,
)
from devices.scan.pdf import assemble_pdf, assemble_pdf_async
from devices.scan.pipeline import ScanPipeline, ScanResult
from devices.scan.quality import BlurCalibration, QualityReport, calibrate
from devices.scan.reasons import RetakeReason

__all__ = [
    "BlurCalibration",
    "InvalidImageError",
    "PageDetector",
    "PageNotFoundError",
    "PdfAssemblyError",
    "Quad",
    "QualityReport",
    "RetakeReason",
    "ScanConfigError",
    "ScanError",
    "ScanMode",
    "ScanPipeline",
    "ScanResult",
    "assemble_pdf",
    "assemble_pdf_async",
    "calibrate",
]
