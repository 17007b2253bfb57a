"""QR/barcode scanner (扫码枪) interface: codes typed or sent by a hand-held/desk scanner.

A scanner is a :class:`~devices.base.Device` that produces codes on its own schedule,
so each driver runs one reader task between ``start()`` and ``stop()`` and puts what
it reads on a bounded queue. When the hardware goes away (unplugged, port closed) the
reader reports a ``DeviceIOError``, closes what it had and tries to reopen every
``reopen_interval`` seconds until ``stop()`` (hot-plug). Codes that fail to decode
are reported as ``ScannerError`` and the scanner keeps going.

API
---
``ScannedCode`` frozen dataclass: ``text: str``, ``raw: bytes`` (the payload bytes the
text was decoded from), ``encoding: str`` ("utf-8", "gb18030", "latin-1"),
``source: str`` ("scanner-evdev" | "scanner-serial" | "scanner-sim"),
``scanned_at: datetime`` (UTC); its ``repr`` hides the payload.
``CodeScanner(Device)``, ``kind = "scanner"`` (abstract)
    ``CodeScanner(*, name=None, payload="text", reopen_interval=3.0, max_pending=64,
    require_present=True)``
    ``async read_code() -> ScannedCode``  the next code; a reported problem
        (``ScannerError``, ``DeviceIOError``) is raised by the call that reaches it, once,
        and the next call goes on; ``DeviceStateError`` when not started or stopped
        while waiting.
    ``async codes() -> AsyncIterator[ScannedCode]``  every code until ``stop()``;
        reported problems are skipped here (logged, kept in ``last_error``).
    ``connected -> bool``, ``last_error -> DeviceError | None``
    ``require_present=False`` lets ``start()`` succeed with the scanner unplugged.
    Unread codes beyond ``max_pending`` push out the oldest (logged).
``open_in_thread(opener, closer) -> T``  a blocking open in a worker thread that
    closes its result if the caller was cancelled meanwhile (for drivers).
``KeyEventSource`` protocol: ``async_read_loop()``, ``grab()``, ``ungrab()``, ``close()``
    (an ``evdev.InputDevice`` is one).
``KeyboardScanner(CodeScanner)`` (abstract): a keyboard-wedge scanner read from a
    ``KeyEventSource`` through :class:`devices.scanner_keys.KeyDecoder`; grabs the
    source so the keystrokes never reach the kiosk UI. Options ``suffix`` ("enter" |
    "tab"), ``max_length``, ``key_timeout``; subclasses implement ``_open_source()``.

Drivers: ``devices.scanner_evdev.EvdevScanner`` ("evdev"),
``devices.scanner_serial.SerialScanner`` ("serial"),
``devices.sim.scanner.SimulatedScanner`` ("sim").
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Final, Protocol, TypeVar

from devices.base import Device
from devices.errors import (
    DeviceConfigError,
    DeviceError,
    DeviceIOError,
    DeviceStateError,
    ScannerError,
)
from devices.scanner_keys import KeyDecoder, KeyEventLike, check_payload_format, decode_typed

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Stopped:
    """Queue marker: the scanner stopped; wakes every waiting reader."""


_STOPPED: Final = _Stopped()


@dataclass(frozen=True, slots=True)
class ScannedCode:
    """One code read by a scanner."""

    text: str
    raw: bytes
    encoding: str
    source: str
    scanned_at: datetime

    def __repr__(self) -> str:
        # A code may carry an ID number or a licence: keep it out of reprs and logs.
        return (
            f"ScannedCode({len(self.raw)} bytes, {self.encoding}, from {self.source}, "
            f"scanned_at={self.scanned_at.isoformat()})"
        )


async def open_in_thread(opener: Callable[[], T], closer: Callable[[T], None]) -> T:
    """Run a blocking ``opener`` in a worker thread; if the caller is cancelled meanwhile
    (``stop()`` during a reopen attempt), close what the thread opens instead of leaking it.
    """
    future = asyncio.ensure_future(asyncio.to_thread(opener))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:

        def close_late(done: asyncio.Future[T]) -> None:
            if not done.cancelled() and done.exception() is None:
                with contextlib.suppress(Exception):
                    closer(done.result())

        future.add_done_callback(close_late)
        raise


class CodeScanner(Device):
    """A scanner that delivers codes as they are scanned; see the module docstring."""

    kind: ClassVar[str] = "scanner"
    source: ClassVar[str] = "scanner"

    def __init__(
        self,
        *,
        name: str | None = None,
        payload: str = "text",
        reopen_interval: float = 3.0,
        max_pending: int = 64,
        require_present: bool = True,
    ) -> None:
        super().__init__(name=name)
        if reopen_interval <= 0:
            raise DeviceConfigError(f"scanner reopen_interval {reopen_interval} must be positive")
        if max_pending < 1:
            raise DeviceConfigError(f"scanner max_pending {max_pending} must be at least 1")
        self._payload = check_payload_format(payload)
        self._reopen_interval = reopen_interval
        self._require_present = require_present
        self._max_pending = max_pending
        # Made in _start(): a queue belongs to the event loop that first waits on it.
        self._queue: asyncio.Queue[ScannedCode | DeviceError | _Stopped] | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._last_error: DeviceError | None = None

    @property
    def connected(self) -> bool:
        """Whether the hardware is open now (``False`` while waiting to reopen it)."""
        return self._connected

    @property
    def last_error(self) -> DeviceError | None:
        return self._last_error

    @property
    def payload(self) -> str:
        return self._payload

    async def read_code(self) -> ScannedCode:
        """Wait for the next code; raises a reported problem once, in order."""
        self.require_started("read a code")
        item = await self._next_item()
        if isinstance(item, DeviceError):
            raise item
        return item

    async def codes(self) -> AsyncIterator[ScannedCode]:
        """Every code from now until ``stop()``; problems are skipped (see ``last_error``)."""
        self.require_started("read codes")
        while True:
            try:
                item = await self._next_item()
            except DeviceStateError:
                return
            if isinstance(item, ScannedCode):
                yield item

    async def _next_item(self) -> ScannedCode | DeviceError:
        queue = self._queue
        if queue is None:
            raise DeviceStateError(f"scanner {self.name!r} is not started")
        item = await queue.get()
        if isinstance(item, _Stopped):
            # Put it back so every other waiting reader wakes up too.
            queue.put_nowait(item)
            raise DeviceStateError(f"scanner {self.name!r} was stopped")
        return item

    def _put(self, item: ScannedCode | DeviceError | _Stopped) -> None:
        queue = self._queue
        if queue is None:
            return
        if queue.full():
            dropped = queue.get_nowait()
            logger.warning(
                "scanner %s: nobody is reading; dropped an unread %s",
                self.name,
                "code" if isinstance(dropped, ScannedCode) else "error",
            )
        queue.put_nowait(item)

    def _emit(self, typed: bytes) -> None:
        """Decode one code's bytes in the configured payload format and queue it."""
        try:
            text, raw, encoding = decode_typed(typed, self._payload)
        except ScannerError as err:
            self._report(err)
            return
        code = ScannedCode(text, raw, encoding, self.source, datetime.now(UTC))
        logger.debug("scanner %s: code of %d bytes (%s)", self.name, len(raw), encoding)
        self._put(code)

    def _report(self, error: DeviceError) -> None:
        self._last_error = error
        logger.warning("scanner %s: %s", self.name, error.message)
        self._put(error)

    async def _start(self) -> None:
        self._queue = asyncio.Queue(self._max_pending)
        self._last_error = None
        connected = True
        try:
            await self._connect()
        except DeviceError as err:
            if self._require_present:
                raise
            self._report(err)
            connected = False
        self._connected = connected
        self._task = asyncio.create_task(self._run(connected), name=f"scanner {self.name}")

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            if self._connected:
                self._connected = False
                await self._disconnect()
        finally:
            self._put(_STOPPED)

    async def _run(self, connected: bool) -> None:
        """Read while the hardware is there; reopen it when it goes away."""
        while True:
            if connected:
                try:
                    await self._pump()
                    error: DeviceError = DeviceIOError(
                        f"scanner {self.name!r}: the device stopped sending"
                    )
                except DeviceError as err:
                    error = err
                except Exception as err:
                    # A bug must not leave a silently dead scanner behind a "started" one.
                    logger.exception("scanner %s: reader failed", self.name)
                    error = DeviceIOError(f"scanner {self.name!r}: reader failed: {err!r}")
                self._connected = False
                self._report(error)
                with contextlib.suppress(DeviceError, OSError):
                    await self._disconnect()
            await asyncio.sleep(self._reopen_interval)
            try:
                await self._connect()
            except DeviceError as err:
                logger.debug("scanner %s: still unavailable: %s", self.name, err.message)
                connected = False
                continue
            connected = self._connected = True
            logger.info("scanner %s: reconnected", self.name)

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Open the hardware; raise ``DeviceNotFoundError`` / ``DeviceIOError``."""

    @abc.abstractmethod
    async def _pump(self) -> None:
        """Read until the hardware fails (raise ``DeviceIOError``); ``_emit`` each code."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Close what ``_connect`` opened; must work on a device that is already gone."""


class KeyEventSource(Protocol):
    """An input device's event stream; ``evdev.InputDevice`` is one."""

    def async_read_loop(self) -> AsyncIterator[KeyEventLike]: ...
    def grab(self) -> None: ...
    def ungrab(self) -> None: ...
    def close(self) -> None: ...


class KeyboardScanner(CodeScanner):
    """A keyboard-wedge scanner read from a :class:`KeyEventSource`."""

    def __init__(
        self,
        *,
        name: str | None = None,
        payload: str = "text",
        suffix: str = "enter",
        max_length: int = 4096,
        key_timeout: float = 1.0,
        reopen_interval: float = 3.0,
        max_pending: int = 64,
        require_present: bool = True,
    ) -> None:
        super().__init__(
            name=name,
            payload=payload,
            reopen_interval=reopen_interval,
            max_pending=max_pending,
            require_present=require_present,
        )
        self._decoder = KeyDecoder(suffix=suffix, max_length=max_length, key_timeout=key_timeout)
        self._source: KeyEventSource | None = None

    @abc.abstractmethod
    async def _open_source(self) -> KeyEventSource:
        """Open the input device; raise ``DeviceNotFoundError`` / ``DeviceIOError``."""

    async def _connect(self) -> None:
        source = await self._open_source()
        try:
            source.grab()
        except OSError as err:
            with contextlib.suppress(OSError):
                source.close()
            raise DeviceIOError(
                f"scanner {self.name!r}: cannot grab the input device (another program "
                f"holds it?): {err}"
            ) from err
        self._decoder.reset()
        self._source = source

    async def _pump(self) -> None:
        source = self._source
        if source is None:
            raise DeviceIOError(f"scanner {self.name!r} is closed")
        try:
            async for event in source.async_read_loop():
                try:
                    typed = self._decoder.feed(event)
                except ScannerError as err:
                    self._report(err)
                    continue
                if typed is not None:
                    self._emit(typed)
        except OSError as err:
            # ENODEV when unplugged; the fd is dead, so reopen from scratch.
            raise DeviceIOError(f"scanner {self.name!r}: reading failed: {err}") from err

    async def _disconnect(self) -> None:
        source, self._source = self._source, None
        if source is None:
            return
        # Both fail on an unplugged device, which is released by the kernel anyway.
        with contextlib.suppress(OSError):
            source.ungrab()
        with contextlib.suppress(OSError):
            source.close()
