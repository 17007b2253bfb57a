"""Scanner on a serial line (RS-232, or USB in CDC/"virtual COM" mode): the driver.

The scanner sends each code followed by CR, LF or CR LF. Bytes are framed by
:class:`LineFramer` and decoded with :func:`devices.qr.decode_payload` (UTF-8, then
GB 18030), so Chinese payloads from scanners in either encoding come out right; a
scanner set to send hex or base64 is handled by ``payload``. A code longer than
``max_length`` is dropped up to its terminator and reported as ``ScannerOverflowError``
rather than buffered. Ports open through ``serial.serial_for_url`` (so
``/dev/ttyACM0``, ``socket://host:port`` and ``loop://`` work); blocking reads run in a
worker thread with a short timeout. A port that fails (unplugged: ``SerialException``)
is reported as ``DeviceIOError`` and reopened every ``reopen_interval`` seconds.

API
---
``SerialScanner(CodeScanner)``  ("scanner" / "serial" in the registry)
    ``SerialScanner(*, name=None, url="/dev/ttyACM0", baudrate=9600, suffix="auto",
    payload="text", max_length=4096, read_timeout=0.2, reopen_interval=3.0,
    max_pending=64, require_present=True, port_factory=None)``
    ``suffix``: "auto" (CR, LF or CR LF), "cr", "lf" or "crlf".
    ``port_factory``: a callable returning an open ``serial.SerialBase``, used instead of
    ``serial_for_url(url)`` (tests hand it a ``loop://`` port they also write to).
    Codes, errors and life cycle: see :class:`devices.scanner.CodeScanner`.
``LineFramer(*, suffix="auto", max_length=4096)``  no I/O:
    ``feed(data: bytes) -> list[bytes | ScannerOverflowError]``, ``pending -> int``
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
from collections.abc import Callable
from typing import ClassVar, Final, Literal, get_args

import serial

from devices.errors import (
    DeviceConfigError,
    DeviceIOError,
    DeviceNotFoundError,
    ScannerOverflowError,
)
from devices.scanner import CodeScanner, open_in_thread

logger = logging.getLogger(__name__)

LineSuffix = Literal["auto", "cr", "lf", "crlf"]
LINE_SUFFIXES: Final[tuple[str, ...]] = get_args(LineSuffix)
_READ_CHUNK: Final = 4096


class LineFramer:
    """Splits a byte stream into codes at the configured line ending; bounded memory."""

    def __init__(self, *, suffix: str = "auto", max_length: int = 4096) -> None:
        if suffix not in LINE_SUFFIXES:
            raise DeviceConfigError(
                f"scanner suffix {suffix!r} is not one of {', '.join(LINE_SUFFIXES)}"
            )
        if max_length < 1:
            raise DeviceConfigError(f"scanner max_length {max_length} must be at least 1")
        self._suffix = suffix
        self._max_length = max_length
        self._buffer = bytearray()
        self._discarding = False

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def _next_terminator(self) -> tuple[int, int]:
        """(index, length) of the first terminator in the buffer, index -1 if none."""
        if self._suffix == "crlf":
            return self._buffer.find(b"\r\n"), 2
        if self._suffix == "cr":
            return self._buffer.find(b"\r"), 1
        if self._suffix == "lf":
            return self._buffer.find(b"\n"), 1
        # "auto": CR or LF each end a code; the LF of a CR LF then ends an empty one,
        # which is skipped below.
        found = [i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0]
        return (min(found) if found else -1), 1

    def feed(self, data: bytes) -> list[bytes | ScannerOverflowError]:
        """Codes (and overflow errors) completed by ``data``, in order."""
        self._buffer += data
        out: list[bytes | ScannerOverflowError] = []
        while True:
            index, length = self._next_terminator()
            if index < 0:
                break
            frame = bytes(self._buffer[:index])
            del self._buffer[: index + length]
            if self._discarding or len(frame) > self._max_length:
                self._discarding = False
                out.append(self._overflow())
            elif frame:
                out.append(frame)
        # A CR at the end may be the first half of a CR LF terminator: keep it.
        keep = 1 if self._suffix == "crlf" and self._buffer.endswith(b"\r") else 0
        if len(self._buffer) - keep > self._max_length:
            # Too long already: forget it now and report once its terminator arrives.
            self._discarding = True
            del self._buffer[: len(self._buffer) - keep]
        return out

    def _overflow(self) -> ScannerOverflowError:
        return ScannerOverflowError(
            f"scanned code longer than {self._max_length} bytes was discarded")


def _close_port(port: serial.SerialBase) -> None:
    port.close()


class SerialScanner(CodeScanner):
    """A scanner sending codes on a serial line; see the module docstring."""

    source: ClassVar[str] = "scanner-serial"

    def __init__(
        self,
        *,
        name: str | None = None,
        url: str = "/dev/ttyACM0",
        baudrate: int = 9600,
        suffix: str = "auto",
        payload: str = "text",
        max_length: int = 4096,
        read_timeout: float = 0.2,
        reopen_interval: float = 3.0,
        max_pending: int = 64,
        require_present: bool = True,
        port_factory: Callable[[], serial.SerialBase] | None = None,
    ) -> None:
        super().__init__(
            name=name,
            payload=payload,
            reopen_interval=reopen_interval,
            max_pending=max_pending,
            require_present=require_present,
        )
        if read_timeout <= 0:
            raise DeviceConfigError(f"scanner read_timeout {read_timeout} must be positive")
        # Validate now, so a bad option fails at construction rather than at start().
        LineFramer(suffix=suffix, max_length=max_length)
        self._url = url
        self._baudrate = baudrate
        self._suffix = suffix
        self._max_length = max_length
        self._read_timeout = read_timeout
        self._port_factory = port_factory
        self._port: serial.SerialBase | None = None
        # Held by the worker thread during a read, so close() never races it.
        self._io_lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._url

    def _open_port(self) -> serial.SerialBase:
        try:
            if self._port_factory is not None:
                port = self._port_factory()
            else:
                port = serial.serial_for_url(
                    self._url, baudrate=self._baudrate, timeout=self._read_timeout
                )
        except ValueError as err:
            raise DeviceConfigError(f"scanner port {self._url!r}: {err}") from err
        except serial.SerialException as err:
            if err.errno == errno.ENOENT:
                raise DeviceNotFoundError(f"scanner port {self._url!r} does not exist") from err
            raise DeviceIOError(f"cannot open scanner port {self._url!r}: {err}") from err
        except OSError as err:
            raise DeviceIOError(f"cannot open scanner port {self._url!r}: {err}") from err
        if not isinstance(port, serial.SerialBase):  # pragma: no cover - pyserial contract
            raise DeviceIOError(f"{self._url!r} did not open as a serial port")
        return port

    async def _connect(self) -> None:
        self._port = await open_in_thread(self._open_port, _close_port)

    def _read_chunk(self) -> bytes:
        with self._io_lock:
            port = self._port
            if port is None:
                raise DeviceIOError(f"scanner port {self._url!r} is closed")
            try:
                waiting = port.in_waiting
                data = port.read(min(max(waiting, 1), _READ_CHUNK))
            except (serial.SerialException, OSError) as err:
                raise DeviceIOError(f"scanner port {self._url!r}: reading failed: {err}") from err
            return bytes(data)

    async def _pump(self) -> None:
        framer = LineFramer(suffix=self._suffix, max_length=self._max_length)
        while True:
            data = await asyncio.to_thread(self._read_chunk)
            for item in framer.feed(data):
                if isinstance(item, ScannerOverflowError):
                    self._report(item)
                else:
                    self._emit(item)

    async def _disconnect(self) -> None:
        port, self._port = self._port, None
        if port is None:
            return

        def close() -> None:
            # Waits for a read in flight (at most read_timeout) to let go of the port.
            with self._io_lock:
                port.close()

        await asyncio.to_thread(close)
