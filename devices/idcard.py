"""Second-generation ID-card reader (SAM module on a serial line): the driver.

The frame layer lives in :mod:`devices.idcard_protocol`, the text-block layouts in
:mod:`devices.idcard_text`; this module re-exports what callers need.

A read is three exchanges: find (``20 01``, expect ``9F``), select (``20 02``, expect
``90``), read (``30 01``, expect ``90``; ``30 10`` with fingerprints). Status 80/81 raise
``IdCardNotFoundError``, 41 and other failures ``IdCardReadError``, bad frames
``FrameError``, silence or a dropped line ``DeviceIOError``. Ports open through
``serial.serial_for_url``, so ``/dev/ttyUSB0``, ``socket://host:port`` and ``loop://``
all work; blocking I/O runs in a worker thread, one exchange at a time.

API
---
``IdCardReader(Device)``, ``kind = "idcard"`` ("idcard" / "serial" in the registry)
    ``IdCardReader(*, name=None, url="/dev/ttyUSB0", baudrate=115200, timeout=2.0,
    read_fingerprint=False, photo_decoder_path=None, photo_decoder_function="unpack")``
    ``async read_card() -> IdCardData``   one card now, or ``IdCardNotFoundError``
    ``async wait_for_card(*, poll_interval=0.3) -> IdCardData``  (wrap in asyncio.timeout)
    ``async check_sam() -> None``         SAM status (``11 FF``) must be 0x90
    ``async decode_photo(card) -> bytes`` BMP via the vendor decoder, else
                                          ``PhotoDecoderError``
``WltPhotoDecoder(library_path, *, function="unpack")``
    loads a vendor WLT library with ctypes (``int unpack(char *wlt, char *bmp, int
    save)``, returns 1 on success); ``decode(wlt: bytes) -> bytes``. A configured path
    that does not exist raises ``PhotoDecoderError`` naming it. The WLT format itself is
    proprietary: without a decoder the photo stays as its 1,024 raw bytes.
Re-exported: ``IdCardData``, ``CardType``, ``Gender``, ``parse_text``, ``encode_text``,
``Response``, ``build_command``, ``parse_response``, ``read_frame``, the command constants.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import threading
from pathlib import Path
from typing import ClassVar, Final

import serial

from devices.base import Device
from devices.errors import (
    DeviceConfigError,
    DeviceIOError,
    DeviceNotFoundError,
    IdCardNotFoundError,
    PhotoDecoderError,
)
from devices.idcard_protocol import (
    FIND,
    READ,
    READ_WITH_FINGERPRINT,
    SAM_STATUS,
    SELECT,
    STATUS_FOUND,
    STATUS_OK,
    Command,
    Response,
    build_command,
    parse_response,
    read_frame,
    split_card_data,
)
from devices.idcard_text import (
    PHOTO_LENGTH,
    CardType,
    Gender,
    IdCardData,
    encode_text,
    parse_text,
)

__all__ = [
    "CardType",
    "Gender",
    "IdCardData",
    "IdCardReader",
    "Response",
    "WltPhotoDecoder",
    "build_command",
    "encode_text",
    "parse_response",
    "parse_text",
    "read_frame",
]

logger = logging.getLogger(__name__)

BMP_SIZE: Final = 38862  # 102 x 126 px, 24 bit, rows padded to 4 bytes, + 54-byte header


class WltPhotoDecoder:
    """A vendor WLT -> BMP decoder loaded with ctypes (only when a path is configured)."""

    def __init__(self, library_path: str, *, function: str = "unpack") -> None:
        path = Path(library_path)
        if not path.is_file():
            raise PhotoDecoderError(f"WLT decoder library {library_path!r} does not exist")
        try:
            library = ctypes.CDLL(str(path))
        except OSError as err:
            raise PhotoDecoderError(
                f"cannot load WLT decoder library {library_path!r}: {err}"
            ) from err
        try:
            fn = getattr(library, function)
        except AttributeError:
            raise PhotoDecoderError(
                f"WLT decoder library {library_path!r} has no function {function!r}"
            ) from None
        fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        fn.restype = ctypes.c_int
        self._fn = fn
        self.library_path = library_path

    def decode(self, wlt: bytes) -> bytes:
        """Decode a 1,024-byte WLT photo to a BMP file's bytes."""
        if len(wlt) != PHOTO_LENGTH:
            raise PhotoDecoderError(f"WLT photo has {len(wlt)} bytes, expected {PHOTO_LENGTH}")
        src = ctypes.create_string_buffer(wlt, len(wlt))
        dst = ctypes.create_string_buffer(BMP_SIZE)
        result = int(self._fn(src, dst, 0))
        if result != 1:
            raise PhotoDecoderError(f"WLT decoder {self.library_path!r} returned {result}")
        return dst.raw


class IdCardReader(Device):
    """A SAM ID-card reader on a serial port; see the module docstring."""

    kind: ClassVar[str] = "idcard"

    def __init__(
        self,
        *,
        name: str | None = None,
        url: str = "/dev/ttyUSB0",
        baudrate: int = 115200,
        timeout: float = 2.0,
        read_fingerprint: bool = False,
        photo_decoder_path: str | None = None,
        photo_decoder_function: str = "unpack",
    ) -> None:
        super().__init__(name=name)
        if timeout <= 0:
            raise DeviceConfigError(f"timeout {timeout} must be positive")
        self._url = url
        self._baudrate = baudrate
        self._timeout = timeout
        self._read_fingerprint = read_fingerprint
        self._decoder_path = photo_decoder_path
        self._decoder_function = photo_decoder_function
        self._decoder: WltPhotoDecoder | None = None
        self._port: serial.SerialBase | None = None
        self._io_lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._url

    async def _start(self) -> None:
        decoder = None
        if self._decoder_path is not None:
            decoder = await asyncio.to_thread(
                WltPhotoDecoder, self._decoder_path, function=self._decoder_function
            )
        self._port = await asyncio.to_thread(self._open_port)
        self._decoder = decoder

    def _open_port(self) -> serial.SerialBase:
        try:
            port = serial.serial_for_url(
                self._url,
                baudrate=self._baudrate,
                timeout=self._timeout,
                write_timeout=self._timeout,
            )
        except ValueError as err:
            raise DeviceConfigError(f"ID-card reader port {self._url!r}: {err}") from err
        except serial.SerialException as err:
            if err.errno == errno.ENOENT:
                raise DeviceNotFoundError(
                    f"ID-card reader port {self._url!r} does not exist"
                ) from err
            raise DeviceIOError(f"cannot open ID-card reader port {self._url!r}: {err}") from err
        if not isinstance(port, serial.SerialBase):  # pragma: no cover - pyserial contract
            raise DeviceIOError(f"{self._url!r} did not open as a serial port")
        return port

    async def _stop(self) -> None:
        port, self._port = self._port, None
        self._decoder = None
        if port is not None:

            def close() -> None:
                with self._io_lock:
                    port.close()

            await asyncio.to_thread(close)

    def _exchange(self, command: Command, expected: int, action: str) -> Response:
        """Send one command and check its answer. Call with ``_io_lock`` held."""
        port = self._port
        if port is None:
            raise DeviceIOError(f"ID-card reader {self.name!r} is closed")
        try:
            port.reset_input_buffer()  # a late answer to an earlier command is stale
            port.write(build_command(command))
            frame = read_frame(port.read)
        except serial.SerialException as err:
            raise DeviceIOError(f"ID-card reader {self._url!r}: {action} failed: {err}") from err
        except DeviceIOError as err:
            raise DeviceIOError(f"ID-card reader {self._url!r}: {action}: {err.message}") from err
        response = parse_response(frame)
        response.check(expected, action)
        return response

    def _read_card_blocking(self) -> IdCardData:
        with self._io_lock:
            self._exchange(FIND, STATUS_FOUND, "find card")
            self._exchange(SELECT, STATUS_OK, "select card")
            command = READ_WITH_FINGERPRINT if self._read_fingerprint else READ
            response = self._exchange(command, STATUS_OK, "read card")
        payload = split_card_data(response.data, fingerprint=self._read_fingerprint)
        card = parse_text(payload.text, photo=payload.photo, fingerprint=payload.fingerprint)
        logger.info("idcard %s: read a %s card", self.name, card.card_type.name)
        return card

    async def read_card(self) -> IdCardData:
        """Read the card lying on the reader now."""
        self.require_started("read a card")
        return await asyncio.to_thread(self._read_card_blocking)

    async def wait_for_card(self, *, poll_interval: float = 0.3) -> IdCardData:
        """Poll until a card is read. Bound it with ``asyncio.timeout()``."""
        self.require_started("wait for a card")
        while True:
            try:
                return await self.read_card()
            except IdCardNotFoundError:
                await asyncio.sleep(poll_interval)

    async def check_sam(self) -> None:
        """Ask the SAM module for its status; raises unless it answers 0x90."""
        self.require_started("check the SAM module")

        def run() -> None:
            with self._io_lock:
                self._exchange(SAM_STATUS, STATUS_OK, "SAM status")

        await asyncio.to_thread(run)

    async def decode_photo(self, card: IdCardData) -> bytes:
        """The card photo as BMP bytes, through the configured vendor decoder."""
        self.require_started("decode a photo")
        decoder = self._decoder
        if decoder is None:
            raise PhotoDecoderError(
                f"ID-card reader {self.name!r} has no WLT decoder configured "
                "(photo_decoder_path); the photo is kept as raw WLT bytes"
            )
        return await asyncio.to_thread(decoder.decode, card.photo_wlt)
