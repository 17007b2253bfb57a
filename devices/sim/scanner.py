"""Simulated keyboard-wedge QR/barcode scanner: codes fed by ``await sim.scan(text)``.

An ordinary :class:`devices.scanner.KeyboardScanner` whose input device is an
in-memory :class:`SimulatedKeySource`: ``scan()`` turns the text into the key presses a
real scanner would send (Shift for capitals, Alt+numpad for bytes outside ASCII, or
hex/base64 when so configured, then Enter) and the scanner decodes them on the same
path as the evdev driver. Needs no hardware and no vendor library.

API
---
``SimKeyEvent(sec, usec, type, code, value)``  frozen dataclass, shaped like
    ``evdev.InputEvent``.
``SimulatedKeySource()``  a :class:`devices.scanner.KeyEventSource` in memory:
    ``push(events)``, ``unplug()`` (the reader gets ``OSError(ENODEV)``), ``grabbed``,
    ``closed``, ``grab_count``.
``SimulatedScanner(KeyboardScanner)``  ("scanner" / "sim" in the registry)
    ``SimulatedScanner(*, name=None, payload="text", suffix="enter", max_length=4096,
    key_timeout=1.0, reopen_interval=0.5, max_pending=64, require_present=True,
    plugged=True)``
    ``async scan(text) -> None``      type ``text`` as a scanner set to ``payload`` would
    ``async type_bytes(typed) -> None``  type exact bytes (e.g. malformed hex)
    ``async press(strokes) -> None``  raw ``(key code, value)`` events
    ``unplug()`` / ``plug_in()``       hot-plug: the reader reports ``DeviceIOError``
                                       and reconnects after ``plug_in()``
    ``key_source -> SimulatedKeySource | None``  the open input device
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import ClassVar

from devices.errors import DeviceIOError, DeviceNotFoundError
from devices.scanner import KeyboardScanner, KeyEventSource
from devices.scanner_keys import EV_KEY, encode_typed, key_strokes


@dataclass(frozen=True, slots=True)
class SimKeyEvent:
    """One input event, with the fields of ``evdev.InputEvent``."""

    sec: int
    usec: int
    type: int
    code: int
    value: int


class SimulatedKeySource:
    """An input device in memory: events pushed in come out of ``async_read_loop()``."""

    def __init__(self) -> None:
        self._events: asyncio.Queue[SimKeyEvent | OSError | None] = asyncio.Queue()
        self.grabbed = False
        self.closed = False
        self.grab_count = 0

    def push(self, events: Iterable[SimKeyEvent]) -> None:
        for event in events:
            self._events.put_nowait(event)

    def unplug(self) -> None:
        self._events.put_nowait(OSError(errno.ENODEV, "No such device"))

    def grab(self) -> None:
        if self.grabbed:
            # What the kernel answers to a second EVIOCGRAB.
            raise OSError(errno.EBUSY, "Device or resource busy")
        self.grabbed = True
        self.grab_count += 1

    def ungrab(self) -> None:
        if not self.grabbed:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.grabbed = False

    def close(self) -> None:
        self.closed = True
        self._events.put_nowait(None)

    async def async_read_loop(self) -> AsyncIterator[SimKeyEvent]:
        while True:
            item = await self._events.get()
            if item is None:
                return
            if isinstance(item, OSError):
                raise item
            yield item


class SimulatedScanner(KeyboardScanner):
    """A keyboard-wedge scanner without hardware; see the module docstring."""

    source: ClassVar[str] = "scanner-sim"

    def __init__(
        self,
        *,
        name: str | None = None,
        payload: str = "text",
        suffix: str = "enter",
        max_length: int = 4096,
        key_timeout: float = 1.0,
        reopen_interval: float = 0.5,
        max_pending: int = 64,
        require_present: bool = True,
        plugged: bool = True,
    ) -> None:
        super().__init__(
            name=name,
            payload=payload,
            suffix=suffix,
            max_length=max_length,
            key_timeout=key_timeout,
            reopen_interval=reopen_interval,
            max_pending=max_pending,
            require_present=require_present,
        )
        self._suffix = suffix
        self._plugged = plugged
        self._key_source: SimulatedKeySource | None = None

    @property
    def key_source(self) -> SimulatedKeySource | None:
        return self._key_source

    async def _open_source(self) -> KeyEventSource:
        if not self._plugged:
            raise DeviceNotFoundError(f"simulated scanner {self.name!r} is unplugged")
        self._key_source = SimulatedKeySource()
        return self._key_source

    async def _disconnect(self) -> None:
        await super()._disconnect()
        self._key_source = None

    def unplug(self) -> None:
        """Pull the cable: the reader sees ``ENODEV``, as from a real input device."""
        self._plugged = False
        if self._key_source is not None:
            self._key_source.unplug()

    def plug_in(self) -> None:
        self._plugged = True

    async def scan(self, text: str) -> None:
        """Scan a code carrying ``text``."""
        await self.type_bytes(encode_typed(text, self.payload))

    async def type_bytes(self, typed: bytes) -> None:
        """Type exactly ``typed`` and the terminator."""
        await self.press(key_strokes(typed, suffix=self._suffix))

    async def press(self, strokes: Iterable[tuple[int, int]]) -> None:
        """Send raw key events ``(code, value)`` now."""
        self.require_started("scan a code")
        source = self._key_source
        if source is None:
            raise DeviceIOError(f"simulated scanner {self.name!r} is unplugged")
        now = time.time()
        sec, usec = int(now), int(now % 1 * 1_000_000)
        source.push(SimKeyEvent(sec, usec, EV_KEY, code, value) for code, value in strokes)
        # Let the reader task take the events before the caller goes on (e.g. to stop()).
        await asyncio.sleep(0)
