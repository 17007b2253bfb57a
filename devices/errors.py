"""Named errors of the ``devices`` package.

Every error a driver raises on purpose derives from :class:`DeviceError`, itself a
:class:`vwindow.errors.VWindowError`, so the kiosk agent can catch one root and show
the message. Vendor and OS errors are translated with ``raise ... from err``; messages
name the driver, path or byte values involved and never carry personal data.
"""

from __future__ import annotations

from vwindow.errors import VWindowError


class DeviceError(VWindowError):
    """Root of every error raised by a device driver or device helper."""

    code = "device_error"
    http_status = 503


class DeviceStateError(DeviceError):
    """A device was used in a state that does not allow it (e.g. before ``start()``)."""

    code = "device_state"
    http_status = 409


class DeviceUnavailableError(DeviceError):
    """A driver cannot be loaded: its module or a vendor library failed to import."""

    code = "device_unavailable"


class UnknownDriverError(DeviceError):
    """The configuration names a device kind or driver that is not registered."""

    code = "unknown_driver"
    http_status = 400


class DeviceConfigError(DeviceError):
    """A driver was given options it does not accept or values it cannot use."""

    code = "device_config"
    http_status = 400


class DeviceNotFoundError(DeviceError):
    """The device node, port or library path a driver was told to open does not exist."""

    code = "device_not_found"


class DeviceIOError(DeviceError):
    """Talking to an opened device failed (read error, timeout, unplugged)."""

    code = "device_io"


class FrameError(DeviceError):
    """A byte frame on a serial line is malformed: preamble, length or checksum."""

    code = "device_frame"


class IdCardError(DeviceError):
    """Root of the ID-card reader's protocol-level failures (status words)."""

    code = "idcard_error"


class IdCardNotFoundError(IdCardError):
    """No card on the reader (status 0x80) or the card could not be selected (0x81)."""

    code = "idcard_not_found"
    http_status = 404


class IdCardReadError(IdCardError):
    """The reader found a card but could not read it (0x41 and other failure statuses)."""

    code = "idcard_read"


class IdCardFormatError(IdCardError):
    """The card's text block does not follow any known layout."""

    code = "idcard_format"


class PhotoDecoderError(DeviceError):
    """The vendor WLT photo decoder is not configured, missing or failed."""

    code = "photo_decoder"


class IdNumberError(DeviceError):
    """A citizen ID number (GB 11643) is malformed; the message says what is wrong."""

    code = "invalid_id_number"
    http_status = 400


class CodeDecodeError(DeviceError):
    """A frame handed to the QR/barcode decoder is not an image it can read."""

    code = "code_decode"
    http_status = 400


class ScannerError(DeviceError):
    """A code sent by a hand-held or desk scanner could not be turned into text."""

    code = "scanner_error"
    http_status = 400


class ScannerPayloadError(ScannerError):
    """A scanned code is not valid in the configured payload format (hex, base64, keys)."""

    code = "scan_payload"


class ScannerOverflowError(ScannerError):
    """A scanned code was longer than the configured limit and was discarded."""

    code = "scan_too_long"
