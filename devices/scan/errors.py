"""Named errors of the scan pipeline (``devices.scan``).

All derive from :class:`ScanError`, itself a :class:`devices.errors.DeviceError`, so the
kiosk agent's one ``except DeviceError`` also covers a still that cannot be scanned.
Messages name the problem and sizes or byte values, never image content.
"""

from __future__ import annotations

from typing import ClassVar

from devices.errors import DeviceConfigError, DeviceError
from devices.scan.reasons import RetakeReason


class ScanError(DeviceError):
    """Root of every error the scan pipeline raises on purpose."""

    code = "scan_error"
    http_status = 422


class InvalidImageError(ScanError):
    """The bytes handed to the pipeline are not a JPEG it can decode (empty, truncated,
    another format, absurd dimensions); the message says which."""

    code = "scan_invalid_image"
    http_status = 400


class PageNotFoundError(ScanError):
    """No page-shaped quadrilateral was found in the still; the user should retake it."""

    code = "scan_page_not_found"
    retake_reason: ClassVar[RetakeReason] = RetakeReason.NO_PAGE


class PdfAssemblyError(ScanError):
    """The pages could not be put into a PDF (no pages, a page that is not a JPEG)."""

    code = "scan_pdf"
    http_status = 400


class ScanConfigError(ScanError, DeviceConfigError):
    """A pipeline option or calibration input is out of range; the message names it."""

    code = "scan_config"
    http_status = 400
