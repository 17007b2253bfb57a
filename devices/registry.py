"""Driver registry: ``kind -> {driver -> (module path, class name)}``, imported lazily.

A driver module is imported only when it is asked for, so a missing vendor library
(PyAV, libzbar, a vendor SDK) disables that one driver and nothing else.

API
---
``DriverEntry(kind, driver, module, class_name)``  frozen dataclass
``DeviceRegistry(entries=())``
    ``DeviceRegistry.default() -> DeviceRegistry``   the built-in drivers (a new object)
    ``register(kind, driver, module, class_name, *, replace=False) -> None``
    ``entries() -> tuple[DriverEntry, ...]``
    ``drivers() -> dict[str, tuple[str, ...]]``       registered, importable or not
    ``load(kind, driver) -> type[Device]``            raises ``UnknownDriverError`` /
                                                      ``DeviceUnavailableError``
    ``create(kind, driver, **options) -> Device``     raises also ``DeviceConfigError``
    ``available() -> dict[str, tuple[str, ...]]``     drivers whose import succeeds
    ``unavailable() -> dict[tuple[str, str], str]``   (kind, driver) -> reason
``create_device(kind, driver, **options) -> Device``  via ``DeviceRegistry.default()``
``available_drivers() -> dict[str, tuple[str, ...]]`` via ``DeviceRegistry.default()``

Built-in drivers: ``doccam``: ``sim``, ``uvc``; ``idcard``: ``sim``, ``serial``;
``scanner``: ``sim``, ``evdev`` (keyboard wedge, needs python-evdev), ``serial``;
``screen``: ``x11`` (the kiosk desktop via PyAV x11grab).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from devices.base import Device
from devices.errors import DeviceConfigError, DeviceUnavailableError, UnknownDriverError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DriverEntry:
    """Where to find one driver class; nothing is imported until it is used."""

    kind: str
    driver: str
    module: str
    class_name: str


BUILTIN_DRIVERS: Final[tuple[DriverEntry, ...]] = (
    DriverEntry("doccam", "sim", "devices.sim.doccam", "SimulatedDocumentCamera"),
    DriverEntry("doccam", "uvc", "devices.uvc", "UvcDocumentCamera"),
    DriverEntry("idcard", "sim", "devices.sim.idcard", "SimulatedIdCardReader"),
    DriverEntry("idcard", "serial", "devices.idcard", "IdCardReader"),
    DriverEntry("screen", "x11", "devices.screen", "ScreenCapture"),
    DriverEntry("scanner", "sim", "devices.sim.scanner", "SimulatedScanner"),
    DriverEntry("scanner", "evdev", "devices.scanner_evdev", "EvdevScanner"),
    DriverEntry("scanner", "serial", "devices.scanner_serial", "SerialScanner"),
)


class DeviceRegistry:
    """A table of drivers by kind and name; one per application, none global."""

    def __init__(self, entries: Iterable[DriverEntry] = ()) -> None:
        self._entries: dict[str, dict[str, DriverEntry]] = {}
        for entry in entries:
            self.register(entry.kind, entry.driver, entry.module, entry.class_name)

    @classmethod
    def default(cls) -> DeviceRegistry:
        """A new registry holding the built-in drivers."""
        return cls(BUILTIN_DRIVERS)

    def register(
        self, kind: str, driver: str, module: str, class_name: str, *, replace: bool = False
    ) -> None:
        """Add a driver entry. Raises :class:`DeviceConfigError` on a duplicate unless told."""
        by_driver = self._entries.setdefault(kind, {})
        if driver in by_driver and not replace:
            raise DeviceConfigError(f"{kind} driver {driver!r} is already registered")
        by_driver[driver] = DriverEntry(kind, driver, module, class_name)

    def entries(self) -> tuple[DriverEntry, ...]:
        return tuple(e for by_driver in self._entries.values() for e in by_driver.values())

    def drivers(self) -> dict[str, tuple[str, ...]]:
        """Every registered driver name by kind, whether it can be imported or not."""
        return {kind: tuple(sorted(by_driver)) for kind, by_driver in self._entries.items()}

    def entry(self, kind: str, driver: str) -> DriverEntry:
        by_driver = self._entries.get(kind)
        if by_driver is None:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownDriverError(f"unknown device kind {kind!r} (known: {known})")
        entry = by_driver.get(driver)
        if entry is None:
            known = ", ".join(sorted(by_driver)) or "none"
            raise UnknownDriverError(f"unknown {kind} driver {driver!r} (known: {known})")
        return entry

    def load(self, kind: str, driver: str) -> type[Device]:
        """Import the driver's module and return its class."""
        entry = self.entry(kind, driver)
        try:
            module = importlib.import_module(entry.module)
        except (ImportError, OSError) as err:
            # OSError: ctypes-based bindings raise it when the shared library is missing.
            raise DeviceUnavailableError(
                f"{kind} driver {driver!r} is unavailable: cannot import {entry.module!r}: {err}"
            ) from err
        cls = getattr(module, entry.class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Device)):
            raise DeviceUnavailableError(
                f"{kind} driver {driver!r} is unavailable: {entry.module}.{entry.class_name} "
                "is not a Device class"
            )
        if cls.kind != kind:
            raise DeviceUnavailableError(
                f"{kind} driver {driver!r} is unavailable: {entry.module}.{entry.class_name} "
                f"is a {cls.kind!r} device"
            )
        return cls

    def create(self, kind: str, driver: str, **options: Any) -> Device:
        """Load the driver and construct it with ``options`` (not started)."""
        cls = self.load(kind, driver)
        try:
            inspect.signature(cls).bind(**options)
        except TypeError as err:
            raise DeviceConfigError(f"{kind} driver {driver!r}: bad options: {err}") from err
        device = cls(**options)
        logger.debug("created %s driver %s as %r", kind, driver, device.name)
        return device

    def unavailable(self) -> dict[tuple[str, str], str]:
        """Drivers that cannot be loaded here, with the reason."""
        reasons: dict[tuple[str, str], str] = {}
        for entry in self.entries():
            try:
                self.load(entry.kind, entry.driver)
            except DeviceUnavailableError as err:
                reasons[(entry.kind, entry.driver)] = err.message
        return reasons

    def available(self) -> dict[str, tuple[str, ...]]:
        """Drivers whose module imports here, by kind."""
        missing = self.unavailable()
        return {
            kind: tuple(d for d in names if (kind, d) not in missing)
            for kind, names in self.drivers().items()
        }


def create_device(kind: str, driver: str, **options: Any) -> Device:
    """Construct a built-in driver (not started): ``create_device("doccam", "sim", seed=1)``."""
    return DeviceRegistry.default().create(kind, driver, **options)


def available_drivers() -> dict[str, tuple[str, ...]]:
    """Built-in drivers that can be imported on this machine, by kind."""
    return DeviceRegistry.default().available()
